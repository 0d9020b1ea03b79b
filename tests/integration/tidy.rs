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
