//! What `up` restarts (issue 10), end to end on the simulator through the real clients: a healthy
//! stack costs a check, never a restart, and the dry run shows every command the run spawns.
//! (The fault matrix has the rows where `up` acts on a part of the stack: one stale workload, a
//! pod istio-cni left outside the mesh, an interrupted recovery, a remedy that does not heal.)

use std::collections::BTreeSet;

use bookstore::event::{self, Decided, DecisionAction, Event};
use bookstore_sim::Source;

use crate::faults::case::Case;

#[test]
fn up_on_a_healthy_stack_is_a_check_and_no_change() {
    let mut c = Case::healthy("up on a healthy stack");
    c.mark();
    let run = c.run(&["up"]);
    run.expect(0);
    assert!(run.stderr.contains("✓ Stack healthy: nothing to restart"), "{}", run.stderr);
    c.assert_nothing_restarted();
    let writes: Vec<String> = c
        .audit()
        .iter()
        .filter(|e| matches!(e.source, Source::Kube | Source::Connect) && e.verb != "GET")
        .map(|e| format!("{:?} {} {}", e.source, e.verb, e.path))
        .collect();
    assert!(writes.is_empty(), "a healthy stack was changed: {writes:?}");
    // Every route was still checked, and every workload's decision is reported.
    let events = event::parse(&run.stdout);
    let passed = events.iter().filter(|e| matches!(e.event, Event::CheckPassed { .. })).count();
    assert_eq!(passed, 9, "{}", run.stdout);
    let kept: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Decision {
                subject: Decided::Workload { workload, .. },
                action: DecisionAction::Keep,
                ..
            } => Some(workload.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(kept.len(), 17, "ztunnel and the 16 workloads are kept: {kept:?}");
    c.check();
}

/// A recorded argv as the dry run prints a command: each word quoted as exec.rs quotes it.
fn line_of(argv: &[String]) -> String {
    let quote = |w: &str| {
        let plain = !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
        if plain { w.to_string() } else { format!("'{}'", w.replace('\'', r"'\''")) }
    };
    argv.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

#[test]
fn the_dry_run_of_up_shows_every_command_the_run_spawns_and_the_same_decisions() {
    agree("up");
}

#[test]
fn the_dry_run_of_recover_shows_every_command_the_run_spawns() {
    agree("recover");
}

fn agree(command: &'static str) {
    let mut c = Case::broken(command);
    c.mark();
    let dry = c.run(&[command, "--dry-run"]);
    dry.expect(0);
    let plan: Vec<String> = event::parse(&dry.stdout)
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Plan { line } => Some(line),
            _ => None,
        })
        .collect();
    assert!(c.patches().is_empty(), "the dry run changed something");
    // The commands, without their comments (heredocs print on the lines after theirs).
    let commands: Vec<&str> = plan.iter().map(|l| l.split("   # ").next().unwrap_or("")).collect();
    // `up` names each decision; `recover` restarts every workload and ztunnel.
    let restarts_planned: BTreeSet<String> = match command {
        "up" => plan
            .iter()
            .filter_map(|l| l.strip_prefix("#   restart "))
            .filter_map(|l| l.split(':').next().map(String::from))
            .collect(),
        _ => plan
            .iter()
            .filter_map(|l| l.strip_prefix("#   "))
            .filter_map(|l| l.split(" (").next().map(String::from))
            .chain(["ztunnel".to_string()])
            .collect(),
    };

    c.mark();
    let run = c.run(&[command]);
    run.expect(0);
    let argv = c.argv();
    assert!(!argv.is_empty());
    let unshown: Vec<String> = argv
        .iter()
        .map(|a| line_of(a))
        .filter(|line| !commands.iter().any(|c| c == line || c.starts_with(&format!("{line} <<'EOF'"))))
        .collect();
    assert!(
        unshown.is_empty(),
        "spawned, not in the dry run: {unshown:#?}\n--- dry run\n{}",
        plan.join("\n")
    );
    // The same decisions: the run restarted exactly what the dry run said it would.
    let restarted: BTreeSet<String> = c
        .patches()
        .iter()
        .filter_map(|p| p.rsplit_once("/deployments/").or_else(|| p.rsplit_once("/daemonsets/")))
        .map(|(_, name)| name.to_string())
        .collect();
    assert_eq!(restarted, restarts_planned);
    c.check();
}
