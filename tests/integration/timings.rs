//! `--timings` end to end: a recovery after a simulated Docker restart, through the real clients;
//! its page opened in a real headless Chromium (`scripts/headless.sh`), read back from the DOM:
//! no console message, one bar per workload the run restarted (the simulator's audit log says
//! which), the critical path marked along the plan's edges. The screenshot and the page stay under
//! target/tmp/timings/. Without a browser the browser half is skipped, saying so (not on CI).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bookstore::event::{Event, Stamped};
use bookstore_sim::kit::{HOSTILE, Test, World, poll};
use bookstore_sim::{AuditEntry, Fault, Source};
use serde_json::Value;

/// What headless Chromium gave back for a page.
struct Loaded {
    dom: String,
    /// The page's console messages (Chromium's `:CONSOLE` log lines).
    console: Vec<String>,
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("timings");
    std::fs::create_dir_all(&dir).expect("artifact folder");
    dir
}

/// Open `page` in headless Chromium and save a screenshot; None (after saying why) where no
/// browser can run. On CI a missing or broken browser fails the test: `.ci/run` installs it.
fn open(page: &Path, shot: &Path, size: &str) -> Option<Loaded> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/headless.sh");
    let mut child = Command::new("bash")
        .arg(&script)
        .arg(page)
        .arg(shot)
        .arg(size)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    // Read both pipes on threads so a chatty browser never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || std::io::read_to_string(&mut stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(&mut stderr).unwrap_or_default());
    let ended = poll(Duration::from_secs(120), Duration::from_millis(50), || {
        child.try_wait().expect("wait").ok_or(())
    });
    let status = ended.ok();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (dom, log) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    let why = match status {
        Some(s) if s.success() && dom.contains("</html>") => None,
        Some(s) if s.code() == Some(3) => Some(log.trim().to_string()),
        Some(s) => Some(format!("Chromium failed ({s}); its log ends:\n{}", tail(&log))),
        None => Some(format!("Chromium did not finish within 120 s; its log ends:\n{}", tail(&log))),
    };
    if let Some(why) = why {
        assert!(
            std::env::var_os("CI").is_none(),
            "on CI the browser must run (.ci/run installs chromium): {why}"
        );
        eprintln!("SKIPPED the browser check: {why}");
        return None;
    }
    let console = log.lines().filter(|l| l.contains(":CONSOLE")).map(String::from).collect();
    Some(Loaded { dom, console })
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The `data-*` attributes of every `<g class="bar …">` in the DOM.
fn bars(dom: &str) -> Vec<BTreeMap<String, String>> {
    dom.match_indices("<g class=\"bar ")
        .map(|(at, _)| {
            let tag = &dom[at..at + dom[at..].find('>').expect("tag ends")];
            let mut attrs = BTreeMap::new();
            let mut rest = tag;
            while let Some(eq) = rest.find("=\"") {
                let name = rest[..eq].rsplit(' ').next().unwrap_or("").to_string();
                let value_len = rest[eq + 2..].find('"').expect("quoted value");
                attrs.insert(name, rest[eq + 2..eq + 2 + value_len].to_string());
                rest = &rest[eq + 2 + value_len + 1..];
            }
            attrs
        })
        .collect()
}

/// The names of the `--timings=json` document's bars of this kind.
fn names_of(bars: &[Value], kind: &str) -> BTreeSet<String> {
    bars.iter().filter(|b| b["kind"] == kind).map(|b| b["name"].as_str().unwrap().to_string()).collect()
}

/// Every workload the run restarted: the kube PATCHes that set `restartedAt`.
fn restarted(audit: &[AuditEntry]) -> BTreeSet<String> {
    audit
        .iter()
        .filter(|e| e.source == Source::Kube && e.verb == "PATCH" && e.body.contains("restartedAt"))
        .filter(|e| e.path.contains("/deployments/") || e.path.contains("/daemonsets/"))
        .filter_map(|e| e.path_only().rsplit('/').next().map(String::from))
        .collect()
}

#[test]
fn a_recoverys_timings_page_opens_in_a_browser_with_a_bar_per_restarted_workload_and_the_critical_path() {
    let sim = World::healthy();
    sim.restart_docker();
    let since = sim.audit().len();
    let dir = sim.dir().join("timings");
    let run = Test::new()
        .world(&sim)
        .args(["recover", "--json", "--timings=html,json", "--timings-dir", dir.to_str().unwrap()])
        .code(0)
        .run();
    // The --json events carry the same story: each restart with what released it, and the
    // summary names the files.
    let events: Vec<Stamped> =
        run.stdout.lines().map(|l| serde_json::from_str(l).expect("an event")).collect();
    let started = events.iter().filter(|e| matches!(e.event, Event::TaskStarted { .. })).count();
    assert_eq!(started, 17 + 2, "each workload and connector: {}", run.stdout);
    let Some(Event::Summary { programs, timings: Some(named), .. }) = events.last().map(|e| &e.event) else {
        panic!("the summary last, naming the timings files: {}", run.stdout)
    };
    assert!(programs.get("kubectl").is_some_and(|n| *n > 0), "{programs:?}");
    let audit: Vec<AuditEntry> = sim.audit().split_off(since);
    let restarted = restarted(&audit);
    assert_eq!(restarted.len(), 17, "ztunnel and the 16 workloads: {restarted:?}");

    // Both files, named at the end of the run.
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("timings folder").map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let (page, json) = (&files[0], &files[1]);
    assert!(page.extension().is_some_and(|e| e == "html") && json.extension().is_some_and(|e| e == "json"));
    for file in &files {
        assert!(run.stderr.contains(&format!("timings: {}", file.display())), "{}", run.stderr);
    }
    assert_eq!(*named, files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>());
    let name = page.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("recover-") && name.len() == "recover-20260101T000000Z.html".len(), "{name}");

    // The JSON document: the same bars, the critical path a chain along the plan's edges.
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).expect("JSON");
    let doc_bars = doc["bars"].as_array().expect("bars");
    let of_kind = |kind: &str| names_of(doc_bars, kind);
    assert_eq!(of_kind("workload"), restarted);
    assert_eq!(of_kind("connector"), BTreeSet::from(["ecom-connector".into(), "inventory-connector".into()]));
    let chain: Vec<&Value> = doc_bars.iter().filter(|b| b["critical"] == true).collect();
    let tasks: Vec<&&Value> = chain.iter().filter(|b| b["kind"] != "phase").collect();
    assert_eq!(tasks.first().map(|b| &b["name"]), Some(&Value::from("ztunnel")), "{chain:#?}");
    for pair in tasks.windows(2).skip(1) {
        let needs: Vec<&str> =
            pair[1]["needs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(
            needs.contains(&pair[0]["name"].as_str().unwrap()),
            "{} does not need {}",
            pair[1]["name"],
            pair[0]["name"]
        );
    }
    let sum: u64 = chain.iter().map(|b| b["took_ms"].as_u64().unwrap()).sum();
    assert_eq!(doc["critical_path"]["ms"].as_u64(), Some(sum));
    assert!(sum <= doc["wall_ms"].as_u64().unwrap());
    // Each restart after the one that released it was Ready.
    for b in doc_bars.iter().filter(|b| b["released_by"].is_string()) {
        let by = doc_bars.iter().find(|d| d["name"] == b["released_by"]).expect("the releasing bar");
        assert!(by["ready_ms"].as_u64() <= b["start_ms"].as_u64(), "{b} before {by}");
    }
    // No secret in either file.
    for file in &files {
        assert!(!std::fs::read_to_string(file).unwrap().contains(HOSTILE));
    }

    // The page in a real browser.
    let shot = artifacts().join("recovery.png");
    let _ = std::fs::copy(page, artifacts().join("recovery.html"));
    let Some(loaded) = open(page, &shot, "1200x1700") else { return };
    assert!(loaded.console.is_empty(), "console messages: {:#?}", loaded.console);
    let dom_bars = bars(&loaded.dom);
    let workloads: BTreeSet<String> =
        dom_bars.iter().filter(|b| b["data-kind"] == "workload").map(|b| b["data-name"].clone()).collect();
    assert_eq!(dom_bars.iter().filter(|b| b["data-kind"] == "workload").count(), restarted.len());
    assert_eq!(workloads, restarted);
    let marked: Vec<&String> =
        dom_bars.iter().filter(|b| b["data-critical"] == "true").map(|b| &b["data-name"]).collect();
    let expected: Vec<&Value> = chain.iter().map(|b| &b["name"]).collect();
    assert_eq!(marked.len(), expected.len());
    assert!(
        marked.iter().zip(&expected).all(|(m, e)| e.as_str() == Some(m.as_str())),
        "{marked:?} vs {expected:?}"
    );
    assert!(
        dom_bars.iter().filter(|b| b["data-critical"] == "true").all(|b| b["class"].contains("critical"))
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("screenshot: {}", shot.display());
}

/// The console check has teeth: a page with a script error is caught.
#[test]
fn the_browser_check_sees_a_pages_console_error() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><p>x</p><script>noSuchFunction();</script></body></html>",
    )
    .unwrap();
    let Some(loaded) = open(&page, &dir.path().join("broken.png"), "400x300") else { return };
    assert!(
        loaded.console.iter().any(|l| l.contains("noSuchFunction is not defined")),
        "console: {:#?}",
        loaded.console
    );
}

#[test]
fn an_unknown_timings_format_is_a_usage_error_that_runs_nothing() {
    let world = World::healthy();
    world.mark();
    let run = Test::new().world(&world).args(["recover", "--timings=pdf"]).code(2).run();
    assert!(run.stderr.contains("`pdf` is not a format (html, json, or html,json)"), "{}", run.stderr);
    assert!(world.argv().is_empty() && world.touched().is_empty(), "{:?}", world.touched());
}

/// The timeline of a failed run is the one a user most wants: written all the same, with the
/// workload that never became Ready marked and on the critical path (it held the run until its
/// deadline).
#[test]
fn a_run_that_times_out_still_writes_its_timeline_with_the_stuck_workload_on_the_critical_path() {
    let world = World::broken().short_deadlines();
    // Its deadline is what ends the run: longer than the connectors take to register after
    // debezium (about 2.3 s here), or their chain, still running when the run fails, ties it.
    world.deadline("- { name: keycloak,", "3s");
    world.fault(Fault::RolloutNeverCompletes { workload: "keycloak".into() });
    let dir = world.dir().join("out");
    let run = Test::new()
        .world(&world)
        .args(["recover", "--timings=json", "--timings-dir", dir.to_str().unwrap()])
        .code(124)
        .run();
    let file = std::fs::read_dir(&dir).expect("timings folder").next().expect("a file").unwrap().path();
    assert!(run.stderr.contains(&format!("timings: {}", file.display())), "{}", run.stderr);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!((doc["outcome"].as_str(), doc["exit_code"].as_i64()), (Some("failed"), Some(124)));
    assert!(doc["error"].as_str().unwrap().contains("identity/keycloak"), "{doc}");
    let keycloak =
        doc["bars"].as_array().unwrap().iter().find(|b| b["name"] == "keycloak").expect("a keycloak bar");
    assert_eq!(
        (keycloak["outcome"].as_str(), keycloak["critical"].as_bool()),
        (Some("failed"), Some(true)),
        "{keycloak}"
    );
    assert_eq!(keycloak["released_by"], "keycloak-db");
    // --dry-run runs nothing and so writes nothing.
    let dry = world.dir().join("dry");
    let run = Test::new()
        .world(&world)
        .args(["recover", "--dry-run", "--timings", "--timings-dir", dry.to_str().unwrap()])
        .run();
    assert!(!dry.exists() && run.stderr.contains("--timings writes no timeline"), "{}", run.stderr);
}

/// `up --timings` on an empty machine: one named bar per preparation (the Secrets, the Gateway
/// API CRDs, Istio, each image), per workload applied and per connector, each turning Ready, in
/// the JSON document and on the page read back from headless Chromium's DOM.
#[test]
fn the_bootstraps_timings_page_has_a_named_bar_per_preparation_workload_and_connector_each_ready() {
    let sim = crate::bootstrap::empty_machine(true);
    let dir = sim.dir().join("timings");
    let run = Test::new()
        .world(&sim)
        .args(["up", "--json", "--timings=html,json", "--timings-dir", dir.to_str().unwrap()])
        .code(0)
        .run();
    // What the run said it started: each a bar.
    let started: BTreeSet<String> = bookstore::event::parse(&run.stdout)
        .into_iter()
        .filter_map(|e| match e.event {
            Event::TaskStarted { subject, .. } => Some(subject.name().to_string()),
            _ => None,
        })
        .collect();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("timings folder").map(|e| e.unwrap().path()).collect();
    files.sort();
    let (page, json) = (&files[0], &files[1]);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).expect("JSON");
    let doc_bars = doc["bars"].as_array().expect("bars");
    let named = |kind: &str| names_of(doc_bars, kind);
    // Every task a named bar that turned Ready (no bar without a name, none left unfinished).
    for b in doc_bars {
        assert!(!b["name"].as_str().unwrap().is_empty(), "a nameless bar: {b}");
        assert_eq!(b["outcome"], "ok", "{b}");
        assert!(b["ready_ms"].is_u64(), "{b}");
    }
    let tasks: BTreeSet<String> = ["prep", "applied", "connector"].iter().flat_map(|k| named(k)).collect();
    assert_eq!(tasks, started, "a bar per task started");
    let preps = named("prep");
    for prep in ["the Secrets", "the Gateway API CRDs", "Istio"] {
        assert!(preps.contains(prep), "no bar for {prep}: {preps:?}");
    }
    let images = preps.iter().filter(|p| p.contains('/') || p.contains(':')).count();
    assert!(images >= 10, "a bar per image: {preps:?}");
    let stack = bookstore_sim::config::Infra::load(&sim.dir().join("infra")).unwrap().stack;
    let applied = named("applied");
    for w in &stack.workloads {
        assert!(applied.contains(&w.name), "no bar for {}: {applied:?}", w.name);
    }
    assert_eq!(named("connector"), BTreeSet::from(["ecom-connector".into(), "inventory-connector".into()]));

    // The page in a real browser: the same bars, each Ready.
    let shot = artifacts().join("bootstrap.png");
    let _ = std::fs::copy(page, artifacts().join("bootstrap.html"));
    let Some(loaded) = open(page, &shot, "1200x2400") else { return };
    assert!(loaded.console.is_empty(), "console messages: {:#?}", loaded.console);
    let dom = bars(&loaded.dom);
    for kind in ["prep", "applied", "connector"] {
        let on_page: BTreeSet<String> =
            dom.iter().filter(|b| b["data-kind"] == kind).map(|b| b["data-name"].clone()).collect();
        assert_eq!(on_page, named(kind), "{kind} bars on the page");
    }
    for b in &dom {
        assert!(!b["data-name"].is_empty() && !b["data-ready-ms"].is_empty(), "{b:?}");
        assert!(!b["class"].contains("failed"), "{b:?}");
    }
}
