//! `bookstore watch` end to end on the simulator, through the real `docker` (its `events`
//! stream included) and `kubectl` clients: Docker Desktop restarts healed with no other command,
//! a restart in the middle of a heal, a failing heal retried, the lock shared with manual runs,
//! SIGTERM and Ctrl-C. Every run is checked for the sentinel password (argv, output) and for
//! children left behind.

use std::time::Duration;

use bookstore::event::{Event, HealOutcome};
use bookstore_sim::kit::{Run, Running, Test, World, assert_recovery_order, leaks_in};
use bookstore_sim::{AuditEntry, Fault, Source};

/// How long a watcher may take to end after SIGTERM / Ctrl-C (a bound, not a goal: it takes
/// well under a second here).
const STOP_BOUND: Duration = Duration::from_secs(10);

fn heal_finished(want: HealOutcome) -> impl Fn(&Event) -> bool {
    move |e: &Event| matches!(e, Event::HealFinished { outcome, .. } if *outcome == want)
}

/// Start the watcher and wait until it follows Docker's events.
fn watch<'w>(c: &'w World, interval: &str) -> Running<'w> {
    let w = Test::new().world(c).args(["watch", "--interval", interval]).json().any_code().spawn();
    w.until_event("watching", |e| matches!(e, Event::Watching { .. }));
    w
}

/// Stop it the way a service manager does; it ends by itself within the bound.
fn terminate(w: Running) -> Run {
    w.terminate();
    w.ends_within(STOP_BOUND, "SIGTERM")
}

/// Nothing left behind, no secret anywhere, nothing deleted.
fn assert_clean(c: &World, runs: &[&Run]) {
    assert_eq!(c.live_clients(), Vec::<String>::new(), "children outlived the watcher");
    for a in c.argv() {
        let line = a.join(" ");
        assert!(leaks_in(line.as_bytes()).is_empty(), "the password in argv: {line}");
    }
    for run in runs {
        assert!(leaks_in(run.stdout.as_bytes()).is_empty(), "the password on stdout");
        assert!(leaks_in(run.stderr.as_bytes()).is_empty(), "the password on stderr");
    }
    let deletes: Vec<String> = c
        .audit()
        .iter()
        .filter(|e| e.verb == "DELETE")
        .map(|e| format!("{:?} {}", e.source, e.path))
        .collect();
    assert_eq!(deletes, Vec::<String>::new(), "something was deleted");
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
        w.until_event("docker_down", |e| matches!(e, Event::DockerDown { .. }));
        w.until_event("docker_up", |e| matches!(e, Event::DockerUp { .. }));
        w.until_event("node_started", |e| matches!(e, Event::NodeStarted { .. }));
        w.until_event(
            &format!("heal {restart} finished ok"),
            |e| matches!(e, Event::HealFinished { heal, outcome: HealOutcome::Ok, .. } if *heal == restart),
        );
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
        2,
        "one heal per restart"
    );
    assert_clean(&c, &[&run]);
}

#[test]
fn a_restart_in_the_middle_of_a_heal_ends_healed() {
    let c = World::healthy().short_deadlines();
    c.mark();
    let w = watch(&c, "0");
    c.sim().docker_desktop_restart(0.5, 0.0);
    w.until_event("heal_started", |e| matches!(e, Event::HealStarted { .. }));
    w.until_step("Restarting 16 workloads");
    // Docker Desktop restarts again while the heal restarts the workloads.
    c.sim().docker_desktop_restart(1.0, 0.0);
    w.until_event("the heal stopped", heal_finished(HealOutcome::Cancelled));
    w.until_event("docker_up", |e| matches!(e, Event::DockerUp { .. }));
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
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::HealStarted { .. })).count(), 2, "no hot loop");
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
    let w = watch(&c, "1s");
    // Its first check finds the routes failing and the lock taken: it waits, then heals once
    // `up` has finished.
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
    assert!(!run.events().iter().any(|e| matches!(e, Event::HealStarted { .. })), "{}", run.stderr);
    assert_clean(&c, &[&run]);
}

#[test]
fn a_heal_on_a_healthy_stack_restarts_nothing() {
    // The check sees Connect reset once (a blip): it heals, and healing a healthy stack must
    // change nothing.
    let c = World::healthy().short_deadlines();
    c.mark();
    c.sim().fault(Fault::ConnectReset { count: 1 });
    let w = watch(&c, "1s");
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

#[test]
fn docker_down_is_said_once_and_ctrl_c_ends_the_watcher() {
    let c = World::healthy().short_deadlines();
    c.sim().docker_stop();
    c.mark();
    let w = Test::new().world(&c).args(["watch"]).json().any_code().spawn();
    w.until_event("docker_down", |e| matches!(e, Event::DockerDown { .. }));
    // It keeps trying (capped backoff) without saying it again.
    c.until("a few reconnect attempts", || {
        c.argv().iter().filter(|a| a.get(1).is_some_and(|x| x == "info")).count() >= 4
    });
    w.interrupt();
    let run = w.ends_within(STOP_BOUND, "Ctrl-C");
    run.expect(130);
    assert_eq!(run.stderr.matches("Docker is not running").count(), 1, "{}", run.stderr);
    assert_eq!(run.events().iter().filter(|e| matches!(e, Event::DockerDown { .. })).count(), 1);
    assert_clean(&c, &[&run]);
}
