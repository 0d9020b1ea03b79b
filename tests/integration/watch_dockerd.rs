//! `bookstore watch` following a REAL Docker daemon through a real daemon restart.
//!
//! Debian's `dockerd` (docker.io) runs on a private socket in a temp dir, exactly as
//! `dockerd --host unix://<dir>/docker.sock --data-root <dir>/data --exec-root <dir>/exec
//! --pidfile <dir>/pid --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs`.
//! A container from a `docker import`ed busybox-static rootfs, labelled as kind labels its node
//! and restarted `on-failure:1` as kind sets it, stands in for the node; the simulator's kube side
//! follows it (`SimOptions::real_docker`). SIGTERM to dockerd ends the watcher's `docker events`
//! (`unexpected EOF`); the daemon started again restarts the node with a new `State.StartedAt`,
//! the simulator replays the Docker restart on the cluster, and the watcher heals it.
//!
//! Skipped with a message where `dockerd` is missing or cannot start (not root, no cgroups);
//! under CI (`CI` set; `.ci/run` installs docker.io and busybox-static) that is a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bookstore::event::{Event, HealOutcome};
use bookstore_sim::SimOptions;
use bookstore_sim::kit::{Test, World, poll};

use crate::fake_node::{self, NODE};

const IMAGE: &str = "bookstore/fake-node:1";
const START_BOUND: Duration = Duration::from_secs(60);

struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dockerd {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn start(dir: tempfile::TempDir) -> Result<Dockerd, String> {
        let mut d = Dockerd { dir, child: None };
        d.launch()?;
        Ok(d)
    }

    fn launch(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dockerd.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run dockerd: {e}"))?;
        self.child = Some(child);
        // Until it answers, or has exited (no use waiting then).
        let mut exited = None;
        let answered = poll(START_BOUND, Duration::from_millis(100), || {
            if self.docker(&["info", "--format", "{{.ServerVersion}}"]).status.success() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited = Some(status);
                return Ok(());
            }
            Err(())
        });
        if let Some(status) = exited {
            self.child = None;
            return Err(format!("dockerd exited ({status}):\n{}", self.log_tail()));
        }
        answered.map_err(|()| format!("dockerd did not answer within {START_BOUND:?}:\n{}", self.log_tail()))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// SIGTERM, and wait until it has exited (it stops its containers first).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let ended =
            poll(START_BOUND, Duration::from_millis(20), || child.try_wait().ok().flatten().ok_or(()));
        if ended.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .stdin(Stdio::null())
            .output()
            .expect("the docker client runs")
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn started_at(&self) -> String {
        self.ok(&["inspect", "--format", "{{.State.StartedAt}}", NODE]).trim().to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        // dockerd leaves its data root and network namespaces mounted.
        fake_node::unmount_under(self.dir.path());
    }
}

/// A dockerd on a private socket with the node image, or why there is none here.
fn dockerd() -> Result<Dockerd, String> {
    if which::which("dockerd").is_err() {
        return Err("dockerd is not installed (Debian: apt-get install docker.io)".into());
    }
    // A short path: unix socket paths are limited to ~108 bytes.
    let dir = tempfile::Builder::new().prefix("bsd-").tempdir_in("/tmp").map_err(|e| e.to_string())?;
    let d = Dockerd::start(dir)?;
    import_node_image(&d)?;
    Ok(d)
}

/// The node image: a busybox-static rootfs, `docker import`ed.
fn import_node_image(d: &Dockerd) -> Result<(), String> {
    let tar = fake_node::rootfs_tar(d.dir.path())?;
    d.ok(&["import", &tar.display().to_string(), IMAGE]);
    Ok(())
}

/// The node container as kind makes it: its labels, `--restart on-failure:1`, and the cluster
/// config's port mappings in its HostConfig (`--network none`: nothing is bound, the
/// simulator serves those ports). It exits at once on SIGTERM (as 143) so the daemon restarts it.
fn run_node(d: &Dockerd, c: &World) {
    let mut args: Vec<String> =
        ["run", "-d", "--name", NODE, "--network", "none", "--restart", "on-failure:1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for label in fake_node::LABELS {
        args.extend(["--label".to_string(), label.to_string()]);
    }
    for cp in fake_node::PORTS {
        if let Some(hp) = c.try_host_port(cp) {
            args.extend(["-p".to_string(), format!("127.0.0.1:{hp}:{cp}")]);
        }
    }
    args.extend([IMAGE.to_string(), "/bin/sh".into(), "-c".into(), fake_node::SCRIPT.into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    d.ok(&argv);
}

#[test]
fn the_watcher_follows_a_real_docker_daemon_through_its_restart() {
    let mut d = match dockerd() {
        Ok(d) => d,
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI must run the real-dockerd e2e: {why}"),
        Err(why) => {
            eprintln!("SKIPPED the_watcher_follows_a_real_docker_daemon_through_its_restart: {why}");
            return;
        }
    };
    // The simulator (following the daemon), then the node with the simulator's host ports.
    let c = World::start(SimOptions { real_docker: Some(d.socket()), ..World::options() }).short_deadlines();
    run_node(&d, &c);
    c.mark();

    let w = Test::new().world(&c).args(["watch", "--interval", "0"]).json().code(0).spawn();
    w.until_event("watching", |e| matches!(e, Event::Watching { .. }));
    let before = d.started_at();

    // The real daemon restarts: its event stream ends, the node comes back.
    d.stop();
    w.until_event("docker_down", |e| matches!(e, Event::DockerDown { .. }));
    d.launch().expect("dockerd starts again");
    w.until_event("docker_up", |e| matches!(e, Event::DockerUp { .. }));
    w.until_event("node_started", |e| matches!(e, Event::NodeStarted { .. }));
    assert_ne!(d.started_at(), before, "the daemon restarted the node");
    w.until_event("the heal", |e| matches!(e, Event::HealFinished { outcome: HealOutcome::Ok, .. }));
    c.assert_recovered();
    c.assert_every_route_answers();

    w.terminate();
    let run = w.wait();
    assert!(run.stderr.contains("unexpected EOF"), "{}", run.stderr);
    assert_eq!(c.live_clients(), Vec::<String>::new(), "children outlived the watcher");
}
