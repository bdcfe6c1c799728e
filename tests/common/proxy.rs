//! A TCP pass-through in front of a server that cuts the connection at a chosen request:
//! the way to stop a server at an exact point of a run, not at a moment picked by a timer.
//!
//! It only forwards bytes; requests and answers are the real server's.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Trigger = Box<dyn FnOnce() + Send>;

pub struct CutOffProxy {
    pub port: u16,
    tripped: Arc<AtomicBool>,
}

impl CutOffProxy {
    /// Forwards connections on a free local port to `upstream`. The first HTTP request
    /// whose request line `matches` runs `on_trip` before a byte of it is forwarded (e.g.
    /// stopping the server); from then on every connection is closed and no new one is
    /// accepted.
    pub fn start(
        upstream: u16,
        matches: impl Fn(&str) -> bool + Send + Sync + 'static,
        on_trip: impl FnOnce() + Send + 'static,
    ) -> CutOffProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let tripped = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            tripped: tripped.clone(),
            matches: Arc::new(matches),
            on_trip: Arc::new(Mutex::new(Some(Box::new(on_trip)))),
        };
        std::thread::spawn(move || {
            // Dropping the listener once tripped makes new connections fail outright.
            while !shared.tripped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let shared = shared.clone();
                        std::thread::spawn(move || forward(client, upstream, shared));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        CutOffProxy { port, tripped }
    }

    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Shared {
    tripped: Arc<AtomicBool>,
    matches: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    on_trip: Arc<Mutex<Option<Trigger>>>,
}

fn forward(client: TcpStream, upstream: u16, shared: Shared) {
    client.set_nonblocking(false).unwrap();
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (mut client_read, mut server_write) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut server_read, mut client_write) = (server, client);
    let answers = std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Both);
    });
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = match client_read.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let chunk = &buffer[..read];
        if shared.tripped.load(Ordering::SeqCst) || trips(chunk, &shared) {
            break;
        }
        if server_write.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = client_read.shutdown(Shutdown::Both);
    let _ = server_write.shutdown(Shutdown::Both);
    let _ = answers.join();
}

/// Whether `chunk` starts a request that matches; if so, runs the trigger (once).
fn trips(chunk: &[u8], shared: &Shared) -> bool {
    let text = String::from_utf8_lossy(&chunk[..chunk.len().min(4096)]);
    let Some(request_line) = text.lines().next() else {
        return false;
    };
    if !(shared.matches)(request_line) {
        return false;
    }
    if let Some(on_trip) = shared.on_trip.lock().unwrap().take() {
        on_trip();
    }
    shared.tripped.store(true, Ordering::SeqCst);
    true
}
