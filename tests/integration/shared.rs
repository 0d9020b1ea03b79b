//! A shared development cluster, by explicit opt-in (issue 19 part 2): a kube context other than
//! `kind-<cluster>` that the stack file does not list under `allow_contexts:` is refused before
//! anything runs.

use std::path::{Path, PathBuf};

use bookstore_sim::kit::{SHARED_CONTEXT, Test, World};

/// `docker`, `kind`, `istioctl` and `kubectl` that record their argv and fail, first on PATH.
fn recorders(dir: &Path, tools: &[&str]) -> PathBuf {
    let bin = dir.join("recorders");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in tools {
        let path = bin.join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit 1\n", dir.join("argv.log").display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[test]
fn a_context_the_stack_file_does_not_allow_is_refused_and_nothing_runs() {
    let world = World::healthy();
    let tmp = tempfile::tempdir().unwrap();
    let bin = recorders(tmp.path(), &["docker", "kind", "istioctl", "kubectl"]);
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
            .path_first(&bin)
            .code(3)
            .stderr_has("kube context `gke_team_dev`")
            .stderr_has("allow_contexts: [gke_team_dev]");
        if let Some(context) = env {
            test = test.env("BOOKSTORE_CONTEXT", context);
        }
        test.run();
    }
    let ran = std::fs::read_to_string(tmp.path().join("argv.log")).unwrap_or_default();
    assert_eq!(ran, "", "no process runs before the context is allowed");
    assert_eq!(world.touched(), Vec::<String>::new(), "the simulator was not even read");
}

/// A node of the team's cluster rebooted (a new bootID, the kubelet's `Starting` and `Rebooted`
/// events, its Ready transition, every pod restarted in place): `up --context` heals the stack
/// from what the API shows, through kubectl alone: a `docker`, `kind` and `istioctl` that fail are
/// first on PATH and never run.
#[test]
fn an_allowed_shared_cluster_with_a_rebooted_node_is_healed_with_no_docker_or_kind_call() {
    let world = World::shared();
    let tmp = tempfile::tempdir().unwrap();
    let bin = recorders(tmp.path(), &["docker", "kind", "istioctl"]);
    // Healthy, with no restart evidence in the API: only read.
    world.mark();
    Test::new().world(&world).args(["up", "--context", SHARED_CONTEXT]).path_first(&bin).run();
    world.assert_nothing_restarted();
    world.node_reboot();
    world.wait_healthy(bookstore_sim::kit::BOUND).expect("the pods came back in place");
    world.mark();
    let run = Test::new()
        .world(&world)
        .args(["up", "--context", SHARED_CONTEXT])
        .path_first(&bin)
        .json()
        .stderr_has("Rebooted")
        .run();
    let ran = std::fs::read_to_string(tmp.path().join("argv.log")).unwrap_or_default();
    assert_eq!(ran, "", "docker, kind and istioctl never run on a shared cluster");
    // ztunnel first, then every meshed workload, databases before their apps.
    let restarts = world.restarts();
    assert_eq!(restarts.get("ztunnel"), Some(&1), "{restarts:?}\n{}", run.stderr);
    bookstore_sim::kit::assert_recovery_order(&world.audit());
    world.assert_recovered();
    world.assert_every_route_answers();
    world.check();
}

/// `up` on a shared cluster where the stack is not (all) there refuses to bootstrap it: exit 3,
/// naming what is missing, and nothing written.
#[test]
fn up_on_a_shared_cluster_without_the_stack_is_refused_and_changes_nothing() {
    let world = World::shared();
    world.kubectl(&["-n", "analytics", "delete", "deployment", "superset"]).expect(0);
    world.until("superset's pods to be gone", || world.pods().iter().all(|p| p.workload != "superset"));
    let tmp = tempfile::tempdir().unwrap();
    let bin = recorders(tmp.path(), &["docker", "kind", "istioctl"]);
    world.mark();
    for args in [&["up", "--context", SHARED_CONTEXT][..], &["up", "--dry-run", "--context", SHARED_CONTEXT]]
    {
        Test::new()
            .world(&world)
            .args(args)
            .path_first(&bin)
            .code(3)
            .stderr_has("never bootstraps a shared cluster")
            .stderr_has("superset")
            .run();
    }
    assert_eq!(std::fs::read_to_string(tmp.path().join("argv.log")).unwrap_or_default(), "");
    assert_eq!(world.writes(), Vec::<String>::new(), "nothing written");
    world.check();
}
