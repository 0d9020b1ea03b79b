//! `bookstore up` and `bookstore watch` on a REAL Podman: Debian's podman 4.3, rootful, `vfs`
//! storage, every path of its own under a temp dir (`CONTAINERS_STORAGE_CONF`: graphroot and
//! runroot; `CONTAINERS_CONF`: tmp_dir, the `file` events backend, cgroupfs, a network config dir
//! holding one loopback-only CNI network, so the node's port bindings are kept and held on
//! 127.0.0.2 without touching the host's bridges or iptables). A busybox-static container
//! labelled as kind labels its node, with no restart policy (kind gives podman nodes none), is the
//! node; the simulator's kube side follows it through podman's Docker-compatible API (`podman
//! system service` on a socket in the temp dir, `follow.rs`), and each Node's providerID says
//! podman built the cluster. bookstore runs with `KIND_EXPERIMENTAL_PROVIDER=podman`, as a kind
//! podman user does, so every node read, start and event goes through the real podman CLI.
//!
//! The scenarios of the Docker tests, through podman: one stale workload (`up` restarts it
//! alone), the engine restarting the node (`podman restart`: the watcher follows podman's
//! events, `died` then `start`, and heals), a node stopped by hand (left as it is), a node left
//! exited (`up` starts it), and a reboot (podman's refresh resets the node to `created`; the
//! watcher's first look starts it and heals).
//!
//! Skipped with a message where podman is missing or cannot run a container (containers start
//! here only with limits no higher than the session's); under CI (`CI` set; `.ci/run` installs
//! podman and busybox-static) that is a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bookstore::event::{Event, HealOutcome, NodeAction, Seen};
use bookstore_sim::kit::{Test, World, poll};
use bookstore_sim::{Fault, SimOptions};

use crate::fake_node::{self, NODE};

const IMAGE: &str = "localhost/bookstore/fake-node:1";
const NETWORK: &str = "bookstore-test";
const BOUND: Duration = Duration::from_secs(60);

struct Podman {
    dir: tempfile::TempDir,
    service: Option<Child>,
}

impl Podman {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn socket(&self) -> PathBuf {
        self.path("podman.sock")
    }

    /// What points podman at this test's own storage and state.
    fn env(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("CONTAINERS_CONF", self.path("containers.conf")),
            ("CONTAINERS_STORAGE_CONF", self.path("storage.conf")),
        ]
    }

    fn podman(&self, args: &[&str]) -> std::process::Output {
        Command::new("podman").args(args).envs(self.env()).stdin(Stdio::null()).output().expect("podman runs")
    }

    fn ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.podman(args);
        if !out.status.success() {
            return Err(format!(
                "podman {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[track_caller]
    fn must(&self, args: &[&str]) -> String {
        self.ok(args).unwrap_or_else(|e| panic!("{e}"))
    }

    fn state(&self) -> String {
        self.must(&["inspect", "--format", "{{.State.Status}}", NODE]).trim().to_string()
    }

    /// `podman system service`: the Docker-compatible API the simulator's follower reads.
    fn start_service(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.path("service.log")).map_err(|e| e.to_string())?;
        let child = Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", self.socket().display()))
            .envs(self.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run podman system service: {e}"))?;
        self.service = Some(child);
        let socket = self.socket();
        poll(BOUND, Duration::from_millis(50), || {
            std::os::unix::net::UnixStream::connect(&socket).map(|_| ())
        })
        .map_err(|e| format!("podman system service does not listen: {e}"))
    }

    fn stop_service(&mut self) {
        if let Some(mut child) = self.service.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// A reboot as podman sees one: the node's processes are gone without an exit recorded,
    /// and the tmpfs of its state (runc's state, podman's `alive` file and its events log) is
    /// empty; the first podman command after it refreshes, resetting the node to `created`.
    fn reboot(&mut self) {
        self.stop_service();
        let ids = self.must(&["inspect", "--format", "{{.State.Pid}} {{.State.ConmonPid}} {{.Id}}", NODE]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        let _ = Command::new("kill").args(["-KILL", ids[0], ids[1]]).status();
        let gone = poll(BOUND, Duration::from_millis(20), || {
            if std::path::Path::new(&format!("/proc/{}", ids[0])).exists() { Err(()) } else { Ok(()) }
        });
        assert!(gone.is_ok(), "the node's process outlived SIGKILL");
        let _ = std::fs::remove_dir_all(format!("/run/runc/{}", ids[2]));
        let _ = std::fs::remove_file(self.path("tmp/alive"));
        let _ = std::fs::remove_dir_all(self.path("tmp/events"));
        // The first podman command after the boot: the refresh (it logs the lock it re-takes).
        let _ = self.podman(&["ps", "-a"]);
        self.start_service().expect("podman system service starts again");
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.stop_service();
        let _ = self.podman(&["rm", "-f", "-t", "0", "-a"]);
        fake_node::unmount_under(self.dir.path());
    }
}

/// A podman of this test's own, with the node image, or why there is none here.
fn podman() -> Result<Podman, String> {
    if which::which("podman").is_err() {
        return Err("podman is not installed (Debian: apt-get install podman)".into());
    }
    // A short path: unix socket paths are limited to ~108 bytes.
    let dir = tempfile::Builder::new().prefix("bsp-").tempdir_in("/tmp").map_err(|e| e.to_string())?;
    let root = dir.path().display().to_string();
    let write =
        |rel: &str, text: String| std::fs::write(dir.path().join(rel), text).map_err(|e| e.to_string());
    std::fs::create_dir_all(dir.path().join("net")).map_err(|e| e.to_string())?;
    write(
        &format!("net/{NETWORK}.conflist"),
        format!(r#"{{"cniVersion":"0.4.0","name":"{NETWORK}","plugins":[{{"type":"loopback"}}]}}"#),
    )?;
    write(
        "storage.conf",
        format!("[storage]\ndriver = \"vfs\"\nrunroot = \"{root}/run\"\ngraphroot = \"{root}/root\"\n"),
    )?;
    write(
        "containers.conf",
        format!(
            "[engine]\ntmp_dir = \"{root}/tmp\"\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n\
             [network]\nnetwork_config_dir = \"{root}/net\"\ndefault_network = \"{NETWORK}\"\n"
        ),
    )?;
    let mut p = Podman { dir, service: None };
    p.ok(&["info", "--format", "{{.Store.GraphDriverName}}"])?;
    let tar = fake_node::rootfs_tar(p.dir.path())?;
    p.ok(&["import", "-q", &tar.display().to_string(), IMAGE])?;
    p.start_service()?;
    Ok(p)
}

/// The node as kind's podman provider makes it (`providers/podman/provision.go`): its labels,
/// no restart policy, the cluster config's port mappings (held on 127.0.0.2 here: the simulator
/// serves them on 127.0.0.1).
fn run_node(p: &Podman, c: &World) -> Result<(), String> {
    let mut args: Vec<String> = ["run", "-d", "--name", NODE, "--hostname", NODE, "--network", NETWORK]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"].map(String::from));
    for label in fake_node::LABELS {
        args.extend(["--label".to_string(), label.to_string()]);
    }
    for cp in fake_node::PORTS {
        if let Some(hp) = c.try_host_port(cp) {
            args.extend(["-p".to_string(), format!("127.0.0.2:{hp}:{cp}")]);
        }
    }
    args.extend([IMAGE.to_string(), "/bin/sh".into(), "-c".into(), fake_node::SCRIPT.into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    p.ok(&argv).map(|_| ())
}

#[test]
fn up_and_watch_through_a_real_podman() {
    let skip = |why: String| {
        if std::env::var_os("CI").is_some() {
            panic!("CI must run the real-podman e2e: {why}");
        }
        eprintln!("SKIPPED up_and_watch_through_a_real_podman: {why}");
    };
    let mut p = match podman() {
        Ok(p) => p,
        Err(why) => return skip(why),
    };
    let c = World::start(SimOptions {
        real_docker: Some(p.socket()),
        node_provider: "podman".into(),
        ..World::options()
    })
    .short_deadlines();
    if let Err(why) = run_node(&p, &c) {
        return skip(why);
    }
    let env = p.env();
    let test = || {
        let mut t = Test::new().world(&c).env("KIND_EXPERIMENTAL_PROVIDER", "podman");
        for (k, v) in &env {
            t = t.env(*k, v);
        }
        t
    };
    let podman_calls = |c: &World| -> Vec<String> {
        c.argv().into_iter().filter(|a| a[0] == "podman").map(|a| a.join(" ")).collect()
    };

    // The engine restarts the node: the watcher follows podman's events (`died`, `start`).
    // The node started after the simulated stack was made: the watcher's first look heals what
    // its start left stale.
    c.sim().wait_healthy(BOUND).expect("the stack follows the podman node");
    c.mark();
    let w = test().args(["watch", "--interval", "0"]).json().code(0).spawn();
    w.until_event(
        "watching podman's events",
        |e: &Event| matches!(e, Event::Watching { engine, .. } if engine == "podman"),
    );
    w.until_event("the first look", |e: &Event| matches!(e, Event::HealFinished { heal: 1, .. }));
    let before = p.must(&["inspect", "--format", "{{.State.StartedAt}}", NODE]);
    p.must(&["restart", "-t", "5", NODE]);
    w.until_event(
        "podman's died",
        |e: &Event| matches!(e, Event::NodeStopped { exit_code, .. } if exit_code == "143"),
    );
    w.until_event("podman's start", |e: &Event| matches!(e, Event::NodeStarted { seen: Seen::Event, .. }));
    assert_ne!(p.must(&["inspect", "--format", "{{.State.StartedAt}}", NODE]), before);
    w.until_event("the heal", |e: &Event| {
        matches!(e, Event::HealFinished { heal: 2, outcome: HealOutcome::Ok, .. })
    });
    c.assert_recovered();
    c.assert_every_route_answers();
    let calls = podman_calls(&c);
    assert!(
        calls.iter().any(|l| l.starts_with(
            "podman events --filter type=container --filter label=io.x-k8s.kind.cluster=bookstore"
        )),
        "{calls:#?}"
    );
    assert!(c.argv().iter().all(|a| a[0] != "docker"), "no docker call on a podman cluster");

    // One stale workload: found and restarted alone, the node read through podman.
    c.sim().fault(Fault::StaleWorkload { workload: "inventory-service".into() });
    c.mark();
    test().args(["up"]).json().code(0).run();
    assert_eq!(c.restarts(), [("inventory-service".to_string(), 1)].into(), "it alone is restarted");
    let calls = podman_calls(&c);
    assert!(
        calls
            .iter()
            .any(|l| l == "podman ps -a --filter label=io.x-k8s.kind.cluster=bookstore --format json"),
        "{calls:#?}"
    );

    // Stopped by hand while podman runs: left as it is.
    p.must(&["stop", "-t", "5", NODE]);
    w.until_event("the stop", |e: &Event| matches!(e, Event::NodeStopped { .. }));
    w.terminate();
    let run = w.wait();
    assert!(
        !run.events().iter().any(|e| matches!(e, Event::HealStarted { start_node: true, .. })),
        "{}",
        run.stderr
    );

    // Left exited: `up` starts it (podman gives kind's nodes no restart policy).
    assert_eq!(p.state(), "exited");
    c.mark();
    test().args(["up"]).json().code(0).run();
    assert!(podman_calls(&c).contains(&format!("podman start {NODE}")), "{:#?}", podman_calls(&c));
    assert_eq!(p.state(), "running");
    c.assert_recovered();
    c.assert_every_route_answers();

    // A reboot: podman's refresh resets the node to `created`; the watcher starts it and heals.
    p.reboot();
    assert_eq!(p.state(), "created");
    let w = test().args(["watch", "--interval", "0"]).json().code(0).spawn();
    w.until_event("the node reset by the reboot", |e: &Event| {
        matches!(e, Event::NodeExited { action: NodeAction::Start, state, .. } if state == "created")
    });
    w.until_event("the heal that starts it", |e: &Event| {
        matches!(e, Event::HealFinished { outcome: HealOutcome::Ok, .. })
    });
    assert_eq!(p.state(), "running");
    c.assert_recovered();
    c.assert_every_route_answers();
    w.terminate();
    w.wait();
    c.check();
    assert_eq!(c.live_clients(), Vec::<String>::new(), "children outlived bookstore");
}
