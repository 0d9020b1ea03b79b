//! What `up` restarts (issue 10), end to end on the simulator through the real clients: a healthy
//! stack costs a check, never a restart, and the dry run shows every command the run spawns.
//! (The fault matrix has the rows where `up` acts on a part of the stack: one stale workload, a
//! pod istio-cni left outside the mesh, an interrupted recovery, a remedy that does not heal.)

use std::collections::BTreeSet;

use bookstore_sim::Source;
use bookstore_sim::kit::{Test, World};

#[test]
fn up_on_a_healthy_stack_is_a_check_and_no_change() {
    let c = World::healthy().short_deadlines();
    c.mark();
    let run = Test::new().world(&c).args(["up"]).json().code(0).run();
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
    let events = run.events();
    let passed = events.iter().filter(|e| e["event"] == "check_passed").count();
    assert_eq!(passed, 9, "{}", run.stdout);
    let kept: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["event"] == "decision" && e["action"] == "keep")
        .filter_map(|e| e["workload"].as_str())
        .collect();
    assert_eq!(kept.len(), 17, "ztunnel and the 16 workloads are kept: {kept:?}");
    c.check();
}

/// A recorded argv as the dry run prints a command: each word quoted by the product's own rule.
fn line_of(argv: &[String]) -> String {
    argv.iter().map(|w| bookstore::exec::quote(w)).collect::<Vec<_>>().join(" ")
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
    let c = World::broken().short_deadlines();
    c.mark();
    let dry = Test::new().world(&c).args([command, "--dry-run"]).json().code(0).run();
    let plan: Vec<String> = dry
        .events()
        .iter()
        .filter(|e| e["event"] == "plan")
        .filter_map(|e| e["line"].as_str().map(String::from))
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
    Test::new().world(&c).args([command]).json().code(0).run();
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
