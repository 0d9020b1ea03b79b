//! A shared development cluster, by explicit opt-in (issue 19 part 2): a kube context other than
//! `kind-<cluster>` that the stack file does not list under `allow_contexts:` is refused before
//! anything runs; an allowed one (the simulator's world with no Docker and no kind) is healed,
//! watched, diagnosed and shown from its API alone.

use std::path::PathBuf;

use bookstore::event::{Event, HealOutcome};
use bookstore_sim::kit::{BOUND, SHARED_CONTEXT, Test, World, assert_recovery_order};

/// What never runs on a shared cluster: every node engine kind knows, kind, istioctl.
const ENGINES_KIND_ISTIOCTL: &[&str] = &["docker", "podman", "nerdctl", "finch", "kind", "istioctl"];

/// Programs that record their argv and fail, for a test to put first on PATH.
struct Never {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Never {
    fn new(tools: &[&str]) -> Never {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("recorders");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in tools {
            let path = bin.join(tool);
            let log = dir.path().join("argv.log");
            std::fs::write(&path, format!("#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit 1\n", log.display()))
                .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Never { dir, bin }
    }

    /// None of them was run (each run appends its argv to the log).
    #[track_caller]
    fn assert_none_ran(&self) {
        let ran = std::fs::read_to_string(self.dir.path().join("argv.log")).unwrap_or_default();
        assert_eq!(ran, "", "never run here");
    }
}

/// `watch --context` in a shared world, `--json`, no periodic check; returns at once.
fn watch<'w>(world: &'w World, never: &Never) -> bookstore_sim::kit::Running<'w> {
    let args = ["watch", "--context", SHARED_CONTEXT, "--interval", "0"];
    Test::new().world(world).args(args).path_first(&never.bin).json().any_code().spawn()
}

/// A shared world whose node rebooted, every pod back in place.
fn rebooted() -> World {
    let world = World::shared();
    world.node_reboot();
    world.wait_healthy(BOUND).expect("the pods came back in place");
    world
}

/// Healed since the mark: ztunnel restarted once, then every meshed workload in the guide's order,
/// every pod Ready and in the mesh, the connectors stored.
#[track_caller]
fn assert_healed(world: &World, stderr: &str) {
    assert_eq!(world.restarts().get("ztunnel"), Some(&1), "{stderr}");
    assert_recovery_order(&world.audit());
    world.assert_recovered();
}

#[test]
fn a_context_the_stack_file_does_not_allow_is_refused_and_nothing_runs() {
    let world = World::healthy();
    let never = Never::new(&["docker", "podman", "kind", "istioctl", "kubectl"]);
    world.mark();
    let cases: [(&[&str], Option<&str>); 5] = [
        (&["up", "--context", "gke_team_dev"], None),
        (&["up", "--dry-run", "--context", "gke_team_dev"], None),
        (&["recover", "--context", "gke_team_dev"], None),
        (&["doctor", "--context", "gke_team_dev"], None),
        (&["up"], Some("gke_team_dev")),
    ];
    for (args, env) in cases {
        let mut test = Test::new()
            .world(&world)
            .args(args)
            .path_first(&never.bin)
            .code(3)
            .stderr_has("kube context `gke_team_dev`")
            .stderr_has("allow_contexts: [gke_team_dev]");
        if let Some(context) = env {
            test = test.env("BOOKSTORE_CONTEXT", context);
        }
        test.run();
    }
    never.assert_none_ran();
    assert_eq!(world.touched(), Vec::<String>::new(), "the simulator was not even read");
}

/// A node of the team's cluster rebooted (a new bootID, the kubelet's `Starting` and `Rebooted`
/// events, its Ready transition, every pod restarted in place): `up --context` heals the stack
/// from what the API shows, through kubectl alone: a `docker`, `kind` and `istioctl` that fail are
/// first on PATH and never run.
#[test]
fn an_allowed_shared_cluster_with_a_rebooted_node_is_healed_with_no_docker_or_kind_call() {
    let world = World::shared();
    let never = Never::new(ENGINES_KIND_ISTIOCTL);
    // Healthy, with no restart evidence in the API: only read.
    world.mark();
    Test::new().world(&world).args(["up", "--context", SHARED_CONTEXT]).path_first(&never.bin).run();
    world.assert_nothing_restarted();
    world.node_reboot();
    world.wait_healthy(BOUND).expect("the pods came back in place");
    // The dry run reads (port-forwards included) and says what it would do, with the evidence;
    // a port-forward's local port is named, not invented.
    world.mark();
    Test::new()
        .world(&world)
        .args(["up", "--dry-run", "--context", SHARED_CONTEXT])
        .path_first(&never.bin)
        .stdout_has("kubectl --context dev-east get nodes -o json")
        .stdout_has("http://127.0.0.1:<local port of the port-forward>/connectors/ecom-connector/config")
        .stdout_has("the kubelet's Rebooted event")
        .run();
    assert_eq!(world.writes(), Vec::<String>::new(), "the dry run changed nothing");
    world.mark();
    let run = Test::new()
        .world(&world)
        .args(["up", "--context", SHARED_CONTEXT])
        .path_first(&never.bin)
        .json()
        .stderr_has("Rebooted")
        .run();
    never.assert_none_ran();
    assert_healed(&world, &run.stderr);
    world.assert_every_route_answers();
    world.check();
}

/// An hour after a reboot the kubelet's events have expired (`--event-ttl`): the node's Ready
/// transition, with its pods restarted in place after it, still dates the reboot, and `up` heals
/// it the same way.
#[test]
fn a_reboot_whose_events_expired_is_read_from_the_ready_transition_and_pods_restarted_in_place() {
    let world = rebooted();
    world.expire_node_events();
    let never = Never::new(ENGINES_KIND_ISTIOCTL);
    world.mark();
    let run = Test::new()
        .world(&world)
        .args(["up", "--context", SHARED_CONTEXT])
        .path_first(&never.bin)
        .stderr_has("its Ready transition, with pod")
        .stderr_lacks("Rebooted event")
        .run();
    assert_healed(&world, &run.stderr);
    never.assert_none_ran();
    world.check();
}

/// `up` on a shared cluster where the stack is not (all) there refuses to bootstrap it: exit 3,
/// naming what is missing, and nothing written.
#[test]
fn up_on_a_shared_cluster_without_the_stack_is_refused_and_changes_nothing() {
    let world = World::shared();
    world.kubectl(&["-n", "analytics", "delete", "deployment", "superset"]).expect(0);
    world.until("superset's pods to be gone", || world.pods().iter().all(|p| p.workload != "superset"));
    let never = Never::new(ENGINES_KIND_ISTIOCTL);
    world.mark();
    for args in [&["up", "--context", SHARED_CONTEXT][..], &["up", "--dry-run", "--context", SHARED_CONTEXT]]
    {
        Test::new()
            .world(&world)
            .args(args)
            .path_first(&never.bin)
            .code(3)
            .stderr_has("never bootstraps a shared cluster")
            .stderr_has("superset")
            .run();
    }
    never.assert_none_ran();
    assert_eq!(world.writes(), Vec::<String>::new(), "nothing written");
    world.check();
}

/// `watch --context` follows the shared cluster's Nodes through the API (no engine, no kind): its
/// first look is a check, a node's reboot (a new bootID) is healed like `up` heals it, and it
/// ends on SIGTERM, with a failing `docker`, `kind` and `istioctl` first on PATH never run.
#[test]
fn watch_on_a_shared_cluster_heals_a_node_reboot_from_the_nodes_watch() {
    let world = World::shared();
    let never = Never::new(ENGINES_KIND_ISTIOCTL);
    world.mark();
    let w = watch(&world, &never);
    w.until_event("the nodes' watch", |e| matches!(e, Event::WatchingNodes { .. }));
    w.until_event("the first look", |e| matches!(e, Event::HealFinished { heal: 1, .. }));
    world.assert_nothing_restarted();
    world.node_reboot();
    w.until_event("the reboot's heal", |e| matches!(e, Event::HealFinished { heal: 2, .. }));
    w.terminate();
    let run = w.ends_within(std::time::Duration::from_secs(10), "SIGTERM");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events = run.events();
    let failed = events
        .iter()
        .filter(|e| matches!(e, Event::HealFinished { outcome, .. } if *outcome != HealOutcome::Ok));
    assert_eq!(failed.count(), 0, "{}", run.stderr);
    let owed: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::HealOwed { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(owed[1].contains("node dev-node-1 rebooted: its bootID changed"), "{owed:?}");
    assert_healed(&world, &run.stderr);
    world.assert_every_route_answers();
    // Rebooted again while no watcher runs: the next one's first look compares the bootID it
    // healed (its state file) and says so.
    world.mark();
    world.node_reboot();
    world.wait_healthy(BOUND).expect("the pods came back in place");
    let again = watch(&world, &never);
    again.until_event("the first look", |e| matches!(e, Event::HealFinished { heal: 1, .. }));
    again.terminate();
    let second = again.ends_within(std::time::Duration::from_secs(10), "SIGTERM");
    let first_look = second.events().into_iter().find_map(|e| match e {
        Event::HealOwed { reason } => Some(reason),
        _ => None,
    });
    assert!(
        first_look.as_deref().is_some_and(|r| r.contains("rebooted while the watcher was not running")),
        "{first_look:?}\n{}",
        second.stderr
    );
    assert_eq!(world.restarts().get("ztunnel"), Some(&1), "{}", second.stderr);
    world.assert_recovered();
    never.assert_none_ran();
    assert_eq!(world.live_clients(), Vec::<String>::new(), "children outlived the watcher");
    world.check();
}

/// `doctor` and `status` on a shared cluster read the API alone: after a node reboot doctor names
/// each node with the kubelet's evidence and the stale mesh, and checks no engine, kind, host
/// port or host name; status shows each node's last start and every route (through
/// port-forwards); neither changes anything nor runs an engine, kind or istioctl.
#[test]
fn doctor_and_status_on_a_shared_cluster_read_the_api_alone() {
    let world = rebooted();
    let never = Never::new(ENGINES_KIND_ISTIOCTL);
    world.mark();
    let doctor = Test::new()
        .world(&world)
        .args(["doctor", "--context", SHARED_CONTEXT])
        .path_first(&never.bin)
        .json()
        .code(6)
        .stderr_has("shared cluster dev-east")
        .stderr_has("dev-node-1 is Ready; node dev-node-1 last started")
        .stderr_lacks("node engine:")
        .stderr_lacks("host-name")
        .run();
    let findings = doctor.findings();
    assert!(findings.has("ztunnel-stale"), "{:?}\n{}", findings.ids(), doctor.stderr);
    assert!(findings.evidence("ztunnel-stale").contains("Rebooted event"), "{}", doctor.stderr);
    let status = Test::new()
        .world(&world)
        .args(["status", "--context", SHARED_CONTEXT])
        .path_first(&never.bin)
        .stdout_has("NODE (dev-east)")
        .run();
    let node = status.stdout.lines().find(|l| l.starts_with("dev-node-1")).unwrap_or_default().to_string();
    assert!(node.contains("True") && node.contains("Rebooted event"), "{}", status.stdout);
    assert!(!status.stdout.contains("ENGINE"), "{}", status.stdout);
    let ui = status.stdout.lines().find(|l| l.starts_with("ui ")).unwrap_or_default().to_string();
    assert!(ui.contains("503 upstream reset"), "a stale backend through the gateway's port-forward: {ui}");
    never.assert_none_ran();
    world.assert_read_only();
    world.check();
}
