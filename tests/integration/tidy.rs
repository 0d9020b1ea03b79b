//! Tidy tests: the repository's own rules, checked on its files (rust-analyzer's `tidy.rs`).

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shell_scripts() -> Vec<PathBuf> {
    let mut out = vec![root().join(".ci/run")];
    for dir in ["scripts", "tests/sim/seed"] {
        for entry in std::fs::read_dir(root().join(dir)).expect("folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "sh") {
                out.push(path);
            }
        }
    }
    out
}

/// A stage that can exit before reading all its input (`head`, `grep -q`, `grep -m N`, `sed …q`).
fn stops_early(stage: &str) -> bool {
    let words: Vec<&str> = stage.split_whitespace().collect();
    match words.first() {
        Some(&"head") => true,
        Some(&"grep") => words.iter().any(|w| {
            w.starts_with('-') && !w.starts_with("--") && (w.contains('q') || w.contains('m'))
                || *w == "--quiet"
                || w.starts_with("--max-count")
        }),
        Some(&"sed") => words.iter().any(|w| w.trim_matches('\'').ends_with('q')),
        _ => false,
    }
}

/// Under `set -o pipefail`, `producer | head -1` fails whenever `head` exits first: the producer
/// dies of SIGPIPE and the pipeline's status is 141. It made CI fail 3 runs in 8 on a 2-core
/// machine. Such a pipeline must not appear in a script that sets pipefail.
#[test]
fn no_pipeline_under_pipefail_ends_in_a_reader_that_stops_early() {
    let mut offenders = Vec::new();
    for path in shell_scripts() {
        let text = std::fs::read_to_string(&path).expect("script");
        if !text.contains("pipefail") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or("");
            if code.trim_start().starts_with('#') {
                continue;
            }
            let stages: Vec<&str> = code.split('|').filter(|s| !s.is_empty()).collect();
            if stages.len() > 1 && stages[1..].iter().any(|s| stops_early(s)) {
                offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "pipelines that can exit 141 under pipefail:\n{}", offenders.join("\n"));
}

#[test]
fn the_pipeline_rule_knows_a_reader_that_stops_early() {
    for early in ["head -1", " head", "grep -q x", "grep -m1 x", "sed 1q", "grep --quiet x"] {
        assert!(stops_early(early.trim()), "{early}");
    }
    for whole in ["sed -n 1p", "grep x", "tail -1", "sort", "tr a b"] {
        assert!(!stops_early(whole), "{whole}");
    }
}

/// Every Rust source file under `src/` (path relative to `src/`, its text without comment lines).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("source");
            let code: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
            (f.strip_prefix(&src).unwrap().display().to_string(), code.join("\n"))
        })
        .collect()
}

/// The files (outside `allowed`) whose code names one of `words`.
fn naming(words: &[&str], allowed: impl Fn(&str) -> bool) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(file, _)| !allowed(file))
        .flat_map(|(file, code)| {
            words
                .iter()
                .filter(|w| code.contains(**w))
                .map(move |w| format!("{file} names `{w}`"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn only_exec_spawns_processes() {
    let found =
        naming(&["duct", "process::Command", "Command::new(", "std::process::Child"], |f| f == "exec.rs");
    assert!(found.is_empty(), "ARCHITECTURE.md: only exec.rs spawns processes\n{}", found.join("\n"));
}

#[test]
fn only_http_opens_sockets() {
    let found =
        naming(&["ureq", "TcpStream", "TcpListener", "UdpSocket", "ToSocketAddrs"], |f| f == "http.rs");
    assert!(found.is_empty(), "ARCHITECTURE.md: only http.rs speaks HTTP\n{}", found.join("\n"));
}

#[test]
fn the_planner_reads_no_file_and_spawns_nothing() {
    let io = [
        "std::fs",
        "std::io",
        "std::net",
        "std::process",
        "crate::exec",
        "Cmd",
        ".run(",
        ".send(",
        "crate::kube",
        "crate::engine",
        "crate::http::Request",
        "thread::",
    ];
    let found = naming(&io, |f| !(f == "plan.rs" || f.starts_with("plan/")));
    assert!(found.is_empty(), "ARCHITECTURE.md: the planner does no IO\n{}", found.join("\n"));
}

/// The judge resolves data already read into verdicts: no process, no socket, no file, no clock,
/// no thread, and none of the reads (`observe`'s IO, `troubles`' logs). Types are data: the
/// Observation, a pod, the engine's `Node` and `Kind`.
#[test]
fn the_judge_does_no_io() {
    let io = [
        "std::fs",
        "std::io",
        "std::net",
        "std::process",
        "std::time",
        "SystemTime",
        "Instant",
        "crate::exec",
        "Cmd",
        ".run(",
        ".send(",
        "crate::kube",
        "crate::http::Request",
        "Connect::",
        "thread::",
        "crate::troubles",
        "observe::host",
        "observe::cluster(",
        "observe::events",
        "observe::inspect",
        "observe::wait_api",
        "observe::now",
        "PodWatch",
        "ui::Ui",
        ".emit(",
        "wait::",
    ];
    let mut found = naming(&io, |f| !f.starts_with("judge/"));
    // The engine's typed values are data; its commands are not.
    for (file, code) in sources().into_iter().filter(|(f, _)| f.starts_with("judge/")) {
        let data = code.replace("crate::engine::Node", "").replace("crate::engine::Kind", "");
        if data.contains("engine::") || data.contains("Engine") {
            found.push(format!("{file} names an engine command"));
        }
    }
    assert!(found.is_empty(), "ARCHITECTURE.md: the judge does no IO\n{}", found.join("\n"));
}

#[test]
fn what_only_reads_changes_nothing() {
    // The typed wrappers that change something: only the steps call them.
    let changes = [
        "restart_all",
        "restart_list",
        ".apply(",
        "apply_url",
        "put_config",
        "rm_force",
        "kind_create_cluster",
        "kind_delete_cluster",
        "kind_load",
        "delete_pod",
        "EngineWrite",
        ".write().",
    ];
    let readers = |f: &str| {
        f.starts_with("observe/")
            || f.starts_with("doctor/")
            || f.starts_with("judge/")
            || f == "status.rs"
            || f == "smoke.rs"
    };
    let found = naming(&changes, |f| !readers(f));
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md: observe, doctor, status and smoke change nothing\n{}",
        found.join("\n")
    );
    let found = naming(&["crate::steps"], |f| {
        !(f.starts_with("observe/") || f.starts_with("doctor/") || f == "status.rs")
    });
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md: the read-only rooms do not reach into steps/\n{}",
        found.join("\n")
    );
}

/// Nothing that holds data is deleted: the only deletions are `down`'s `kind delete cluster` and
/// `Kubectl::delete_pod`, which takes a `PodRestart` (a pod its ReplicaSet, DaemonSet or
/// StatefulSet recreates, checked from the observed pod's ownerReferences), so a delete is a
/// restart. No other argv says `delete`, and nothing but `cluster.rs` makes a `PodRestart`.
#[test]
fn the_only_deletes_are_down_and_restarting_a_controlled_pod() {
    let mut found = Vec::new();
    for (file, code) in sources() {
        let deletes = code.matches("\"delete\"").count();
        let allowed = match file.as_str() {
            "kube.rs" | "engine/mod.rs" => 1,
            _ => 0,
        };
        if deletes != allowed {
            found.push(format!("{file} names `\"delete\"` {deletes} time(s), {allowed} allowed"));
        }
        if file != "cluster.rs" && code.contains("PodRestart {") {
            found.push(format!("{file} builds a PodRestart by hand (use PodRestart::of)"));
        }
    }
    let kube = sources().into_iter().find(|(f, _)| f == "kube.rs").expect("kube.rs").1;
    assert!(kube.contains("pub fn delete_pod(&self, pod: &PodRestart)"), "delete_pod takes a PodRestart");
    let engine = sources().into_iter().find(|(f, _)| f == "engine/mod.rs").expect("engine/mod.rs").1;
    assert!(engine.contains("[\"delete\", \"cluster\""), "the engine's delete is kind's cluster delete");
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md: deleting a controller-owned pod is a restart\n{}",
        found.join("\n")
    );
}

/// What the mesh adopted is read from the outside only: the API, the logs, and ztunnel's config
/// dump through istioctl's port-forward (ztunnel's admin port listens on localhost only): nothing
/// runs inside a pod or a node (no `kubectl exec`, no `docker exec`).
#[test]
fn nothing_runs_inside_a_pod_or_a_node() {
    // The planner and the judge build no command (their own tidy tests): an image tag's `-debug`
    // variant named there is not a `kubectl debug`.
    let pure = |f: &str| f.starts_with("plan") || f.starts_with("judge/");
    let found = naming(&["\"exec\"", "\"debug\"", "\"attach\""], pure);
    let kube = sources().into_iter().find(|(f, _)| f == "kube.rs").expect("kube.rs").1;
    assert!(found.is_empty(), "ARCHITECTURE.md: nothing runs inside a pod or a node\n{}", found.join("\n"));
    assert!(kube.contains("[\"ztunnel-config\", \"all\", \"--node\""), "ztunnel's state through istioctl");
}

/// Where a user reads what `up` does (`bookstore --help`'s examples, `make help`-style target
/// comments), it says what `up` does today: it bootstraps a stack that is not there (or half
/// done) and restarts what is broken in one that is, not only "reports that a bootstrap is
/// needed", nor "recovers it" (that is `recover`, which restarts everything).
#[test]
fn every_description_of_up_says_it_bootstraps() {
    let help = bookstore_sim::kit::Test::new().arg("--help").run().stdout;
    let example =
        help.lines().find(|l| l.trim_start().starts_with("bookstore up ")).expect("an `up` example");
    let makefile = std::fs::read_to_string(root().join("Makefile")).expect("Makefile");
    let target = makefile.lines().find(|l| l.starts_with("up:")).expect("the up target");
    for (where_, line) in [("bookstore --help", example), ("Makefile", target)] {
        assert!(line.contains("bootstrap") && line.contains("what is broken"), "{where_}: {line}");
        assert!(!line.contains("bootstrap is needed"), "{where_}: {line}");
    }
}

/// Docker's liveness is one judgement: `docker version` (failing on every CLI release), never
/// `docker info --format '{{.ServerVersion}}'`, which exits 0 with the daemon away before docker
/// CLI 28.1. The watcher tells time by Docker's clock only (Docker Desktop's VM clock drifts).
#[test]
fn docker_liveness_and_the_watchers_clock() {
    let found = naming(&["{{.ServerVersion}}"], |_| false);
    assert!(found.is_empty(), "ARCHITECTURE.md: Docker's liveness is `docker version`\n{}", found.join("\n"));
    let found = naming(&["SystemTime"], |f| !f.starts_with("watch/mod.rs"));
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md: the watcher compares Docker's timestamps only\n{}",
        found.join("\n")
    );
}

/// Every test file: the integration tests and the simulator's client tests (but this one, which
/// names what the others must not).
fn test_sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in ["tests/integration", "tests/sim/tests"] {
        for entry in std::fs::read_dir(root().join(dir)).expect("folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tidy.rs") {
                let rel = path.strip_prefix(root()).expect("under the root").display().to_string();
                out.push((rel, std::fs::read_to_string(&path).expect("a test file")));
            }
        }
    }
    out
}

/// One kit runs `bookstore`: only `kit::Test` names the binary to run it (the copy an installed
/// service runs, too, is run through it: `Test::program`).
#[test]
fn only_the_kit_runs_bookstore() {
    let named: Vec<String> = test_sources()
        .into_iter()
        .filter(|(_, text)| text.contains("CARGO_BIN_EXE_bookstore"))
        .map(|(file, _)| file)
        .collect();
    assert_eq!(named, Vec::<String>::new(), "run bookstore with bookstore_sim::kit::Test");
    let kit = std::fs::read_to_string(root().join("tests/sim/src/kit/test.rs")).expect("the kit");
    assert!(kit.contains("CARGO_BIN_EXE_bookstore"), "the kit finds the binary");
}

/// One bounded poll: no test makes a deadline of its own (`Instant::now() + …` and a loop);
/// every wait goes through `kit::poll` / `kit::eventually` / `World::until` / `Running`.
#[test]
fn no_test_polls_by_hand() {
    let own: Vec<String> = test_sources()
        .into_iter()
        .flat_map(|(file, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| l.contains("Instant::now() +") && !l.trim_start().starts_with("//"))
                .map(|(n, l)| format!("{file}:{}: {}", n + 1, l.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(own, Vec::<String>::new(), "wait with bookstore_sim::kit::poll or eventually");
}
