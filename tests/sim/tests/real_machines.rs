//! The simulator's knobs for machines other than one laptop (issue 20), through the real docker
//! CLI: other docker CLI releases when the daemon is away, a node Docker does not restart, Docker
//! Desktop's VM clock, the kube API booting after the node starts.

mod common;

use std::time::{Duration, SystemTime};

use bookstore_sim::docker_cli::DockerCli;
use bookstore_sim::{Sim, SimOptions};
use common::*;

const NODE: &str = "bookstore-control-plane";

fn inspect(sim: &Sim, format: &str) -> String {
    ok(&docker(sim, &["inspect", "--format", format, NODE])).trim().to_string()
}

#[test]
fn docker_cli_releases_disagree_on_a_daemon_that_is_away() {
    for (cli, info_exit, words) in [
        (DockerCli::Installed, 1, "Cannot connect to the Docker daemon at unix://"),
        (DockerCli::V27_5_1, 0, "Cannot connect to the Docker daemon at unix://"),
        (DockerCli::V29, 1, "failed to connect to the docker API at unix://"),
    ] {
        let sim = start(SimOptions { docker_cli: cli, ..opts() });
        assert_eq!(ok(&docker(&sim, &["info", "--format", "{{.ServerVersion}}"])).trim(), "28.2.2");
        sim.docker_stop();
        // The socket goes with the daemon (its listener, on the simulator's runtime).
        eventually(Duration::from_secs(10), "the Docker socket to go", || {
            (!sim.docker_socket().exists()).then_some(())
        });
        let info = docker(&sim, &["info", "--format", "{{.ServerVersion}}"]);
        assert_eq!(info.status.code(), Some(info_exit), "{cli:?}: {}", stderr(&info));
        assert_eq!(String::from_utf8_lossy(&info.stdout), "\n", "{cli:?}");
        assert!(stderr(&info).contains(words), "{cli:?}: {}", stderr(&info));
        // `docker version` fails on every release.
        let version = docker(&sim, &["version", "--format", "{{.Server.Version}}"]);
        assert_eq!(version.status.code(), Some(1), "{cli:?}");
        assert!(stderr(&version).contains(words), "{cli:?}: {}", stderr(&version));
        // What needs no daemon still works.
        ok(&docker(&sim, &["context", "inspect", "--format", "{{.Endpoints.docker.Host}}"]));
    }
}

#[test]
fn a_node_that_halts_cleanly_is_left_exited_when_docker_comes_back() {
    for left in [false, true] {
        let sim = start(SimOptions { node_left_exited: left, ..opts() });
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
        let state = inspect(&sim, "{{.State.Status}} {{.State.ExitCode}}");
        if left {
            assert_eq!(state, "exited 0");
            assert_eq!(inspect(&sim, "{{.State.StartedAt}}"), before, "not started again");
            // The kube API stays down until somebody starts the node.
            assert!(
                kubectl(&sim, &["get", "--raw", "/readyz", "--request-timeout=2s"]).status.code() != Some(0)
            );
            ok(&docker(&sim, &["start", NODE]));
        } else {
            assert_eq!(state, "running 0");
        }
        assert_ne!(inspect(&sim, "{{.State.StartedAt}}"), before);
        sim.wait_healthy(Duration::from_secs(20)).unwrap();
    }
}

#[test]
fn the_engine_api_tells_time_by_docker_desktops_vm_clock() {
    let sim = start(SimOptions { docker_clock_offset_ms: -90_000, api_boot_secs: 0.5, ..opts() });
    ok(&docker(&sim, &["restart", NODE]));
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
        kubectl(&sim, &["get", "--raw", "/readyz", "--request-timeout=2s"]).status.success().then_some(())
    });
    assert!(
        sim.audit().iter().any(|e| e.verb == "fault" && e.detail.contains("api_refuse_for")),
        "no API boot"
    );
}
