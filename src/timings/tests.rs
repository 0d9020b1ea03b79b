//! The timeline as data: events in, bars, critical path, page, text and JSON out.

use serde_json::{Value, json};

use super::*;

fn ev(t: u64, kind: &str, fields: Value) -> Value {
    let mut e = json!({"event": kind, "t_ms": t});
    e.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    e
}

fn started(t: u64, workload: &str, ns: &str, after: &[&str], by: Option<&str>) -> Value {
    ev(
        t,
        "task_started",
        json!({"workload": workload, "namespace": ns, "action": "restart", "after": after, "released_by": by}),
    )
}

/// The events as `Ui::recorded` keeps them.
fn typed(events: &[Value]) -> Vec<Stamped> {
    events
        .iter()
        .map(|e| serde_json::from_value(e.clone()).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect()
}

fn ready(t: u64, workload: &str, ns: &str) -> Value {
    ev(t, "workload_ready", json!({"workload": workload, "namespace": ns, "duration_ms": 0}))
}

fn step(t: u64, title: &str) -> Value {
    ev(t, "step_started", json!({"step": title}))
}

fn done(t: u64, title: &str, outcome: &str) -> Value {
    ev(t, "step_finished", json!({"step": title, "outcome": outcome, "note": "", "duration_ms": 0}))
}

const ROLLOUT: &str = "Restarting 7 workloads (each when what it needs is Ready)";

/// A recovery as `bookstore recover --json` reports it (times in ms).
fn recovery() -> Vec<Value> {
    vec![
        step(0, "Checking tools, Docker and the cluster"),
        done(50, "Checking tools, Docker and the cluster", "ok"),
        step(60, "Restarting ztunnel (waiting ≤ 1m30s)"),
        started(61, "ztunnel", "istio-system", &[], None),
        ready(600, "ztunnel", "istio-system"),
        done(601, "Restarting ztunnel (waiting ≤ 1m30s)", "ok"),
        step(610, ROLLOUT),
        started(620, "ecom-db", "ecom", &[], None),
        started(620, "keycloak-db", "identity", &[], None),
        started(620, "kafka", "infra", &[], None),
        ev(620, "info", json!({"message": "restart ecom-db (ecom), keycloak-db (identity), kafka (infra)"})),
        ready(1000, "ecom-db", "ecom"),
        started(1010, "ecom-service", "ecom", &["ecom-db"], Some("ecom-db")),
        ready(1200, "keycloak-db", "identity"),
        started(1210, "keycloak", "identity", &["keycloak-db"], Some("keycloak-db")),
        ready(1500, "kafka", "infra"),
        started(1510, "debezium", "infra", &["kafka"], Some("kafka")),
        ready(2000, "ecom-service", "ecom"),
        ready(2500, "debezium", "infra"),
        ev(
            2510,
            "task_started",
            json!({"connector": "ecom-connector", "action": "register", "after": ["ecom-db", "debezium"],
                   "released_by": "debezium"}),
        ),
        ev(
            2900,
            "connector_registered",
            json!({"connector": "ecom-connector", "note": "registered, RUNNING", "duration_ms": 390}),
        ),
        ready(3500, "keycloak", "identity"),
        done(3510, ROLLOUT, "ok"),
        step(3520, "Smoke-testing every route"),
        ev(3600, "check_passed", json!({"check": "ui", "url": "http://127.0.0.1:30000/"})),
        done(3700, "Smoke-testing every route", "ok"),
        ev(
            3705,
            "summary",
            json!({"command": "recover", "outcome": "ok", "exit_code": 0, "duration_ms": 3710,
            "commands": 20, "programs": {"kubectl": 18, "docker": 2}}),
        ),
    ]
}

fn names(t: &Timeline, which: impl Fn(&Bar) -> bool) -> Vec<String> {
    t.bars.iter().filter(|b| which(b)).map(|b| b.label().to_string()).collect()
}

#[test]
fn every_restarted_workload_is_one_bar_in_the_order_it_started_and_steps_with_tasks_are_not_bars() {
    let t = Timeline::from_events(&typed(&recovery()), 1_709_210_096);
    assert_eq!(
        names(&t, |_| true),
        [
            "Checking tools, Docker and the cluster",
            "ztunnel",
            "ecom-db",
            "keycloak-db",
            "kafka",
            "ecom-service",
            "keycloak",
            "debezium",
            "ecom-connector",
            "Smoke-testing every route"
        ]
    );
    assert_eq!(t.bars.iter().filter(|b| b.kind == Kind::Workload).count(), 7);
    assert_eq!((t.wall_ms, t.commands, t.kubectl()), (3710, 20, 18));
    assert_eq!(t.programs_text(), "kubectl 18, docker 2");
}

#[test]
fn a_bar_waits_from_its_steps_start_until_what_released_it_was_ready() {
    let t = Timeline::from_events(&typed(&recovery()), 0);
    let keycloak = t.bars.iter().find(|b| b.name == "keycloak").unwrap();
    assert_eq!((keycloak.queued_ms, keycloak.start_ms, keycloak.ready_ms), (610, 1210, Some(3500)));
    assert_eq!((keycloak.waited_ms(), keycloak.took_ms(t.wall_ms)), (600, 2290));
    assert_eq!(keycloak.released_by.as_deref(), Some("keycloak-db"));
    assert_eq!(keycloak.released_text(), "released by keycloak-db Ready");
    // Nothing to wait for inside the rollout: it started after the previous step's last bar.
    let db = t.bars.iter().find(|b| b.name == "ecom-db").unwrap();
    assert_eq!(db.released_text(), "started after ztunnel");
    let connector = t.bars.iter().find(|b| b.name == "ecom-connector").unwrap();
    assert_eq!((connector.kind, connector.note.as_str()), (Kind::Connector, "registered, RUNNING"));
    let smoke = t.bars.last().unwrap();
    assert_eq!(smoke.kind, Kind::Phase);
    assert!(smoke.note.contains("✓ ui at 3.6s"), "{}", smoke.note);
}

#[test]
fn the_critical_path_is_the_longest_chain_of_observed_durations_along_the_plans_edges() {
    let t = Timeline::from_events(&typed(&recovery()), 0);
    let chain: Vec<&str> = t.critical.iter().map(|i| t.bars[*i].label()).collect();
    // keycloak-db 580 + keycloak 2290 beats kafka 880 + debezium 990 + the connector 390, and
    // ecom-db 380 + ecom-service 990.
    assert_eq!(
        chain,
        [
            "Checking tools, Docker and the cluster",
            "ztunnel",
            "keycloak-db",
            "keycloak",
            "Smoke-testing every route"
        ]
    );
    assert_eq!(t.critical_ms, 50 + 539 + 580 + 2290 + 180);
    assert!(t.critical_ms <= t.wall_ms);
    assert_eq!(
        t.chain_text(),
        "Checking tools, Docker and the cluster 50ms → ztunnel 539ms → keycloak-db 580ms → keycloak 2.3s → \
         Smoke-testing every route 180ms"
    );
    // With keycloak Ready sooner, the connector's chain is the longest: through kafka and debezium.
    let mut events = recovery();
    for e in &mut events {
        if e["event"] == "workload_ready" && e["workload"] == "keycloak" {
            e["t_ms"] = json!(2000);
        }
    }
    let t = Timeline::from_events(&typed(&events), 0);
    let chain: Vec<&str> = t.critical.iter().map(|i| t.bars[*i].label()).collect();
    assert_eq!(&chain[1..5], ["ztunnel", "kafka", "debezium", "ecom-connector"]);
    assert_eq!(t.bars.iter().filter(|b| b.critical).count(), chain.len());
}

#[test]
fn decisions_give_the_why_and_what_was_kept_is_a_row_without_a_bar() {
    // What the convergent `up` emits before its rollout: one decision per workload and connector.
    let mut events = recovery();
    let decision = |subject: &str, name: &str, ns: &str, action: &str, reason: &str| {
        ev(605, "decision", json!({subject: name, "namespace": ns, "action": action, "reason": reason}))
    };
    for d in [
        decision("workload", "keycloak", "identity", "restart", "its pod predates the node's start"),
        decision("workload", "redis", "infra", "keep", "Ready and registered with the current ztunnel"),
        decision("connector", "ecom-connector", "infra", "register", "missing in Connect"),
        decision("connector", "inventory-connector", "infra", "keep", "RUNNING with the desired config"),
    ] {
        events.insert(6, d);
    }
    let t = Timeline::from_events(&typed(&events), 0);
    let keycloak = t.bars.iter().find(|b| b.name == "keycloak").unwrap();
    assert_eq!(keycloak.decision.as_ref().map(|d| d.action.as_str()), Some("restart"));
    let connector = t.bars.iter().find(|b| b.name == "ecom-connector").unwrap();
    assert_eq!(connector.decision.as_ref().map(|d| d.reason.as_str()), Some("missing in Connect"));
    assert_eq!(
        t.kept,
        [
            Kept {
                name: "inventory-connector".into(),
                kind: Kind::Connector,
                // A connector has no namespace (the decision names none).
                namespace: String::new(),
                reason: "RUNNING with the desired config".into()
            },
            Kept {
                name: "redis".into(),
                kind: Kind::Workload,
                namespace: "infra".into(),
                reason: "Ready and registered with the current ztunnel".into()
            },
        ]
    );
    assert!(t.bars.iter().all(|b| b.name != "redis"));
    let page = html(&t);
    assert!(page.contains("restart: its pod predates the node&#39;s start"), "{page}");
    assert!(page.contains("register: missing in Connect · registered, RUNNING"), "{page}");
    assert!(page.contains("<tr class=\"kept\" data-name=\"redis\">"));
    assert!(
        page.contains("7 workloads restarted, 0 waited for, 1 kept · 1 connectors registered, 1 kept"),
        "{page}"
    );
    assert_eq!(
        t.to_json()["kept"][1],
        json!({"name": "redis", "kind": "workload", "namespace": "infra", "reason": "Ready and registered with the current ztunnel"})
    );
}

#[test]
fn a_kept_workload_waited_for_is_its_own_kind_of_bar() {
    let mut events = recovery();
    // kafka is kept but its rollout was under way: debezium waits for it.
    for e in &mut events {
        if e["event"] == "task_started" && e["workload"] == "kafka" {
            e["action"] = json!("wait");
        }
    }
    let t = Timeline::from_events(&typed(&events), 0);
    let kafka = t.bars.iter().find(|b| b.name == "kafka").unwrap();
    assert_eq!((kafka.kind, kafka.ready_ms), (Kind::Awaited, Some(1500)));
    let page = html(&t);
    assert!(page.contains("<g class=\"bar awaited\" data-name=\"kafka\" data-kind=\"awaited\""), "{page}");
    assert_eq!(page.matches("data-kind=\"workload\"").count(), 6);
    assert_eq!(
        t.to_json()["bars"].as_array().unwrap().iter().find(|b| b["name"] == "kafka").unwrap()["kind"],
        "awaited"
    );
}

#[test]
fn a_failed_run_shows_where_it_stopped() {
    let mut events: Vec<Value> =
        recovery().into_iter().take_while(|e| e["t_ms"].as_u64() < Some(3000)).collect();
    events.push(done(3000, ROLLOUT, "failed"));
    events.push(ev(
        3001,
        "error",
        json!({"message": "timed out after 3s: deployment identity/keycloak <to finish>", "exit_code": 124}),
    ));
    events.push(ev(3002, "summary", json!({"command": "recover", "outcome": "failed", "exit_code": 124, "duration_ms": 3002, "commands": 12, "programs": {}})));
    let t = Timeline::from_events(&typed(&events), 0);
    let keycloak = t.bars.iter().find(|b| b.name == "keycloak").unwrap();
    assert!(keycloak.failed && keycloak.ready_ms.is_none());
    assert_eq!(keycloak.took_ms(t.wall_ms), 3002 - 1210);
    assert!(t.bars.iter().filter(|b| b.name != "keycloak").all(|b| !b.failed));
    let page = html(&t);
    assert!(page.contains("class=\"bar workload critical failed\" data-name=\"keycloak\""), "{page}");
    assert!(page.contains("&lt;to finish&gt;"));
    assert_eq!(
        t.to_json()["bars"].as_array().unwrap().iter().find(|b| b["name"] == "keycloak").unwrap()["outcome"],
        "failed"
    );
}

#[test]
fn a_bootstrap_tier_without_restarts_rolls_out_from_its_steps_start() {
    let events = vec![
        step(0, "Installing Istio ambient (waiting ≤ 3m)"),
        done(900, "Installing Istio ambient (waiting ≤ 3m)", "ok"),
        step(1000, "Applying 10-data (waiting ≤ 3m)"),
        ev(1400, "workload_ready", json!({"workload": "ecom-db", "namespace": "ecom", "duration_ms": 300})),
        ev(
            1700,
            "workload_ready",
            json!({"workload": "keycloak-db", "namespace": "identity", "duration_ms": 600}),
        ),
        done(1750, "Applying 10-data (waiting ≤ 3m)", "ok"),
        ev(
            1760,
            "summary",
            json!({"command": "up", "outcome": "ok", "exit_code": 0, "duration_ms": 1760, "commands": 9,
                   "programs": {}}),
        ),
    ];
    let t = Timeline::from_events(&typed(&events), 0);
    assert_eq!(names(&t, |_| true), ["Installing Istio ambient", "ecom-db", "keycloak-db"]);
    let db = &t.bars[2];
    assert_eq!((db.start_ms, db.ready_ms, db.waited_ms()), (1000, Some(1700), 0));
    assert_eq!(t.critical_ms, 900 + 700);
}

#[test]
fn the_page_is_self_contained_and_carries_each_bar_as_data() {
    let mut events = recovery();
    // A name no page may interpret.
    events.insert(7, started(620, "<script>alert(1)</script>", "ecom", &[], None));
    events.insert(8, ready(700, "<script>alert(1)</script>", "ecom"));
    let t = Timeline::from_events(&typed(&events), 1_709_210_096);
    let page = html(&t);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(!page.contains("<script"), "no script, and names are escaped");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for external in ["src=", "@import", "http://", "https://", "<link rel=\"stylesheet\""] {
        assert!(!page.contains(external), "{external} in the page");
    }
    assert!(page.match_indices("href=").all(|(i, _)| page[i..].starts_with("href=\"data:")));
    assert!(page.match_indices("url(").all(|(i, _)| page[i..].starts_with("url(#")));
    assert_eq!(page.matches("<g class=\"bar ").count(), t.bars.len());
    assert_eq!(page.matches("data-kind=\"workload\"").count(), 8);
    assert_eq!(page.matches("data-critical=\"true\"").count(), t.critical.len());
    assert!(page.contains(
        "<g class=\"bar workload critical\" data-name=\"keycloak\" data-kind=\"workload\" data-namespace=\"identity\" \
         data-critical=\"true\" data-released-by=\"keycloak-db\" data-queued-ms=\"610\" data-start-ms=\"1210\" \
         data-ready-ms=\"3500\" data-waited-ms=\"600\" data-took-ms=\"2290\">"
    ));
    // The hover names what released it.
    assert!(page.contains("waited 600ms (released by keycloak-db Ready)"));
    assert!(page.contains("2024-02-29T12:34:56Z"));
    // One hand-over line between consecutive bars of the critical path.
    assert_eq!(page.matches("<path class=\"edge\"").count(), t.critical.len() - 1);
}

#[test]
fn the_text_is_one_line_a_bar_proportional_and_plain_without_colour() {
    let t = Timeline::from_events(&typed(&recovery()), 0);
    let lines = text(&t, 100, false);
    assert_eq!(lines.len(), t.bars.len() + 2);
    assert!(
        lines[0].starts_with("Timings: wall 3.7s · 18 kubectl spawns · critical path 3.6s (*)"),
        "{}",
        lines[0]
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 100 && !l.contains('\x1b')), "{lines:#?}");
    let keycloak = lines.iter().find(|l| l.contains(" keycloak ")).unwrap();
    assert!(keycloak.starts_with("  * keycloak"), "{keycloak}");
    let bar: String = keycloak.split('|').nth(1).unwrap().to_string();
    let cells = bar.chars().count();
    // 610 ms of 3710 → waiting from cell ~13, rolling from 1210 (~26), Ready from 3500 (~75).
    let at = |ms: f64| bar.chars().nth((ms / 3710.0 * cells as f64) as usize).unwrap();
    assert_eq!((at(300.0), at(900.0), at(2000.0), at(3600.0)), (' ', '·', '█', '─'), "{bar}");
    let redis_free = lines.iter().find(|l| l.contains(" ecom-db ")).unwrap();
    assert!(redis_free.starts_with("    ecom-db"), "not critical: {redis_free}");
    // With colour, the critical rollout is painted and NO_COLOR's plain text is what remains.
    let painted = text(&t, 100, true);
    assert!(painted.iter().any(|l| l.contains("\x1b[33;1m█")));
    let strip = |l: &str| {
        let mut out = String::new();
        let mut skip = false;
        for c in l.chars() {
            match (skip, c) {
                (_, '\x1b') => skip = true,
                (true, 'm') => skip = false,
                (false, c) => out.push(c),
                _ => {}
            }
        }
        out
    };
    assert_eq!(painted.iter().map(|l| strip(l)).collect::<Vec<_>>(), lines);
}

#[test]
fn the_json_document_has_every_bar_and_the_critical_path() {
    let t = Timeline::from_events(&typed(&recovery()), 1_709_210_096);
    let doc = t.to_json();
    assert_eq!(doc["started_at"], "2024-02-29T12:34:56Z");
    assert_eq!(doc["critical_path"]["ms"], 3639);
    assert_eq!(doc["critical_path"]["chain"][3], "keycloak");
    let bars = doc["bars"].as_array().unwrap();
    assert_eq!(bars.len(), 10);
    let keycloak = bars.iter().find(|b| b["name"] == "keycloak").unwrap();
    assert_eq!(
        keycloak,
        &json!({"name": "keycloak", "kind": "workload", "namespace": "identity", "needs": ["keycloak-db"],
            "released_by": "keycloak-db", "queued_ms": 610, "start_ms": 1210, "ready_ms": 3500,
            "waited_ms": 600, "took_ms": 2290, "outcome": "ok", "critical": true, "note": "", "decision": null})
    );
}

#[test]
fn dates_are_utc() {
    assert_eq!(utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(utc(1_709_210_096), "2024-02-29T12:34:56Z");
    assert_eq!(stamp(1_709_210_096), "20240229T123456Z");
    assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
}

#[test]
fn the_axis_ticks_about_eight_times_in_round_numbers() {
    assert_eq!(html::tick_ms(3710), 500);
    assert_eq!(html::tick_ms(53_300), 10_000);
    assert_eq!(html::tick_ms(400_000), 60_000);
    let labels: Vec<String> = [0, 500, 10_000, 60_000, 90_000].into_iter().map(html::tick_label).collect();
    assert_eq!(labels, ["0s", "500ms", "10s", "1m", "1m30s"]);
}
