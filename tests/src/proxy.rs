//! A Docker socket that can disappear: a Unix-socket proxy in front of the real daemon's
//! socket. Point `DOCKER_HOST=unix://<path>` at it, then `kill()` it mid-step to make the daemon
//! vanish for molt (and the compose CLI), and `start()` again at the same path to bring it back.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct DockerProxy {
    pub path: PathBuf,
    upstream: PathBuf,
    alive: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<UnixStream>>>,
}

impl DockerProxy {
    /// Listen at `path`, forwarding to the daemon's socket (`/var/run/docker.sock`).
    pub fn start(path: &Path) -> DockerProxy {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let p = DockerProxy {
            path: path.to_path_buf(),
            upstream: PathBuf::from("/var/run/docker.sock"),
            alive: Arc::new(AtomicBool::new(true)),
            streams: Arc::default(),
        };
        let (alive, streams, upstream) = (p.alive.clone(), p.streams.clone(), p.upstream.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while alive.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = UnixStream::connect(&upstream) else {
                            continue;
                        };
                        {
                            let mut s = streams.lock().unwrap();
                            s.push(client.try_clone().unwrap());
                            s.push(server.try_clone().unwrap());
                        }
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        p
    }

    /// The daemon disappears: no new connection, every open one cut.
    pub fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pipe(mut from: UnixStream, mut to: UnixStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}
