//! The watcher under chaos (issue 20), on the simulator through the real clients: a seeded run of
//! Docker Desktop restarts at random moments (between heals, during ztunnel's rollout, between a
//! database becoming Ready and its app, at a random point of a heal), Docker away for random
//! spans, the kube API refusing a while longer, Kafka Connect answering 500 for a while during a
//! heal, on a world drawn from the same seed (the docker CLI release, a node Docker leaves
//! exited). After the last restart the stack is healthy, nothing was deleted, no secret was
//! printed, and the watcher exits 0 on SIGTERM with no child left.
//!
//! Each run draws a new seed and prints it; `CHAOS_SEED=<n> cargo test --test integration chaos`
//! replays one (the draws, not the machine's timing).

use std::time::Duration;

use bookstore::event::{Event, HealOutcome, Subject};
use bookstore_sim::docker_cli::DockerCli;
use bookstore_sim::draw::Draw;
use bookstore_sim::kit::{Running, World};
use bookstore_sim::{Fault, SimOptions};

use crate::watch::{assert_clean, heal_finished, spawn_watch, terminate};

/// Docker Desktop restarts per run.
const RESTARTS: usize = 3;
/// The simulator's time scale (a recovery's 51.5 s critical path in ~1.5 s).
const SCALE: f64 = 0.03;

/// When a restart comes.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Once the heal in progress is over.
    BetweenHeals,
    /// While ztunnel rolls out.
    DuringZtunnel,
    /// A database is Ready, the apps that need it not yet.
    BetweenDatabaseAndApp,
    /// This long into the next heal.
    IntoHeal(f64),
}

fn seed() -> u64 {
    match std::env::var("CHAOS_SEED") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("CHAOS_SEED={s} is not a number")),
        Err(_) => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
            t.as_nanos() as u64 ^ u64::from(std::process::id())
        }
    }
}

#[test]
fn the_watcher_heals_whatever_the_restarts_it_is_dealt() {
    let seed = seed();
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} replays it)");
    let outcome = std::panic::catch_unwind(|| chaos(seed));
    if let Err(panic) = outcome {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("chaos seed {seed} failed (CHAOS_SEED={seed} replays it): {why}");
    }
}

fn chaos(seed: u64) {
    let mut draw = Draw(seed);
    let cli = [DockerCli::Installed, DockerCli::V27_5_1, DockerCli::V29][draw.below(3) as usize];
    let left_exited = draw.below(3) == 0;
    // Faster than the other watcher tests: three restarts and their heals fit in seconds.
    let opts =
        SimOptions { docker_cli: cli, node_left_exited: left_exited, time_scale: SCALE, ..World::options() };
    let c = World::start(opts).short_deadlines();
    // Connect answers 500 for a while during one of the heals.
    let connect_500 = draw.below(RESTARTS as u64) as usize;
    c.mark();
    let w = spawn_watch(&c, "0");
    w.until_event("the first look", heal_finished(HealOutcome::Ok));
    let mut plan = Vec::new();
    for i in 0..RESTARTS {
        let moment = match draw.below(4) {
            0 => Moment::BetweenHeals,
            1 => Moment::DuringZtunnel,
            2 => Moment::BetweenDatabaseAndApp,
            _ => Moment::IntoHeal(draw.secs(0.0, 1.5)),
        };
        let (down, api) = (draw.secs(0.1, 1.5), if draw.below(2) == 0 { 0.0 } else { draw.secs(0.1, 1.0) });
        // The first restart comes on a stack at rest; each next one at its moment of the heal
        // the previous one started.
        if i == 0 {
            plan.push(format!("at rest, down {down:.2}s, api {api:.2}s"));
        } else {
            plan.push(format!("{moment:?}, down {down:.2}s, api {api:.2}s"));
            w.until_event("the heal after the restart", |e: &Event| matches!(e, Event::HealStarted { .. }));
            wait_for(&w, moment);
        }
        if i == connect_500 {
            c.sim().fault(Fault::Connect500Timeout { count: 2 + draw.below(6) as u32 });
        }
        c.sim().docker_desktop_restart(down, api);
    }
    eprintln!("chaos seed {seed}: {cli:?}, node left exited: {left_exited}; restarts: {}", plan.join("; "));
    // After the last restart: healed, with no other command.
    c.until("the stack healed after the last restart", || recovered(&c));
    c.assert_recovered();
    let run = terminate(w);
    run.expect(0);
    assert!(run.stderr.contains("stopped watching (SIGTERM)"), "{}", run.stderr);
    let ev = run.events();
    let outcomes: Vec<String> = ev
        .iter()
        .filter_map(|e| match e {
            Event::HealFinished { outcome, duration_ms, .. } => {
                Some(format!("{outcome:?} {:.1}s", *duration_ms as f64 / 1e3))
            }
            _ => None,
        })
        .collect();
    eprintln!("chaos seed {seed}: heals {outcomes:?}");
    assert_clean(&c, &[&run]);
}

/// Wait for a moment of the heal that has started. A heal that ends first makes any moment of
/// it past: the restart then comes between heals.
fn wait_for(w: &Running, moment: Moment) {
    let ended = |e: &Event| matches!(e, Event::HealFinished { .. });
    match moment {
        Moment::BetweenHeals => w.until_event("a heal to end", heal_finished(HealOutcome::Ok)),
        Moment::DuringZtunnel => w.until_event("ztunnel's rollout (or the heal's end)", |e| {
            matches!(e, Event::TaskStarted { subject: Subject::Workload { workload, .. }, .. } if workload == "ztunnel")
                || ended(e)
        }),
        Moment::BetweenDatabaseAndApp => w.until_event("a database Ready (or the heal's end)", |e| {
            matches!(e, Event::WorkloadReady { workload, .. } if workload.ends_with("-db")) || ended(e)
        }),
        Moment::IntoHeal(secs) => std::thread::sleep(Duration::from_secs_f64(secs)),
    }
}

/// Every pod Ready and registered with the mesh, both connectors as the files say (polled:
/// [`World::assert_recovered`] then says what is wrong, if anything).
fn recovered(c: &World) -> bool {
    c.sim().wait_healthy(Duration::from_millis(1)).is_ok()
        && c.sim().pods().iter().all(|p| p.ready && (!p.ambient || p.registered))
        && c.sim().connectors() == c.expected_connectors()
}
