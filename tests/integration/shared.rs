//! A shared development cluster, by explicit opt-in (issue 19 part 2): a kube context other than
//! `kind-<cluster>` that the stack file does not list under `allow_contexts:` is refused before
//! anything runs.

use std::path::{Path, PathBuf};

use bookstore_sim::kit::{Test, World};

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
