//! Publishing under crashes and races, on a local folder and on SeaweedFS: after a crash
//! injected at every step of a publish, and after runs of one id started together, a
//! reader following the README's protocol (`_SUCCESS`, then the folder it names) finds one
//! complete version, and `gc` leaves only published versions.
//!
//! The crash is the test hook `SEGFLOW_TEST_ABORT_AFTER_PUBLISH_STEP=N`: the process aborts
//! right after the N-th store write of its publish, as a `kill -9` there would leave it.
//! The S3 half is skipped with a note when `weed` is not installed, unless
//! `SEGFLOW_REQUIRE_S3` is set.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use common::Project;
use common::seaweedfs::SeaweedFs;

const RUN_ID: &str = "day";

/// A small pipeline with every kind of published file: rejects of a quarantining source,
/// segments, centroids, profile, the model. `trial` is not used by any step: it only tells
/// the versions apart (the manifest records it).
const PIPELINE: &str = r#"name: faults
run_id: day
vars:
  output: "file://../out"
  trial: "0"
stores:
  data: { url: "file://../data" }
  out: { url: "${output}" }
sources:
  - name: customers
    store: data
    path: customers.csv
    format: csv
    on_error: quarantine
    schema:
      - { name: customer_id, type: int64 }
      - { name: x, type: float64 }
      - { name: y, type: float64 }
segment:
  input: customers
  key: customer_id
  features: [x, y]
  k: 3
  seed: 3
  restarts: 1
  output: { store: out, path: faults }
"#;

fn customers_csv() -> String {
    let mut csv = String::from("customer_id,x,y\n");
    for id in 0..300 {
        let (cx, cy) = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)][id % 3];
        let jitter = ((id * 37) % 11) as f64 / 10.0;
        csv.push_str(&format!("{id},{},{}\n", cx + jitter, cy - jitter));
    }
    // Lines a real export has: a value that is not a number, a short line.
    csv.push_str("300,n/a,1.0\n301,2.0\n");
    csv
}

fn project() -> Project {
    let project = Project::copy_of_repository();
    project.write("pipelines/faults.yaml", PIPELINE);
    project.write("data/customers.csv", &customers_csv());
    project
}

/// Where the output folder is, and how to read it the way a loader does.
trait Output {
    /// `segflow` arguments that send the pipeline's output there.
    fn output_var(&self) -> Vec<String>;
    fn env(&self) -> Vec<(&'static str, String)>;
    /// The bytes of `key` (relative to the output folder), if it exists.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Every key under the output folder, relative to it, with its size, sorted.
    fn list(&self) -> Vec<(String, u64)>;
}

struct LocalFolder<'a>(&'a Project);

impl Output for LocalFolder<'_> {
    fn output_var(&self) -> Vec<String> {
        Vec::new()
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.0.path("out/faults").join(key)).ok()
    }
    fn list(&self) -> Vec<(String, u64)> {
        let root = self.0.path("out/faults");
        let mut files = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                // Runs under way move and delete files while this lists: one gone between
                // the listing and its metadata is one a reader would not see either.
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    dirs.push(path);
                } else {
                    let key = path.strip_prefix(&root).unwrap().display().to_string();
                    files.push((key, meta.len()));
                }
            }
        }
        files.sort();
        files
    }
}

struct Bucket<'a>(&'a SeaweedFs);

const BUCKET: &str = "lake";
const BUCKET_OUTPUT: &str = "out/faults";

impl Output for Bucket<'_> {
    fn output_var(&self) -> Vec<String> {
        vec!["--var".to_string(), format!("output=s3://{BUCKET}/out")]
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        self.0.env()
    }
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = format!("{BUCKET_OUTPUT}/{key}");
        let folder = key.rsplit_once('/').map_or("", |(folder, _)| folder);
        self.0
            .list(BUCKET, folder)
            .iter()
            .any(|(listed, _)| *listed == key)
            .then(|| self.0.get(BUCKET, &key).to_vec())
    }
    fn list(&self) -> Vec<(String, u64)> {
        self.0
            .list(BUCKET, BUCKET_OUTPUT)
            .into_iter()
            .map(|(key, size)| (key[BUCKET_OUTPUT.len() + 1..].to_string(), size))
            .collect()
    }
}

/// A `segflow run` of the pipeline as trial `trial`, with `env` besides the output's.
fn run_command(
    project: &Project,
    output: &dyn Output,
    trial: usize,
    env: &[(&str, String)],
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segflow"));
    command
        .args(["run", "pipelines/faults.yaml", "--var"])
        .arg(format!("trial={trial}"))
        .args(output.output_var())
        .current_dir(project.path(""))
        .env_remove("SEGFLOW_LOG")
        .envs(output.env())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// What a reader following the protocol finds: the version `_SUCCESS` names, checked to
/// be whole (every file its manifest lists, at its size, and nothing else of its attempt
/// in its folder or the tables' folders), and each table's `_SUCCESS` naming files that
/// are all there; returns its commit's version and the trial that wrote it. `None`: never
/// published.
fn read_as_a_loader(output: &dyn Output) -> Option<(u64, String)> {
    let success = output.get(&format!("run_id={RUN_ID}/_SUCCESS"))?;
    let commit: serde_json::Value = serde_json::from_slice(&success)
        .unwrap_or_else(|e| panic!("_SUCCESS is not a commit ({e}): {success:?}"));
    let folder = commit["path"].as_str().unwrap().to_string();
    let attempt = commit["attempt"].as_str().unwrap().to_string();
    let manifest = output
        .get(&format!("{folder}_MANIFEST.json"))
        .unwrap_or_else(|| panic!("{folder} named by _SUCCESS has no manifest"));
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let listing = output.list();
    let in_folder: BTreeSet<(String, u64)> = listing
        .iter()
        .filter(|(key, _)| {
            (key.starts_with(&folder) || key.contains(&attempt)) && !key.ends_with("_MANIFEST.json")
        })
        .map(|(key, size)| (key.clone(), *size))
        .collect();
    for (marker, _) in listing.iter().filter(|(key, _)| {
        key.ends_with(&format!("/run_id={RUN_ID}/_SUCCESS")) && !key.starts_with("run_id=")
    }) {
        let table: serde_json::Value = serde_json::from_slice(&output.get(marker).unwrap())
            .unwrap_or_else(|e| panic!("{marker} is not a table's commit: {e}"));
        let partition = marker.strip_suffix("_SUCCESS").unwrap();
        for file in table["files"].as_array().unwrap() {
            let key = format!("{partition}{}", file.as_str().unwrap());
            assert!(
                listing.iter().any(|(listed, _)| *listed == key),
                "{marker} names {key}, which is gone"
            );
        }
    }
    let listed: BTreeSet<(String, u64)> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            (
                file["path"].as_str().unwrap().to_string(),
                file["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        in_folder, listed,
        "the version _SUCCESS names holds exactly the files its manifest lists"
    );
    for file in [
        format!("segments/run_id={RUN_ID}/part-00000-{attempt}.parquet"),
        format!("profile/run_id={RUN_ID}/part-00000-{attempt}.parquet"),
        format!("{folder}model.json"),
    ] {
        assert!(
            listed.iter().any(|(path, _)| *path == file),
            "{file} in {listed:?}"
        );
    }
    let trial = manifest["vars"]["trial"].as_str().unwrap().to_string();
    Some((commit["version"].as_u64().unwrap(), trial))
}

/// The versions committed for the run, from `_commits/`.
fn commits(output: &dyn Output) -> Vec<u64> {
    output
        .list()
        .iter()
        .filter_map(|(key, _)| {
            key.strip_prefix(&format!("run_id={RUN_ID}/_commits/"))?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect()
}

fn gc(project: &Project, output: &dyn Output) {
    let env = output.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = vec!["gc", "pipelines/faults.yaml", "--older-than", "0s"];
    let var = output.output_var();
    args.extend(var.iter().map(String::as_str));
    project.segflow_with_env(&args, &env).assert_exit(0);
}

/// After `gc`, the output folder holds the run's commits, its `_SUCCESS`, `_LATEST.json`
/// and exactly one version folder: the one `_SUCCESS` names, which is the newest commit's.
fn assert_clean(output: &dyn Output) {
    let (version, _) = read_as_a_loader(output).expect("published");
    assert_eq!(
        commits(output).last(),
        Some(&version),
        "_SUCCESS names the newest commit"
    );
    let folders: BTreeSet<String> = output
        .list()
        .iter()
        .filter_map(|(key, _)| {
            let parts: Vec<&str> = key.split('/').collect();
            (parts.len() > 2 && parts[1].starts_with("attempt="))
                .then(|| format!("{}/{}", parts[0], parts[1]))
        })
        .collect();
    assert_eq!(folders.len(), 1, "one version folder left: {folders:?}");
    let attempts: BTreeSet<String> = output
        .list()
        .iter()
        .filter(|(key, _)| !key.starts_with("run_id=") && key.ends_with(".parquet"))
        .map(|(key, _)| {
            let name = key.rsplit('/').next().unwrap();
            name["part-00000-".len()..name.len() - ".parquet".len()].to_string()
        })
        .collect();
    assert_eq!(
        attempts.len(),
        1,
        "the tables hold one version's files: {attempts:?}"
    );
    assert!(
        output
            .list()
            .iter()
            .all(|(key, _)| !key.starts_with("_staging")),
        "no staging left: {:?}",
        output.list()
    );
}

/// Publishes trial 0, then reruns the id as trial N with a crash after publish step N,
/// for every N until a run gets through; after each crash a reader sees trial N - 1's
/// version or trial N's, whole, and `gc` tidies up without losing it.
fn crash_at_every_publish_step(project: &Project, output: &dyn Output) {
    let first = run_command(project, output, 0, &[]).output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(read_as_a_loader(output), Some((1, "0".to_string())));
    let mut published = "0".to_string();
    for step in 1.. {
        assert!(step < 40, "a publish of five files takes fewer steps");
        let trial = step;
        let run = run_command(
            project,
            output,
            trial,
            &[("SEGFLOW_TEST_ABORT_AFTER_PUBLISH_STEP", step.to_string())],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        if run.status.success() {
            assert!(step > 8, "the hook fired at none of {step} steps: {stderr}");
            assert_eq!(read_as_a_loader(output).unwrap().1, trial.to_string());
            gc(project, output);
            assert_clean(output);
            return;
        }
        assert!(
            stderr.contains(&format!("aborting after publish step {step} ")),
            "step {step}: {stderr}"
        );
        let (_, seen) = read_as_a_loader(output)
            .unwrap_or_else(|| panic!("after a crash at step {step}, no version is readable"));
        assert!(
            seen == published || seen == trial.to_string(),
            "after a crash at step {step}: a reader sees trial {seen}, not {published} or {trial}"
        );
        let latest: serde_json::Value =
            serde_json::from_slice(&output.get("_LATEST.json").unwrap()).unwrap();
        assert_eq!(latest["run_id"], RUN_ID);

        gc(project, output);
        assert_clean(output);
        let (_, after_gc) = read_as_a_loader(output).unwrap();
        assert!(
            after_gc == seen || after_gc == trial.to_string(),
            "gc moves the reader on to the newest commit at most"
        );
        published = after_gc;
    }
}

/// Runs of one id started together, `trials` times: each time exactly one publishes, the
/// others fail naming the race and leave nothing behind. A small run is over in a few
/// milliseconds, so two started together need not overlap; the hold hook makes sure they
/// do: each waits to publish until every racer has staged its files.
fn runs_started_together(project: &Project, output: &dyn Output, trials: usize, racers: usize) {
    let before = commits(output).len();
    for trial in 0..trials {
        let go = project.path(&format!("go-{trial}"));
        let hold = [("SEGFLOW_TEST_HOLD_PUBLISH_UNTIL", go.display().to_string())];
        let children: Vec<_> = (0..racers)
            .map(|racer| {
                run_command(project, output, 1000 + trial * racers + racer, &hold)
                    .spawn()
                    .unwrap()
            })
            .collect();
        let started = std::time::Instant::now();
        loop {
            let staged: BTreeSet<String> = output
                .list()
                .iter()
                .filter_map(|(key, _)| {
                    let attempt = key.strip_prefix(&format!("_staging/{RUN_ID}/"))?;
                    Some(attempt.split('/').next()?.to_string())
                })
                .collect();
            if staged.len() == racers {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "trial {trial}: the racers never all staged: {staged:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::write(&go, "").unwrap();
        let outcomes: Vec<_> = children
            .into_iter()
            .map(|child| child.wait_with_output().unwrap())
            .collect();
        let winners: Vec<usize> = (0..racers)
            .filter(|&racer| outcomes[racer].status.success())
            .collect();
        let report = || {
            outcomes
                .iter()
                .map(|o| format!("{:?}: {}", o.status, String::from_utf8_lossy(&o.stderr)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            winners.len(),
            1,
            "trial {trial}: exactly one publishes\n{}",
            report()
        );
        for (racer, outcome) in outcomes.iter().enumerate() {
            if racer != winners[0] {
                assert_eq!(outcome.status.code(), Some(1), "{}", report());
                assert!(
                    String::from_utf8_lossy(&outcome.stderr).contains("by another attempt"),
                    "{}",
                    report()
                );
            }
        }
        let winner = (1000 + trial * racers + winners[0]).to_string();
        assert_eq!(read_as_a_loader(output).unwrap().1, winner, "trial {trial}");
        assert_eq!(
            commits(output).len(),
            before + trial + 1,
            "one commit per trial"
        );
        // The losers removed their version folders and staging: nothing for gc to do.
        assert_clean(output);
    }
}

#[test]
fn a_crash_at_any_publish_step_leaves_a_whole_version_on_a_folder() {
    let project = project();
    crash_at_every_publish_step(&project, &LocalFolder(&project));
}

#[test]
fn of_runs_of_one_id_started_together_exactly_one_publishes_on_a_folder() {
    let project = project();
    let output = LocalFolder(&project);
    runs_started_together(&project, &output, 20, 2);
}

#[test]
fn publishing_on_s3_survives_crashes_and_races() {
    let Some(server) = SeaweedFs::start(&[BUCKET]) else {
        return;
    };
    let project = project();
    let output = Bucket(&server);
    crash_at_every_publish_step(&project, &output);
    runs_started_together(&project, &output, 20, 2);
}
