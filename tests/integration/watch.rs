//! `bookstore watch` end to end on the simulator, through the real `docker` (its `events`
//! stream included) and `kubectl` clients: Docker Desktop restarts healed with no other command,
//! a restart in the middle of a heal, a failing heal retried, the lock shared with manual runs,
//! SIGTERM and Ctrl-C. Every run is checked for the sentinel password (argv, output) and for
//! children left behind.

use std::time::Duration;

use bookstore::event::{Event, HealOutcome, NodeAction, Seen};
use bookstore_sim::kit::{BOUND, Run, Running, Test, World, assert_recovery_order, leaks_in};
use bookstore_sim::{AuditEntry, Fault, SimOptions, Source};

/// How long a watcher may take to end after SIGTERM / Ctrl-C (a bound, not a goal: it takes
/// well under a second here).
const STOP_BOUND: Duration = Duration::from_secs(10);

pub(crate) fn heal_finished(want: HealOutcome) -> impl Fn(&Event) -> bool {
    move |e: &Event| matches!(e, Event::HealFinished { outcome, .. } if *outcome == want)
}

/// Start the watcher and wait until it follows Docker's events and its first look is done (one
/// convergent heal: a check on a healthy stack).
fn watch<'w>(c: &'w World, interval: &str) -> Running<'w> {
    let w = spawn_watch(c, interval);
    w.until_event("watching", |e: &Event| matches!(e, Event::Watching { .. }));
    w.until_event("the first look", heal_finished(HealOutcome::Ok));
    w
}

/// Start the watcher (`--json`, its exit code read by the test) and return at once.
pub(crate) fn spawn_watch<'w>(c: &'w World, interval: &str) -> Running<'w> {
    Test::new().world(c).args(["watch", "--interval", interval]).json().any_code().spawn()
}

/// Stop it the way a service manager does; it ends by itself within the bound.
pub(crate) fn terminate(w: Running) -> Run {
    w.terminate();
    w.ends_within(STOP_BOUND, "SIGTERM")
}

/// Nothing left behind, no secret anywhere, nothing deleted (but pods their controller recreates).
pub(crate) fn assert_clean(c: &World, runs: &[&Run]) {
    assert_eq!(c.live_clients(), Vec::<String>::new(), "children outlived the watcher");
    for a in c.argv() {
        let line = a.join(" ");
        assert!(leaks_in(line.as_bytes()).is_empty(), "the password in argv: {line}");
    }
    for run in runs {
        assert!(leaks_in(run.stdout.as_bytes()).is_empty(), "the password on stdout");
        assert!(leaks_in(run.stderr.as_bytes()).is_empty(), "the password on stderr");
    }
    // A pod deleted so its controller recreates it (a crash-looping app's, issue 22; ztunnel's on a
    // node, issue 19) is a restart.
    assert_eq!(c.deletes(), Vec::<String>::new(), "something was deleted");
}

fn changes(audit: &[AuditEntry]) -> Vec<String> {
    audit
        .iter()
        .filter(|e| {
            matches!(e.source, Source::Kube | Source::Connect | Source::Docker)
                && !matches!(e.verb.as_str(), "GET" | "HEAD")
        })
        .map(|e| format!("{:?} {} {}", e.source, e.verb, e.path))
        .collect()
}

#[test]
fn docker_desktop_restarts_are_healed_without_any_other_command() {
    let c = World::healthy().short_deadlines();
    c.mark();
    let w = watch(&c, "0");
    for restart in 1..=2 {
        let mark = c.sim().audit().len();
        // Docker goes away for a second (its socket too), then the node starts again with a
        // new State.StartedAt, every pod stale, Kafka's topics gone.
        c.sim().docker_desktop_restart(1.0, 0.5);
        w.until_event("docker_down", |e: &Event| matches!(e, Event::DockerDown { .. }));
        w.until_event("docker_up", |e: &Event| matches!(e, Event::DockerUp { .. }));
        w.until_event("node_started", |e: &Event| matches!(e, Event::NodeStarted { .. }));
        // (Heal 1 was the first look.)
        w.until_event(&format!("heal {} finished ok", restart + 1), |e| {
            matches!(e, Event::HealFinished { heal, outcome: HealOutcome::Ok, .. } if *heal == restart + 1)
        });
        c.assert_recovered();
        c.assert_every_route_answers();
        assert_recovery_order(&c.sim().audit().split_off(mark));
    }
    let run = terminate(w);
    run.expect(0);
    assert!(run.stderr.contains("Docker is not running"), "{}", run.stderr);
    assert!(run.stderr.contains("Healed in"), "{}", run.stderr);
    let ev = run.events();
    assert_eq!(
        ev.iter().filter(|e| matches!(e, Event::HealStarted { .. })).count(),
        3,
        "the first look, one heal per restart"
    );
    assert_clean(&c, &[&run]);
}

#[test]
fn a_restart_in_the_middle_of_a_heal_ends_healed() {
    let c = World::healthy().short_deadlines();
    c.mark();
    let w = watch(&c, "0");
    c.sim().docker_desktop_restart(0.5, 0.0);
    w.until_event("heal_started", |e: &Event| matches!(e, Event::HealStarted { .. }));
    w.until_step("Restarting 16 workloads");
    // Docker Desktop restarts again while the heal restarts the workloads.
    c.sim().docker_desktop_restart(1.0, 0.0);
    w.until_event("the heal stopped", heal_finished(HealOutcome::Cancelled));
    w.until_event("docker_up", |e: &Event| matches!(e, Event::DockerUp { .. }));
    w.until_event("the heal that starts over", heal_finished(HealOutcome::Ok));
    c.assert_recovered();
    c.assert_every_route_answers();
    let run = terminate(w);
    run.expect(0);
    assert!(run.stderr.contains("Heal stopped after"), "{}", run.stderr);
    assert_clean(&c, &[&run]);
}

#[test]
fn sigterm_in_the_middle_of_a_heal_stops_it_and_its_children() {
    let c = World::healthy().short_deadlines();
    c.mark();
    let w = watch(&c, "0");
    c.sim().docker_desktop_restart(0.3, 0.0);
    w.until_step("Restarting 16 workloads");
    let run = terminate(w);
    run.expect(0);
    assert!(run.stderr.contains("stopped watching (SIGTERM)"), "{}", run.stderr);
    assert_clean(&c, &[&run]);
    // What it stopped converges on the next run.
    let rerun = Test::new().world(&c).args(["up"]).json().code(0).run();
    c.assert_recovered();
    assert_clean(&c, &[&run, &rerun]);
}

#[test]
fn a_heal_that_fails_is_retried_with_backoff() {
    let c = World::healthy().short_deadlines();
    c.deadline("- { name: redis,", "1s");
    c.mark();
    let w = watch(&c, "0");
    c.sim().fault(Fault::RolloutNeverCompletes { workload: "redis".into() });
    c.sim().docker_desktop_restart(0.3, 0.0);
    w.until_event("the heal failing", heal_finished(HealOutcome::Failed));
    // The cause goes away; the retry (after its backoff, not at once) heals.
    c.sim().fault(Fault::Clear);
    w.until_event("the retry healing", heal_finished(HealOutcome::Ok));
    c.assert_recovered();
    let run = terminate(w);
    run.expect(0);
    let ev = run.events();
    let failed = ev.iter().find(|e| heal_finished(HealOutcome::Failed)(e)).unwrap();
    let Event::HealFinished { exit_code, message, retry_in_ms, .. } = failed else { unreachable!() };
    assert_eq!(*exit_code, Some(124), "{failed:?}");
    assert!(message.as_deref().unwrap_or_default().contains("infra/redis"), "{failed:?}");
    assert_eq!(*retry_in_ms, Some(5000));
    assert_eq!(
        ev.iter().filter(|e| matches!(e, Event::HealStarted { .. })).count(),
        3,
        "the first look, then no hot loop"
    );
    assert!(run.stderr.contains("retrying in 5.0s"), "{}", run.stderr);
    // With what `bookstore doctor` finds then (the heal stopped before the connectors).
    let report = &run.stderr[run.stderr.find("what `bookstore doctor` finds now").expect("a diagnosis")..];
    assert!(report.contains("[connectors-missing]"), "{report}");
    assert!(
        ev.iter().any(|e| matches!(e, Event::Finding(f) if f.id == "connectors-missing")),
        "{}",
        run.stdout
    );
    assert_clean(&c, &[&run]);
}

#[test]
fn a_manual_run_while_the_watcher_heals_is_told_so() {
    let c = World::healthy().short_deadlines();
    c.mark();
    let w = watch(&c, "0");
    c.sim().docker_desktop_restart(0.3, 0.0);
    w.until_step("Restarting 16 workloads");
    let manual = Test::new().world(&c).args(["up"]).json().code(5).run();
    assert!(manual.stderr.contains("running `bookstore watch` (healing:"), "{}", manual.stderr);
    w.until_event("the heal", heal_finished(HealOutcome::Ok));
    c.assert_recovered();
    let run = terminate(w);
    run.expect(0);
    assert_clean(&c, &[&run, &manual]);
}

#[test]
fn the_watcher_waits_for_a_manual_run() {
    let c = World::broken().short_deadlines();
    c.sim().fault(Fault::ApiRefuseFor { secs: 4.0 });
    c.mark();
    // `up` holds the lock while it waits for the API; the stack is still broken meanwhile.
    let manual = Test::new().world(&c).args(["up"]).json().any_code().spawn();
    manual.until_step("for the Kubernetes API");
    let w = spawn_watch(&c, "1s");
    // Its first look finds the lock taken: it waits, then heals once `up` has finished.
    c.until("the watcher to wait for the manual run", || w.stderr().contains("to finish before healing"));
    assert!(w.stderr().contains("running `bookstore up` to finish before healing"), "{}", w.stderr());
    let manual = manual.wait();
    manual.expect(0);
    w.until_event("the watcher's heal", heal_finished(HealOutcome::Ok));
    c.assert_recovered();
    let run = terminate(w);
    run.expect(0);
    assert_clean(&c, &[&run, &manual]);
}

#[test]
fn on_a_healthy_stack_the_watcher_only_reads() {
    let c = World::healthy().short_deadlines();
    c.mark();
    let w = watch(&c, "200ms");
    // Several rounds of checks: every route probed, nothing changed.
    c.until("three rounds of checks", || {
        c.audit().iter().filter(|e| e.source == Source::Connect && e.path.contains("expand=status")).count()
            >= 3
    });
    let run = terminate(w);
    run.expect(0);
    assert_eq!(changes(&c.audit()), Vec::<String>::new(), "the watcher changed something");
    // Its first look is the only heal: a check.
    let heals: Vec<String> = run
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::HealStarted { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(heals.len(), 1, "{}", run.stderr);
    assert!(heals[0].starts_with("first look"), "{heals:?}");
    assert_clean(&c, &[&run]);
}

#[test]
fn a_heal_on_a_healthy_stack_restarts_nothing() {
    // The check sees Connect reset once (a blip): it heals, and healing a healthy stack must
    // change nothing.
    let c = World::healthy().short_deadlines();
    c.mark();
    c.sim().fault(Fault::ConnectReset { count: 1 });
    // (Its first look is that heal.)
    let w = spawn_watch(&c, "1s");
    w.until_event("the heal", heal_finished(HealOutcome::Ok));
    let run = terminate(w);
    run.expect(0);
    assert_eq!(c.patches(), Vec::<String>::new(), "a heal restarted something on a healthy stack");
    let puts: Vec<String> = c
        .audit()
        .iter()
        .filter(|e| e.source == Source::Connect && e.verb == "PUT")
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(puts, Vec::<String>::new(), "a heal re-registered a connector that was fine");
    assert_clean(&c, &[&run]);
}

/// Docker Desktop quit (issue 20, item 5): said once; the docker CLI is asked again only on the
/// slow backoff (up to 30 s) while the endpoint's socket is gone, and Docker is noticed back as
/// soon as its socket accepts again. Then Ctrl-C.
#[test]
fn while_docker_is_away_its_socket_is_watched_not_polled_with_the_cli() {
    let c = World::healthy().short_deadlines();
    c.sim().docker_stop();
    c.mark();
    let w = spawn_watch(&c, "0");
    w.until_event("docker_down", |e: &Event| matches!(e, Event::DockerDown { .. }));
    // (`docker version` now; `docker info` was the probe before.)
    let probes =
        || c.argv().iter().filter(|a| a.get(1).is_some_and(|x| x == "version" || x == "info")).count();
    // Two seconds away: the first probe, and no other (the 2 s ceiling asked 4 times).
    std::thread::sleep(Duration::from_secs(2));
    assert!(probes() <= 2, "{} docker CLI probes while Docker was away 2 s", probes());
    c.sim().docker_start();
    // Noticed back by its socket, not the backoff (30 s now).
    w.until_event("docker_up", |e: &Event| matches!(e, Event::DockerUp { .. }));
    w.interrupt();
    let run = w.ends_within(STOP_BOUND, "Ctrl-C");
    run.expect(130);
    assert_eq!(run.stderr.matches("Docker is not running").count(), 1, "{}", run.stderr);
    assert_eq!(run.events().iter().filter(|e| matches!(e, Event::DockerDown { .. })).count(), 1);
    assert_clean(&c, &[&run]);
}

// ---- real machines (issue 20) -----------------------------------------------------------------

/// The docker CLI of Docker Desktop ≤ 4.40 and distributions' docker 26/27 (v27.5.1: `docker info
/// --format` exits 0 with the daemon away), and docker 29's words: the watcher sees Docker go and
/// come back on every release.
#[test]
fn docker_away_is_seen_on_every_docker_cli_release() {
    use bookstore_sim::docker_cli::DockerCli;
    for (cli, words) in [
        (DockerCli::V27_5_1, "Cannot connect to the Docker daemon"),
        (DockerCli::V29, "failed to connect to the docker API at unix://"),
    ] {
        let c = World::start(SimOptions { docker_cli: cli, ..World::options() }).short_deadlines();
        c.sim().docker_stop();
        c.until("the Docker socket to go", || !c.sim().docker_socket().exists());
        c.mark();
        let w = spawn_watch(&c, "0");
        w.until_event("docker_down", |e: &Event| matches!(e, Event::DockerDown { .. }));
        c.sim().docker_start();
        w.until_event("docker_up", |e: &Event| matches!(e, Event::DockerUp { .. }));
        // (Its heal is every other test's: SIGTERM in the middle of it.)
        let run = terminate(w);
        run.expect(0);
        let down = run
            .events()
            .into_iter()
            .find_map(|e| match e {
                Event::DockerDown { message } => Some(message),
                _ => None,
            })
            .unwrap();
        assert!(down.contains(words), "{cli:?}: {down}");
        assert_clean(&c, &[&run]);
    }
}

/// Docker comes back without the node (kind#3244: it halted cleanly and `on-failure:1` restarts
/// only a node that failed): the watcher starts it and heals.
#[test]
fn a_node_docker_left_exited_is_started_and_healed() {
    let opts = SimOptions { node_left_exited: true, ..fast() };
    let c = World::start(opts).short_deadlines();
    c.mark();
    let w = watch(&c, "0");
    c.sim().docker_desktop_restart(0.5, 0.0);
    w.until_event("the node judged stopped with Docker", |e| {
        matches!(e, Event::NodeExited { stopped_with_docker: true, action: NodeAction::Start, .. })
    });
    w.until_event("the heal", heal_finished(HealOutcome::Ok));
    c.assert_recovered();
    c.assert_every_route_answers();
    let run = terminate(w);
    run.expect(0);
    let starts = c.audit().iter().filter(|e| e.verb == "POST" && e.path.ends_with("/start")).count();
    assert_eq!(starts, 1, "the node is started once");
    assert!(run.stderr.contains("Starting the kind node bookstore-control-plane"), "{}", run.stderr);
    assert_clean(&c, &[&run]);
}

/// A node stopped by hand while Docker runs is said so and left stopped; started by hand, it is
/// healed.
#[test]
fn a_node_stopped_by_hand_is_left_stopped() {
    let c = World::start(fast()).short_deadlines();
    c.mark();
    let w = watch(&c, "200ms");
    let docker = |args: &[&str]| {
        c.docker(args).ok();
    };
    docker(&["stop", "bookstore-control-plane"]);
    w.until_event("the node judged stopped by hand", |e| {
        matches!(e, Event::NodeExited { stopped_with_docker: false, action: NodeAction::None, .. })
    });
    // Checks go on (the node is looked at every 200 ms): nothing starts it.
    let looks = || c.argv().iter().filter(|a| a.get(1).is_some_and(|x| x == "inspect")).count();
    let before = looks();
    c.until("a few more looks at the node", || looks() >= before + 3);
    assert!(
        !c.audit().iter().any(|e| e.verb == "POST" && e.path.ends_with("/start")),
        "the watcher started it"
    );
    docker(&["start", "bookstore-control-plane"]);
    w.until_event("the heal", heal_finished(HealOutcome::Ok));
    c.assert_recovered();
    let run = terminate(w);
    run.expect(0);
    assert_eq!(run.stderr.matches("was stopped while Docker ran").count(), 1, "said once: {}", run.stderr);
    assert_eq!(
        run.events().iter().filter(|e| matches!(e, Event::HealStarted { .. })).count(),
        2,
        "{}",
        run.stderr
    );
    assert_clean(&c, &[&run]);
}

/// A login agent starts after Docker has restarted the node (moby's `restore` starts it before
/// the API answers): the watcher's first connect heals what it finds, with `--interval 0` too;
/// its state file keeps the start it healed, so a restart while it was not running is told from
/// one it already healed (then the first look restarts nothing).
#[test]
fn a_restart_before_the_watcher_started_is_healed() {
    let c = World::start(fast()).short_deadlines();
    c.mark();
    // A first watcher looks at the healthy stack and keeps the start it found healed.
    let w = spawn_watch(&c, "0");
    w.until_event("the first look", heal_finished(HealOutcome::Ok));
    let first = terminate(w);
    first.expect(0);
    let state_file = c.sim().dir().join("home/.local/state/bookstore/watch-bookstore.json");
    let started = inspect_started(&c);
    let state = std::fs::read_to_string(&state_file).expect("the state file");
    assert!(state.contains(&started), "the state file keeps the start healed ({started}): {state}");

    // Docker restarts (the node with it) while no watcher runs; the next one starts after it
    // (a login agent), with no periodic check: its first connect heals, and it knows why.
    c.sim().docker_desktop_restart(0.2, 0.0);
    c.until("Docker back with the node", || {
        c.sim().docker_socket().exists() && inspect_started(&c) != started
    });
    let w = spawn_watch(&c, "0");
    w.until_event("the start read against the state file", |e| {
        matches!(e, Event::NodeStarted { seen: Seen::State, .. })
    });
    w.until_event("the heal", heal_finished(HealOutcome::Ok));
    c.assert_recovered();
    let second = terminate(w);
    second.expect(0);
    assert!(second.stderr.contains("while the watcher was not running"), "{}", second.stderr);
    assert!(std::fs::read_to_string(&state_file).unwrap().contains(&inspect_started(&c)));

    // Nothing happened since: its first look is a check.
    let mark = c.sim().audit().len();
    let w = spawn_watch(&c, "0");
    w.until_event("the first look", heal_finished(HealOutcome::Ok));
    let third = terminate(w);
    third.expect(0);
    assert!(third.stderr.contains("has not started again since the heal"), "{}", third.stderr);
    let patches = c.sim().audit().split_off(mark).iter().filter(|e| e.verb == "PATCH").count();
    assert_eq!(patches, 0, "the first look restarted something");
    assert_clean(&c, &[&first, &second, &third]);
}

/// The Kubernetes API takes longer than `api_timeout` after the node restarts: the watcher waits
/// for it with its own budget (said once) before it heals; no failed heal, no doctor.
#[test]
fn a_slow_api_after_the_restart_is_waited_for() {
    let c = World::start(fast()).short_deadlines();
    c.edit("stack.yaml", |s| s.replace("api_timeout: 15s", "api_timeout: 1s"));
    c.mark();
    let w = watch(&c, "0");
    c.sim().docker_desktop_restart(0.3, 3.0);
    w.until_event("the heal", heal_finished(HealOutcome::Ok));
    c.assert_recovered();
    let run = terminate(w);
    run.expect(0);
    assert!(!run.events().iter().any(heal_finished(HealOutcome::Failed)), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("Waiting ≤ 5m for the Kubernetes API").count(),
        2,
        "said once (start, end): {}",
        run.stderr
    );
    assert!(!run.stderr.contains("what `bookstore doctor` finds"), "{}", run.stderr);
    assert_clean(&c, &[&run]);
}

/// Docker Desktop's VM clock runs a minute behind the host's (after sleep): the node restarting
/// in the middle of a heal is still told by Docker's own timestamps, and the heal starts over.
#[test]
fn a_node_restart_mid_heal_is_told_by_dockers_clock() {
    let opts = SimOptions { docker_clock_offset_ms: -60_000, ..fast() };
    let c = World::start(opts).short_deadlines();
    c.mark();
    let w = watch(&c, "0");
    c.sim().docker_desktop_restart(0.3, 0.0);
    w.until_step("Restarting 16 workloads");
    c.docker(&["restart", "bookstore-control-plane"]).ok();
    w.until_event("the heal stopped", heal_finished(HealOutcome::Cancelled));
    w.until_event("the heal that starts over", heal_finished(HealOutcome::Ok));
    // Every route answers and both connectors are stored. Not asserted here: every pod back in
    // the mesh. The simulator offsets Docker's timestamps but not the API's, where on a real
    // machine both are the VM's clock; the judge's pod-against-node-start comparison then takes
    // the pods the first heal restarted for newer than the node's second start and keeps them
    // (seen: redis, pgadmin, prometheus left unregistered, about one run in six). Until the
    // simulator puts the API on Docker's clock too, this world checks the watcher's clock only.
    c.sim().wait_healthy(BOUND).expect("every route answers");
    assert_eq!(c.sim().connectors(), c.expected_connectors(), "connector configs");
    let run = terminate(w);
    run.expect(0);
    assert_clean(&c, &[&run]);
}

/// The real-machines tests' world: faster than the others (a recovery's critical path in ~1.5 s).
fn fast() -> SimOptions {
    SimOptions { time_scale: 0.03, ..World::options() }
}

fn inspect_started(c: &World) -> String {
    c.docker(&["inspect", "--format", "{{.State.StartedAt}}", "bookstore-control-plane"])
        .stdout
        .trim()
        .to_string()
}

/// The Docker endpoint is resolved once and named on every docker call: without `DOCKER_HOST`,
/// the docker config's current context (`sim`, this world's daemon) is pinned when the watcher
/// starts, so a `docker context use` in another shell during the watcher's life does not move it
/// to another daemon: the next Docker Desktop restart is still seen and healed on `sim`.
#[test]
fn a_docker_context_use_during_the_watchers_life_does_not_move_it() {
    let c = World::start(fast()).short_deadlines();
    let config = c.dir().join("docker-config");
    let socket = format!("host=unix://{}", c.docker_socket().display());
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .env("DOCKER_CONFIG", &config)
            .env_remove("DOCKER_HOST")
            .output()
            .expect("docker runs");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    docker(&["context", "create", "sim", "--docker", &socket]);
    docker(&["context", "create", "elsewhere", "--docker", "host=unix:///nonexistent/docker.sock"]);
    docker(&["context", "use", "sim"]);
    c.mark();
    let w = Test::new()
        .world(&c)
        .args(["watch", "--interval", "0"])
        .env("DOCKER_CONFIG", &config)
        .env_remove("DOCKER_HOST")
        .json()
        .any_code()
        .spawn();
    w.until_event("watching on the pinned context", |e: &Event| {
        matches!(e, Event::Watching { command, .. } if command.starts_with("docker --context sim events "))
    });
    w.until_event("the first look", heal_finished(HealOutcome::Ok));
    docker(&["context", "use", "elsewhere"]);
    c.sim().docker_desktop_restart(0.5, 0.2);
    w.until_event("node_started", |e: &Event| matches!(e, Event::NodeStarted { .. }));
    w.until_event("the heal", |e: &Event| {
        matches!(e, Event::HealFinished { heal: 2, outcome: HealOutcome::Ok, .. })
    });
    c.assert_recovered();
    let run = terminate(w);
    run.expect(0);
    let docker_calls: Vec<String> =
        c.argv().into_iter().filter(|a| a[0] == "docker").map(|a| a[1..].join(" ")).collect();
    let resolving = |a: &String| a == "-v" || a.starts_with("context inspect ");
    let unpinned: Vec<&String> =
        docker_calls.iter().filter(|a| !resolving(a) && !a.starts_with("--context sim ")).collect();
    assert!(unpinned.is_empty(), "docker calls not on the pinned context: {unpinned:#?}");
    let resolved = docker_calls.iter().filter(|a| a.starts_with("context inspect ")).count();
    assert_eq!(resolved, 1, "the endpoint is resolved once: {docker_calls:#?}");
    assert_clean(&c, &[&run]);
}
