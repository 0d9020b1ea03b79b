//! What `up` restarts (issue 10), end to end on the simulator through the real clients: a healthy
//! stack costs a check, never a restart, and the dry run shows every command the run spawns.
//! (The fault matrix has the rows where `up` acts on a part of the stack: one stale workload, a
//! pod istio-cni left outside the mesh, an interrupted recovery, a remedy that does not heal.)

use std::collections::BTreeSet;

use bookstore::event::{Decided, DecisionAction, Event};
use bookstore_sim::Source;
use bookstore_sim::kit::{Run, Test, World};

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
    let passed = events.iter().filter(|e| matches!(e, Event::CheckPassed { .. })).count();
    assert_eq!(passed, 9, "{}", run.stdout);
    let kept: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match e {
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

/// The lines of a `--dry-run --json`: its `plan` events.
fn plan_lines(run: &Run) -> Vec<String> {
    run.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Plan { line } => Some(line),
            _ => None,
        })
        .collect()
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
    let plan = plan_lines(&dry);
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
    let restarted: BTreeSet<String> = c.restarts().into_keys().collect();
    assert_eq!(restarted, restarts_planned);
    c.check();
}

/// The bootstrap on an empty machine: every command its run spawns (kubectl and docker through
/// the recording wrappers, kind and istioctl as their stand-ins record them) is a line of its
/// dry run, which comes from the same operations; where the dry run cannot know a value (Istio's
/// tag before istioctl is asked, which images arrive together for one load) it says so with a
/// placeholder.
#[test]
fn the_dry_run_of_a_bootstrap_shows_every_command_the_run_spawns() {
    let c = crate::bootstrap::empty_machine(true);
    c.mark();
    let dry = Test::new().world(&c).args(["up", "--dry-run"]).json().code(0).run();
    assert!(!c.audit().iter().any(|e| e.is_write()), "the dry run changed something");
    let plan = plan_lines(&dry);
    let commands: Vec<Vec<String>> =
        plan.iter().filter(|l| !l.starts_with('#')).map(|l| words_of(l)).collect();

    c.mark();
    Test::new().world(&c).args(["up"]).json().code(0).run();
    let mut argv = c.argv();
    argv.extend(c.audit().into_iter().filter(|e| e.source == Source::Standin).map(|e| {
        std::iter::once(e.verb.clone()).chain(serde_json::from_str::<Vec<String>>(&e.body).unwrap()).collect()
    }));
    assert!(argv.iter().any(|a| a[0] == "kind") && argv.iter().any(|a| a[0] == "istioctl"), "{argv:?}");
    let unshown: Vec<String> =
        argv.iter().filter(|a| !commands.iter().any(|c| fits(c, a))).map(|a| line_of(a)).collect();
    assert!(
        unshown.is_empty(),
        "spawned, not in the dry run: {unshown:#?}\n--- dry run\n{}",
        plan.join("\n")
    );
}

/// A dry-run line back into its words (single quotes as exec.rs writes them), without its
/// comment and heredoc.
fn words_of(line: &str) -> Vec<String> {
    let line = line.split("   # ").next().unwrap_or("");
    let line = line.split(" <<'EOF'").next().unwrap_or("");
    let (mut words, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if !quoted && chars.peek() == Some(&'\'') => word.push(chars.next().unwrap()),
            ' ' if !quoted => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => word.push(c),
        }
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    words
}

/// Whether `argv` is what the dry-run line `dry` says, where the dry run names a value only the
/// run knows by a placeholder (`<istioctl version>`, `<images on the host>`): a word that is one
/// stands for one or more words, a word that holds one for one word around it.
fn fits(dry: &[String], argv: &[String]) -> bool {
    let placeholder = |w: &str| w.find('<').zip(w.rfind('>')).filter(|(a, b)| a < b);
    match (dry.split_first(), argv.split_first()) {
        (None, None) => true,
        (Some((d, rest)), Some((a, more))) => match placeholder(d) {
            Some((0, end)) if end == d.len() - 1 => (1..=argv.len()).any(|n| fits(rest, &argv[n..])),
            Some((start, end)) => {
                a.starts_with(&d[..start]) && a.ends_with(&d[end + 1..]) && fits(rest, more)
            }
            None => d == a && fits(rest, more),
        },
        _ => false,
    }
}

#[test]
fn a_dry_run_line_fits_the_argv_it_stands_for() {
    let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let dry =
        words_of("kind load docker-image '<images on the host>' --name bookstore   # the classic store");
    assert_eq!(dry, ["kind", "load", "docker-image", "<images on the host>", "--name", "bookstore"]);
    assert!(fits(&dry, &w("kind load docker-image a:1 b:2 --name bookstore")));
    assert!(!fits(&dry, &w("kind load docker-image --name bookstore")));
    let pull = words_of("docker pull -q 'docker.io/istio/pilot:<istioctl version>'");
    assert!(fits(&pull, &w("docker pull -q docker.io/istio/pilot:1.26.0")));
    assert!(!fits(&pull, &w("docker pull -q docker.io/istio/ztunnel:1.26.0")));
    assert_eq!(
        words_of(r"kubectl get -o 'jsonpath={.x}' 'it'\''s'"),
        ["kubectl", "get", "-o", "jsonpath={.x}", "it's"]
    );
}
