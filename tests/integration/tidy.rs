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

/// A file under `src/` grows past 600 lines only with a reason: a `Size:` paragraph in its module doc
/// saying why it reads best whole (issue 18: the rooms are split by concern, not by size alone).
#[test]
fn a_long_file_says_why_it_is_long() {
    let long: Vec<String> = rust_files(&root().join("src"))
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).expect("source");
            let lines = text.lines().count();
            let says = text.lines().take_while(|l| l.starts_with("//!")).any(|l| l.starts_with("//! Size: "));
            (lines > 600 && !says).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "ARCHITECTURE.md: over 600 lines without a `//! Size:` reason\n{}",
        long.join("\n")
    );
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
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
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files
}

/// Every Rust source file under `src/` (path relative to `src/`, its text without comment lines).
fn sources() -> Vec<(String, String)> {
    let src = root().join("src");
    rust_files(&src)
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
    naming_in(&sources(), words, allowed)
}

fn naming_in(sources: &[(String, String)], words: &[&str], allowed: impl Fn(&str) -> bool) -> Vec<String> {
    sources
        .iter()
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
    let planner = |f: &str| f == "plan.rs" || f.starts_with("plan/");
    let mut found = naming(&io, |f| !planner(f) || f == "plan/converge.rs");
    // The engine's typed values are data (a node its tests observe); its commands are not.
    for (file, code) in sources().into_iter().filter(|(f, _)| f == "plan/converge.rs") {
        let code = code.replace("crate::engine::Node", "");
        found.extend(io.iter().filter(|w| code.contains(**w)).map(|w| format!("{file} names `{w}`")));
    }
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

/// `wait.rs` is the one retry loop (`Poll`: a deadline, sleeping only between attempts, the last
/// answer on timeout): nothing else sleeps to try again. The other sleeps are no retries: a
/// killed child reaped (`exec.rs`), the spinner's frame (`ui.rs`), the mesh's settle (a pause
/// operation, `steps/executor.rs`). The event loops (the rollout's executor, the watcher, the
/// image loader) wait on channels under their deadlines.
#[test]
fn only_wait_retries() {
    let found = naming(&["thread::sleep", "wait::sleep"], |f| {
        matches!(f, "wait.rs" | "exec.rs" | "ui.rs" | "steps/executor.rs")
    });
    assert!(found.is_empty(), "ARCHITECTURE.md: wait.rs is the one retry loop\n{}", found.join("\n"));
}

/// The rooms that only read: they are given the read-only `observe::Ctx` and kubectl's read half.
fn reader(f: &str) -> bool {
    ["observe/", "doctor/", "judge/"].iter().any(|room| f.starts_with(room))
        || ["status.rs", "smoke.rs", "troubles.rs"].contains(&f)
}

/// Only the steps change anything: kubectl's and the node engine's change halves are types
/// (`KubectlWrite`, `EngineWrite`, made by `Engine::write`) that only `steps/` holds; a read-only
/// room neither names them nor reaches into `steps/` for its context. (The doc tests of
/// `KubectlWrite` show the read half has no change method and the read-only context no change
/// half.)
const WRITERS: [&str; 6] =
    ["KubectlWrite", "EngineWrite", "crate::steps", "steps::Ctx", ".write()", "engine_write"];

#[test]
fn what_only_reads_changes_nothing() {
    let writers = WRITERS;
    let found = naming(&writers, |f| !reader(f));
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md: observe, doctor, status, smoke and troubles change nothing\n{}",
        found.join("\n")
    );
    let found = naming(&writers[..2], |f| {
        f.starts_with("steps/") || f.starts_with("kube") || f.starts_with("engine/")
    });
    assert!(found.is_empty(), "ARCHITECTURE.md: only steps/ holds the change halves\n{}", found.join("\n"));
    // The only files written outside steps/: the lock and the --timings files.
    let found = naming(&["fs::write", "create_dir", "remove_file", "OpenOptions", "File::create"], |f| {
        f.starts_with("steps/") || ["lock.rs", "state.rs", "timings/files.rs", "proptests.rs"].contains(&f)
    });
    assert!(found.is_empty(), "ARCHITECTURE.md: only steps/ changes anything\n{}", found.join("\n"));
}

/// The rule above has teeth: a reader that names a change half is caught.
#[test]
fn the_read_only_rule_sees_a_reader_holding_a_change_half() {
    let code = |file: &str, text: &str| (file.to_string(), text.to_string());
    let tree = [
        code("doctor/mesh.rs", "fn probe(kube: &crate::kube::KubectlWrite) {}"),
        code("status.rs", "use crate::steps::Ctx;"),
        code("steps/rollout.rs", "fn restart(w: &crate::kube::KubectlWrite) {}"),
    ];
    let found = naming_in(&tree, &WRITERS, |f| !reader(f));
    assert_eq!(
        found,
        [
            "doctor/mesh.rs names `KubectlWrite`",
            "status.rs names `crate::steps`",
            "status.rs names `steps::Ctx`"
        ]
    );
}

/// Nothing that holds data is deleted: the only deletions are `down`'s `kind delete cluster` and
/// `KubectlWrite::delete_pod`, which takes a `PodRestart` (a pod its ReplicaSet, DaemonSet or
/// StatefulSet recreates, checked from the observed pod's ownerReferences), so a delete is a
/// restart. No other argv says `delete`, and nothing but `cluster.rs` makes a `PodRestart`.
#[test]
fn the_only_deletes_are_down_and_restarting_a_controlled_pod() {
    let mut found = Vec::new();
    for (file, code) in sources() {
        let deletes = code.matches("\"delete\"").count();
        let allowed = match file.as_str() {
            "kube/write.rs" | "engine/mod.rs" => 1,
            _ => 0,
        };
        if deletes != allowed {
            found.push(format!("{file} names `\"delete\"` {deletes} time(s), {allowed} allowed"));
        }
        if file != "cluster.rs" && code.contains("PodRestart {") {
            found.push(format!("{file} builds a PodRestart by hand (use PodRestart::of)"));
        }
    }
    let kube = sources().into_iter().find(|(f, _)| f == "kube/write.rs").expect("kube/write.rs").1;
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
    assert!(found.is_empty(), "ARCHITECTURE.md: nothing runs inside a pod or a node\n{}", found.join("\n"));
    let kube = sources().into_iter().find(|(f, _)| f == "kube.rs").expect("kube.rs").1;
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

/// A module of `src/` (`steps::rollout`; the crate root is empty) and its code: comment lines
/// dropped, its `mod tests` cut off, test-only files (`#[cfg(test)] mod x;`) left out.
fn modules() -> Vec<(Vec<String>, String)> {
    let mut out: Vec<(Vec<String>, String)> = sources()
        .into_iter()
        .map(|(file, code)| {
            let mut path: Vec<String> = file.trim_end_matches(".rs").split('/').map(String::from).collect();
            if matches!(path.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                path.pop();
            }
            let code = match code.find("#[cfg(test)]\nmod tests") {
                Some(at) => code[..at].to_string(),
                None => code,
            };
            (path, code)
        })
        .collect();
    let test_only: Vec<Vec<String>> = out
        .iter()
        .flat_map(|(path, code)| {
            code.split("#[cfg(test)]\n").skip(1).filter_map(move |after| {
                let line = after.lines().next()?.trim();
                let name = line.strip_prefix("pub(crate) ").unwrap_or(line).strip_prefix("mod ")?;
                let name = name.strip_suffix(';')?;
                Some(path.iter().cloned().chain([name.to_string()]).collect())
            })
        })
        .collect();
    out.retain(|(path, _)| !test_only.contains(path));
    out
}

/// The paths a piece of code names from `crate::` or `super::` (use trees with braces expanded),
/// each resolved against `module`.
fn paths_named(module: &[String], code: &str) -> Vec<Vec<String>> {
    fn ident(s: &str) -> (&str, &str) {
        let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
        (&s[..end], &s[end..])
    }
    /// One use tree after `prefix::`: `a::b`, `a::{b, c::d}`, `{a, b}`.
    fn tree(prefix: Vec<String>, s: &str, out: &mut Vec<Vec<String>>) -> usize {
        let mut at = 0;
        let mut path = prefix;
        loop {
            let rest = s[at..].trim_start();
            at = s.len() - rest.len();
            if let Some(inner) = rest.strip_prefix('{') {
                let mut used = 1;
                loop {
                    let part = &inner[used - 1..];
                    let part_trim = part.trim_start();
                    used += part.len() - part_trim.len();
                    if part_trim.starts_with('}') {
                        used += 1;
                        break;
                    }
                    used += tree(path.clone(), part_trim, out);
                    let after = inner[used - 1..].trim_start();
                    used = inner.len() - after.len() + 1;
                    if let Some(a) = after.strip_prefix(',') {
                        used = inner.len() - a.len() + 1;
                    } else if after.starts_with('}') {
                        used += 1;
                        break;
                    } else {
                        break;
                    }
                }
                out.push(path);
                return at + used;
            }
            let (name, after) = ident(rest);
            if name.is_empty() {
                out.push(path);
                return at;
            }
            path.push(name.to_string());
            at = s.len() - after.len();
            match after.strip_prefix("::") {
                Some(next) => at = s.len() - next.len(),
                None => {
                    out.push(path);
                    return at;
                }
            }
        }
    }
    let mut out = Vec::new();
    for (root, base) in
        [("crate::", Vec::new()), ("super::", module[..module.len().saturating_sub(1)].to_vec())]
    {
        for (at, _) in code.match_indices(root) {
            if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // `super::super::`, handled by the first `super::`, or `x::crate::`
            }
            let mut base = base.clone();
            let mut rest = &code[at + root.len()..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            tree(base, rest, &mut out);
        }
    }
    out
}

/// Each module and the modules it imports (the longest module prefix of each path it names),
/// a module's own ancestors and descendants aside: containment is not an import.
fn imports() -> Vec<(String, Vec<String>)> {
    let modules = modules();
    let known: Vec<&Vec<String>> = modules.iter().map(|(p, _)| p).collect();
    modules
        .iter()
        .map(|(module, code)| {
            let mut to: Vec<String> = paths_named(module, code)
                .into_iter()
                .filter_map(|path| {
                    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| known.contains(&p))
                })
                .filter(|p| !(p.starts_with(module) || module.starts_with(p)))
                .map(|p| p.join("::"))
                .collect();
            to.sort();
            to.dedup();
            (module.join("::"), to)
        })
        .collect()
}

/// The cycles of a graph, as `a → b → a`.
fn cycles(graph: &[(String, Vec<String>)]) -> Vec<String> {
    fn visit(
        node: &str,
        graph: &[(String, Vec<String>)],
        stack: &mut Vec<String>,
        done: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            found.push(cycle.join(" → "));
            return;
        }
        if done.iter().any(|n| n == node) {
            return;
        }
        stack.push(node.to_string());
        for (_, to) in graph.iter().filter(|(n, _)| n == node) {
            for next in to {
                visit(next, graph, stack, done, found);
            }
        }
        stack.pop();
        done.push(node.to_string());
    }
    let (mut done, mut found) = (Vec::new(), Vec::new());
    for (node, _) in graph {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

/// No module imports one that imports it back, however far round: not between files (`steps::
/// inputs` and `steps::rollout`), nor between rooms (`run` and `watch`). The layers point one way.
#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(graph.iter().any(|(m, to)| m == "watch" && to.iter().any(|t| t == "config")), "{graph:?}");
    let found = cycles(&graph);
    assert!(found.is_empty(), "ARCHITECTURE.md: import cycles between modules:\n{}", found.join("\n"));
    let mut rooms: Vec<(String, Vec<String>)> = Vec::new();
    for (module, to) in &graph {
        let room = module.split("::").next().unwrap_or("").to_string();
        let to: Vec<String> = to
            .iter()
            .map(|t| t.split("::").next().unwrap_or("").to_string())
            .filter(|t| *t != room && !t.is_empty())
            .collect();
        if room.is_empty() {
            continue;
        }
        match rooms.iter_mut().find(|(r, _)| *r == room) {
            Some((_, all)) => all.extend(to),
            None => rooms.push((room, to)),
        }
    }
    let found = cycles(&rooms);
    assert!(found.is_empty(), "ARCHITECTURE.md: import cycles between rooms:\n{}", found.join("\n"));
}

/// The cycle check sees what it must: a use tree with braces, `super::` between siblings, and a
/// cycle however far round.
#[test]
fn the_cycle_check_reads_use_trees_and_finds_long_cycles() {
    let module: Vec<String> = ["steps", "rollout"].map(String::from).to_vec();
    let named = paths_named(&module, "use crate::{kube::{Rollout, x}, plan};\nuse super::{Ctx, inputs::f};");
    let named: Vec<String> = named.iter().map(|p| p.join("::")).collect();
    for want in ["kube::Rollout", "kube::x", "plan", "steps::Ctx", "steps::inputs::f"] {
        assert!(named.iter().any(|n| n == want), "{want} not in {named:?}");
    }
    let g = |edges: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
        edges.iter().map(|(a, to)| (a.to_string(), to.iter().map(|t| t.to_string()).collect())).collect()
    };
    assert_eq!(cycles(&g(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])), ["a → b → c → a"]);
    assert!(cycles(&g(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[])])).is_empty());
}
