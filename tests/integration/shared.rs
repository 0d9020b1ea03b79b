//! A shared development cluster, by explicit opt-in (issue 19 part 2): a kube context other than
//! `kind-<cluster>` that the stack file does not list under `allow_contexts:` is refused before
//! anything runs.

use std::path::Path;

use crate::harness::BIN;
use crate::simkit::{options, start};

/// `docker`, `kind`, `istioctl` and `kubectl` that record their argv and fail, first on PATH.
fn recorders(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("recorders");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["docker", "kind", "istioctl", "kubectl"] {
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
    let sim = start(options());
    let tmp = tempfile::tempdir().unwrap();
    let bin = recorders(tmp.path());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let before = sim.audit().len();
    let cases: [(&[&str], Option<&str>); 5] = [
        (&["up", "--context", "gke_team_dev"], None),
        (&["up", "--dry-run", "--context", "gke_team_dev"], None),
        (&["recover", "--context", "gke_team_dev"], None),
        (&["doctor", "--context", "gke_team_dev"], None),
        (&["up"], Some("gke_team_dev")),
    ];
    for (args, env) in cases {
        let mut cmd = sim.command(BIN);
        cmd.args(args).arg("--stack").arg(sim.stack_path()).env("NO_COLOR", "1").env("PATH", &path);
        if let Some(context) = env {
            cmd.env("BOOKSTORE_CONTEXT", context);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("kube context `gke_team_dev`"), "{stderr}");
        assert!(stderr.contains("allow_contexts: [gke_team_dev]"), "the line that allows it: {stderr}");
    }
    let ran = std::fs::read_to_string(tmp.path().join("argv.log")).unwrap_or_default();
    assert_eq!(ran, "", "no process runs before the context is allowed");
    let seen: Vec<String> =
        sim.audit()[before..].iter().map(|e| format!("{:?} {} {}", e.source, e.verb, e.path)).collect();
    assert_eq!(seen, Vec::<String>::new(), "the simulator was not even read");
}
