//! `docker events` (the real docker 28 CLI) against the simulator's `GET /events`: what
//! `docker restart` and a Docker Desktop restart emit, `--since`/`--until` replay, filters, and
//! the stream ending when the daemon goes away.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bookstore_sim::kit::{Run, World, eventually};
use serde_json::Value;

/// These tests' time scale: the simulator's own wire behaviour, fast.
const SCALE: f64 = 0.02;

fn opts() -> bookstore_sim::SimOptions {
    bookstore_sim::SimOptions { time_scale: SCALE, ..bookstore_sim::SimOptions::default() }
}

const NODE: &str = "bookstore-control-plane";
const LABEL: &str = "label=io.x-k8s.kind.cluster=bookstore";

fn unix_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Past events as `docker events --since … --until … --format '{{json .}}'` prints them.
fn past(sim: &World, since: &str, filters: &[&str]) -> Vec<Value> {
    let until = unix_now();
    let mut args = vec!["events", "--since", since, "--until", &until, "--format", "{{json .}}"];
    for f in filters {
        args.extend(["--filter", f]);
    }
    let out = sim.docker(&args).ok();
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn actions(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["Action"].as_str().unwrap_or("").to_string()).collect()
}

fn started_at(sim: &World) -> String {
    sim.docker(&["inspect", "--format", "{{.State.StartedAt}}", NODE]).ok().trim().to_string()
}

#[test]
fn docker_restart_of_the_node_emits_what_the_daemon_does() {
    let sim = World::start(opts());
    let since = unix_now();
    let before = started_at(&sim);
    sim.docker(&["restart", NODE]).ok();
    let events = past(&sim, &since, &[LABEL]);
    assert_eq!(actions(&events), ["kill", "die", "stop", "start", "restart"], "{events:#?}");
    let die = &events[1];
    assert_eq!(die["Type"], "container");
    assert_eq!(die["Actor"]["Attributes"]["name"], NODE);
    assert_eq!(die["Actor"]["Attributes"]["io.x-k8s.kind.role"], "control-plane");
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "137");
    assert!(die["timeNano"].as_u64().unwrap() > 0);
    assert_ne!(started_at(&sim), before, "a new State.StartedAt");
    // Filters: by event, by container name prefix; a label nobody has matches nothing.
    assert_eq!(actions(&past(&sim, &since, &["event=start"])), ["start"]);
    assert_eq!(actions(&past(&sim, &since, &["container=bookstore-control", "event=die"])), ["die"]);
    assert!(past(&sim, &since, &["label=io.x-k8s.kind.cluster=other"]).is_empty());
}

#[test]
fn a_docker_desktop_restart_ends_the_stream_and_replays_only_the_new_daemons_start() {
    let sim = World::start(opts());
    let before = started_at(&sim);
    let mut child = sim
        .command("docker")
        .args(["events", "--format", "{{json .}}", "--filter", LABEL])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The stream is open once the daemon has a subscriber: give the CLI its request.
    eventually(Duration::from_secs(10), "docker events to connect", || {
        sim.audit().iter().any(|e| e.path.contains("/events")).then_some(())
    });
    let since = unix_now();
    sim.docker_desktop_restart(1.0, 0.0);
    let out = child.stdout.take().unwrap();
    let lines: Vec<Value> = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    // As on a real daemon stopping: the node's kill, die, stop, then the stream breaks.
    assert_eq!(actions(&lines), ["kill", "die", "stop"], "{lines:#?}");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("unexpected EOF"), "{err}");

    // While Docker is down the socket refuses.
    let down = sim.docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(!down.success());
    assert!(down.stderr.contains("Cannot connect to the Docker daemon"), "{}", down.stderr);

    // Back: the new daemon's ring holds only what happened since it started.
    eventually(Duration::from_secs(10), "Docker to come back", || {
        sim.docker(&["info", "--format", "{{.ServerVersion}}"]).success().then_some(())
    });
    let replay = past(&sim, &since, &[LABEL]);
    assert_eq!(actions(&replay), ["start"], "{replay:#?}");
    assert_ne!(started_at(&sim), before, "the node started again");
}

#[test]
fn a_stream_until_a_future_time_ends_cleanly() {
    let sim = World::start(opts());
    let until = {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_millis(800);
        d.as_secs().to_string() + &format!(".{:09}", d.subsec_nanos())
    };
    let since = unix_now();
    let child = sim
        .command("docker")
        .args(["events", "--since", &since, "--until", &until, "--format", "{{json .}}", "--filter", LABEL])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sim.docker(&["stop", NODE]).ok();
    let text = Run::from(child.wait_with_output().unwrap()).ok();
    let got: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(actions(&got), ["kill", "die", "stop"], "{text}");
}
