//! A real Docker daemon plays the node container (`SimOptions::real_docker`): the simulator's
//! kube side follows it once it has first seen it running. While the real container (or its daemon) is down, the kube API and the
//! host ports refuse, as on a stopped kind node; when it runs again with a new `State.StartedAt`,
//! the simulator replays what a Docker restart does to the cluster (every pod restarts stale,
//! Kafka without a volume loses its topics).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::world::SharedRef;

const EVERY: Duration = Duration::from_millis(50);

/// The node container on the real daemon: `Some((running, StartedAt))`, `None` when the daemon
/// does not answer or has no such container.
fn inspect(socket: &Path, name: &str) -> Option<(bool, String)> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    // HTTP/1.0: the daemon answers without chunking and closes the connection.
    write!(s, "GET /containers/{name}/json HTTP/1.0\r\nHost: docker\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if head.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    let v: Value = serde_json::from_str(body).ok()?;
    let running = v.pointer("/State/Running").and_then(Value::as_bool).unwrap_or(false);
    let started = v.pointer("/State/StartedAt").and_then(Value::as_str).unwrap_or("").to_string();
    Some((running, started))
}

pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    pub fn start(shared: SharedRef, socket: PathBuf, node: String) -> Follower {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // Until the real container first runs, the cluster is as the simulator built it.
            let mut last_started: Option<String> = None;
            let mut up = true;
            while !flag.load(Ordering::SeqCst) {
                match inspect(&socket, &node) {
                    Some((true, started)) => {
                        let restarted = last_started.as_ref().is_some_and(|s| *s != started);
                        if !up || restarted {
                            if up {
                                crate::control::docker_stop(&shared);
                            }
                            crate::control::docker_start(&shared);
                            up = true;
                        }
                        last_started = Some(started);
                    }
                    _ if last_started.is_none() => {}
                    _ => {
                        if up {
                            crate::control::docker_stop(&shared);
                            up = false;
                        }
                    }
                }
                std::thread::sleep(EVERY);
            }
        });
        Follower { stop, thread: Some(thread) }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
