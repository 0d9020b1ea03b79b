//! The simulator's knobs for machines other than one laptop (issue 20), through the real docker
//! CLI: other docker CLI releases when the daemon is away, a node Docker does not restart, Docker
//! Desktop's VM clock, the kube API booting after the node starts.

use std::time::{Duration, SystemTime};

use bookstore_sim::SimOptions;
use bookstore_sim::docker_cli::DockerCli;
use bookstore_sim::kit::{World, eventually};

/// These tests' time scale: the simulator's own wire behaviour, fast.
const SCALE: f64 = 0.02;

fn opts() -> SimOptions {
    SimOptions { time_scale: SCALE, ..SimOptions::default() }
}

const NODE: &str = "bookstore-control-plane";

fn inspect(sim: &World, format: &str) -> String {
    sim.docker(&["inspect", "--format", format, NODE]).ok().trim().to_string()
}

#[test]
fn docker_cli_releases_disagree_on_a_daemon_that_is_away() {
    for (cli, info_exit, words) in [
        (DockerCli::Installed, 1, "Cannot connect to the Docker daemon at unix://"),
        (DockerCli::V27_5_1, 0, "Cannot connect to the Docker daemon at unix://"),
        (DockerCli::V29, 1, "failed to connect to the docker API at unix://"),
    ] {
        let sim = World::start(SimOptions { docker_cli: cli, ..opts() });
        assert_eq!(sim.docker(&["info", "--format", "{{.ServerVersion}}"]).ok().trim(), "28.2.2");
        sim.docker_stop();
        // The socket goes with the daemon (its listener, on the simulator's runtime).
        eventually(Duration::from_secs(10), "the Docker socket to go", || {
            (!sim.docker_socket().exists()).then_some(())
        });
        let info = sim.docker(&["info", "--format", "{{.ServerVersion}}"]);
        assert_eq!(info.code, info_exit, "{cli:?}: {}", info.stderr);
        assert_eq!(info.stdout, "\n", "{cli:?}");
        assert!(info.stderr.contains(words), "{cli:?}: {}", info.stderr);
        // `docker version` fails on every release.
        let version = sim.docker(&["version", "--format", "{{.Server.Version}}"]);
        assert_eq!(version.code, 1, "{cli:?}");
        assert!(version.stderr.contains(words), "{cli:?}: {}", version.stderr);
        // What needs no daemon still works.
        sim.docker(&["context", "inspect", "--format", "{{.Endpoints.docker.Host}}"]).ok();
    }
}

#[test]
fn a_node_that_halts_cleanly_is_left_exited_when_docker_comes_back() {
    for left in [false, true] {
        let sim = World::start(SimOptions { node_left_exited: left, ..opts() });
        let before = inspect(&sim, "{{.State.StartedAt}}");
        assert_eq!(
            inspect(
                &sim,
                "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
            ),
            "on-failure:1"
        );
        sim.docker_stop();
        sim.docker_start();
        // The daemon answers again once its listener is bound (on the simulator's runtime).
        eventually(Duration::from_secs(10), "Docker to answer again", || {
            sim.docker(&["version", "--format", "{{.Server.Version}}"]).success().then_some(())
        });
        let state = inspect(&sim, "{{.State.Status}} {{.State.ExitCode}}");
        if left {
            assert_eq!(state, "exited 0");
            assert_eq!(inspect(&sim, "{{.State.StartedAt}}"), before, "not started again");
            // The kube API stays down until somebody starts the node.
            assert!(!sim.kubectl(&["get", "--raw", "/readyz", "--request-timeout=2s"]).success());
            sim.docker(&["start", NODE]).ok();
        } else {
            assert_eq!(state, "running 0");
        }
        assert_ne!(inspect(&sim, "{{.State.StartedAt}}"), before);
        sim.wait_healthy(Duration::from_secs(20)).unwrap();
    }
}

#[test]
fn the_engine_api_tells_time_by_docker_desktops_vm_clock() {
    let sim = World::start(SimOptions { docker_clock_offset_ms: -90_000, api_boot_secs: 0.5, ..opts() });
    sim.docker(&["restart", NODE]).ok();
    // The restart's `start` is 90 s old by the daemon's clock: its `timeNano` says so, and a
    // `--since` of the host's clock 60 s ago misses it (`since`/`until` are the daemon's).
    let host_now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let replay = |since: &str| {
        let mut child = sim
            .command("docker")
            .args(["events", "--since", since, "--format", "{{.Action}} {{.TimeNano}}"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let start = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(1)).ok())
            .find(|l| l.starts_with("start "));
        let _ = child.kill();
        let _ = child.wait();
        start.map(|l| l[6..].trim().parse::<u128>().unwrap())
    };
    let nanos = replay("0").expect("the restart's start replayed");
    let behind = host_now.as_nanos() - nanos;
    assert!((85_000_000_000..120_000_000_000).contains(&behind), "{behind} ns behind");
    assert_eq!(replay(&(host_now.as_secs() - 60).to_string()), None, "a host-clock since missed nothing");
    // The node's API boots after its start: it refuses for a while, then answers.
    eventually(Duration::from_secs(10), "the kube API to answer again", || {
        sim.kubectl(&["get", "--raw", "/readyz", "--request-timeout=2s"]).success().then_some(())
    });
    assert!(
        sim.audit().iter().any(|e| e.verb == "fault" && e.detail.contains("api_refuse_for")),
        "no API boot"
    );
}
