//! `bookstore status`: one compact table on stdout (each workload's namespace, ready/desired,
//! restarts, age and the nodes its pods run on; each connector's state; each route's answer; the
//! node engine and the one the cluster's Nodes name), or the same as one JSON document with
//! `--json` (each pod with its node). Read-only; exit 0 whenever the table could be built.

use std::io::Write;

use serde::Serialize;

use crate::cluster::Pod;
use crate::error::Result;
use crate::http::Response;
use crate::judge::routes::Route as Answer;
use crate::observe::routes::Probe;
use crate::observe::{Ctx, Observation};
use crate::stack::Stack;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    /// `None` when the cluster has no such deployment.
    pub ready: Option<i64>,
    pub desired: Option<i64>,
    /// Container restarts of its pods.
    pub restarts: u64,
    /// Seconds since its newest pod was created.
    pub age_seconds: Option<u64>,
    /// Its pods (not going away), newest first, each with the node it runs on.
    pub pods: Vec<PodRow>,
}

/// One pod of a workload.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PodRow {
    pub name: String,
    /// `spec.nodeName`; empty while it is not scheduled.
    pub node: String,
    pub ready: bool,
    pub restarts: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ConnectorRow {
    pub name: String,
    /// `RUNNING`, `FAILED`, `PAUSED`, … `missing` (not registered), `unknown` (Connect did not
    /// answer).
    pub state: String,
    pub detail: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub url: String,
    pub host: Option<String>,
    /// The HTTP status, `None` without an answer.
    pub status: Option<u16>,
    pub ok: bool,
    /// `200`, `503 upstream reset (connection termination)`, `no answer (…)`.
    pub answer: String,
}

/// The node engine, as kind chooses it, and the engine the cluster's Nodes name.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct EngineRow {
    /// kind's provider: `docker`, `podman`, `nerdctl`.
    pub provider: String,
    /// The program run: `docker`, `podman`, `nerdctl`, `finch`, `nerdctl.lima`.
    pub program: String,
    /// Why this engine (`KIND_EXPERIMENTAL_PROVIDER=podman`, `` `docker -v` prints … ``).
    pub chosen_by: String,
    /// Docker's endpoint pinned for the run, when Docker.
    pub endpoint: Option<String>,
    /// The engines the cluster's Nodes name in `spec.providerID` (`kind://<engine>/…`).
    pub built_by: Vec<String>,
    /// Every Node names this engine (or none says).
    pub agrees: bool,
}

/// A shared cluster's Node: Ready, and when it last started by the API's evidence
/// (`judge::boots`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    pub ready: bool,
    pub boot_id: String,
    /// Seconds since the epoch, when the API shows a restart.
    pub last_started: Option<u64>,
    /// What it rests on (the kubelet's Rebooted/Starting event, the Ready transition), or why
    /// it is not known.
    pub evidence: String,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub cluster: String,
    /// The kube context read.
    pub context: String,
    /// The node engine (none on a shared cluster: no engine of ours built it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineRow>,
    /// A shared cluster's Nodes (kind's node is the engine's row).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeRow>,
    pub workloads: Vec<Workload>,
    pub connectors: Vec<ConnectorRow>,
    pub routes: Vec<Route>,
}

/// Each stack workload's row: its pods are `judge::workloads::pods_of`'s (a pod going away is
/// not counted, as `up` and `doctor` do not judge it).
pub fn workloads(stack: &Stack, obs: &Observation) -> Vec<Workload> {
    stack
        .workloads
        .iter()
        .map(|w| {
            let d = obs.deployment(&w.namespace, &w.name);
            let mut mine: Vec<&Pod> = d.map(|d| crate::judge::workloads::pods_of(obs, d)).unwrap_or_default();
            mine.sort_by_key(|p| std::cmp::Reverse(p.created));
            let newest = mine.iter().filter_map(|p| p.created).max();
            Workload {
                name: w.name.clone(),
                namespace: w.namespace.clone(),
                ready: d.map(|d| d.ready),
                desired: d.map(|d| d.desired),
                restarts: mine.iter().map(|p| p.restarts()).sum(),
                age_seconds: newest.map(|c| obs.at.saturating_sub(c)),
                pods: mine
                    .iter()
                    .map(|p| PodRow {
                        name: p.name.clone(),
                        node: p.node.clone(),
                        ready: p.ready(),
                        restarts: p.restarts(),
                    })
                    .collect(),
            }
        })
        .collect()
}

pub fn connectors(stack: &Stack, answer: &std::result::Result<Response, String>) -> Vec<ConnectorRow> {
    let listing = crate::judge::connectors::listing(answer);
    stack
        .connect
        .connectors
        .iter()
        .map(|c| match listing.as_ref().map(|s| s.get(&c.name)) {
            Err(unknown) => {
                ConnectorRow { name: c.name.clone(), state: "unknown".into(), detail: unknown.clone() }
            }
            Ok(None) => ConnectorRow {
                name: c.name.clone(),
                state: "missing".into(),
                detail: "not registered (`bookstore connectors`)".into(),
            },
            Ok(Some(s)) => ConnectorRow {
                name: c.name.clone(),
                state: if s.failed() {
                    "FAILED".into()
                } else if s.connector.is_empty() {
                    "UNKNOWN".into()
                } else {
                    s.connector.clone()
                },
                detail: s.summary(),
            },
        })
        .collect()
}

pub fn route(stack: &Stack, probe: &Probe) -> Route {
    let judged = crate::judge::routes::probe(stack, probe);
    let status = probe.answer.as_ref().ok().map(|r| r.status);
    let text = match (&judged, status) {
        (Answer::Works, Some(s)) => s.to_string(),
        (Answer::Reset { status, reason }, _) => format!("{status} upstream reset ({reason})"),
        (Answer::Status { status, summary }, _) => format!("{status} {summary}").trim_end().to_string(),
        (Answer::Connectors(problems), Some(s)) => format!("{s}, but connectors: {problems}"),
        (Answer::NoAnswer(e), _) => format!("no answer ({e})"),
        (_, None) => String::new(),
    };
    let ok = judged.works();
    Route {
        name: probe.check.name.clone(),
        url: probe.url.clone(),
        host: probe.check.host.clone(),
        status,
        ok,
        answer: text,
    }
}

/// The table's rows, from the one observation `doctor` and `up` read too.
pub fn gather(ctx: &Ctx) -> Result<Status> {
    let stack = ctx.stack;
    // The nodes' state is not shown; without it the cluster is read all the same. A shared
    // cluster has no engine of ours: its Nodes are read from the API.
    let shared = stack.cluster.shared();
    let containers = if shared { Vec::new() } else { crate::observe::nodes(ctx).unwrap_or_default() };
    let obs = crate::observe::cluster(ctx, containers).map_err(|e| {
        ctx.kube.explain(e).with_next("is the cluster up? `bookstore doctor` says what is wrong")
    })?;
    // The Connect route's own answer (`GET /connectors?expand=status`) gives the connectors' states.
    let connect_answer = crate::judge::routes::connect(&obs.routes)
        .map(|p| p.answer.clone())
        .unwrap_or_else(|| Err("the stack has no Connect route".into()));
    Ok(Status {
        cluster: stack.cluster.name.clone(),
        context: stack.cluster.context(),
        engine: (!shared).then(|| engine_row(ctx.engine(), &obs.provider_ids)),
        nodes: if shared { nodes(&obs) } else { Vec::new() },
        workloads: workloads(stack, &obs),
        connectors: connectors(stack, &connect_answer),
        routes: obs.routes.iter().map(|p| route(stack, p)).collect(),
    })
}

/// Each Node of the observation with its last start as `judge::boots` dates it.
pub fn nodes(obs: &Observation) -> Vec<NodeRow> {
    let events = obs.node_events.as_deref().unwrap_or_default();
    let starts = crate::judge::boots::last_started(&obs.api_nodes, events, &obs.pods);
    obs.api_nodes
        .iter()
        .zip(starts)
        .map(|(n, s)| NodeRow {
            name: n.name.clone(),
            ready: n.ready == Some(true),
            boot_id: n.boot_id.clone(),
            last_started: s.started_at,
            evidence: s.source.unwrap_or_default(),
        })
        .collect()
}

pub fn engine_row(
    engine: &crate::engine::Engine,
    ids: &crate::observe::Read<Vec<(String, String)>>,
) -> EngineRow {
    let ids = ids.as_deref().unwrap_or_default();
    let mut built_by: Vec<String> = ids
        .iter()
        .filter_map(|(_, id)| crate::judge::engine::provider_id(id).map(|(p, _, _)| p.to_string()))
        .collect();
    built_by.sort();
    built_by.dedup();
    EngineRow {
        provider: engine.kind.provider().to_string(),
        program: engine.program.clone(),
        chosen_by: engine.why.clone(),
        endpoint: match &engine.endpoint {
            Some(Ok(e)) => Some(e.describe()),
            _ => None,
        },
        built_by,
        agrees: crate::judge::engine::disagreeing(engine.kind, ids).is_empty(),
    }
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { c.clone() } else { format!("{c:<w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

pub fn render(status: &Status) -> String {
    let workloads: Vec<Vec<String>> = status
        .workloads
        .iter()
        .map(|w| {
            let ready = match (w.ready, w.desired) {
                (Some(r), Some(d)) => format!("{r}/{d}"),
                _ => "missing".into(),
            };
            let age = w.age_seconds.map(crate::utc::age).unwrap_or_else(|| "-".into());
            let mut nodes: Vec<&str> =
                w.pods.iter().map(|p| if p.node.is_empty() { "<none>" } else { p.node.as_str() }).collect();
            nodes.sort_unstable();
            nodes.dedup();
            let nodes = if nodes.is_empty() { "-".to_string() } else { nodes.join(",") };
            vec![w.name.clone(), w.namespace.clone(), ready, w.restarts.to_string(), age, nodes]
        })
        .collect();
    let connectors: Vec<Vec<String>> =
        status.connectors.iter().map(|c| vec![c.name.clone(), c.state.clone(), c.detail.clone()]).collect();
    let routes: Vec<Vec<String>> = status
        .routes
        .iter()
        .map(|r| {
            let host = r.host.as_deref().map(|h| format!(" (Host: {h})")).unwrap_or_default();
            vec![r.name.clone(), r.answer.clone(), format!("{}{host}", r.url)]
        })
        .collect();
    let last = match &status.engine {
        Some(e) => {
            let built = match (e.built_by.is_empty(), e.agrees) {
                (true, _) => "-".to_string(),
                (false, true) => e.built_by.join(", "),
                (false, false) => format!("{} (not this engine: `bookstore doctor`)", e.built_by.join(", ")),
            };
            let chosen = match &e.endpoint {
                Some(endpoint) => format!("{}; {endpoint}", e.chosen_by),
                None => e.chosen_by.clone(),
            };
            let engine = vec![vec![e.program.clone(), built, chosen]];
            table(&["ENGINE", "CLUSTER BUILT BY", "CHOSEN AS KIND CHOOSES"], &engine)
        }
        None => {
            let nodes: Vec<Vec<String>> = status
                .nodes
                .iter()
                .map(|n| {
                    let ready = if n.ready { "True" } else { "False" };
                    let started = n.last_started.map(crate::utc::format).unwrap_or_else(|| "-".into());
                    vec![n.name.clone(), ready.to_string(), started, n.evidence.clone()]
                })
                .collect();
            let title = format!("NODE ({})", status.context);
            table(&[title.as_str(), "READY", "LAST STARTED", "EVIDENCE"], &nodes)
        }
    };
    [
        table(&["WORKLOAD", "NAMESPACE", "READY", "RESTARTS", "AGE", "NODE"], &workloads),
        table(&["CONNECTOR", "STATE", "DETAIL"], &connectors),
        table(&["ROUTE", "ANSWER", "URL"], &routes),
        last,
    ]
    .join("\n\n")
}

/// Print the table (or the JSON document) on stdout.
pub fn run(ctx: &Ctx) -> Result<()> {
    let status = gather(ctx)?;
    let text = if ctx.ui.json() {
        serde_json::to_string_pretty(&status).unwrap_or_default()
    } else {
        render(&status)
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", crate::secret::redact(&text));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Deployment;
    use crate::stack::{Source, load};

    #[test]
    fn rows_count_ready_restarts_and_the_newest_pods_age() {
        let stack = load(Source::Embedded).unwrap();
        let d = Deployment {
            namespace: "ecom".into(),
            name: "ecom-db".into(),
            desired: 1,
            ready: 1,
            selector: [("app".to_string(), "ecom-db".to_string())].into(),
            ..Deployment::default()
        };
        let pod = |name: &str, created: u64, restarts: u64| Pod {
            namespace: "ecom".into(),
            name: name.into(),
            node: "bookstore-worker".into(),
            labels: [("app".to_string(), "ecom-db".to_string())].into(),
            created: Some(created),
            containers: vec![crate::cluster::Container { restarts, ..crate::cluster::Container::default() }],
            ..Pod::default()
        };
        let going = Pod { terminating: true, ..pod("c", 50, 7) };
        let mut obs = Observation::of(vec![d], vec![pod("a", 100, 2), pod("b", 160, 1), going]);
        obs.at = 200;
        let rows = workloads(&stack, &obs);
        let db = rows.iter().find(|w| w.name == "ecom-db").unwrap();
        assert_eq!((db.ready, db.desired, db.restarts, db.age_seconds), (Some(1), Some(1), 3, Some(40)));
        let pods: Vec<(&str, &str)> = db.pods.iter().map(|p| (p.name.as_str(), p.node.as_str())).collect();
        assert_eq!(
            pods,
            [("b", "bookstore-worker"), ("a", "bookstore-worker")],
            "newest first, none going away"
        );
        let missing = rows.iter().find(|w| w.name == "kafka").unwrap();
        assert_eq!(missing.ready, None);
        let ids = Ok(vec![("n".to_string(), "kind://podman/c/n".to_string())]);
        let engine = engine_row(&crate::engine::Engine::of(crate::engine::Kind::Docker), &ids);
        assert!(!engine.agrees && engine.built_by == ["podman"]);
        let text = render(&Status {
            cluster: "c".into(),
            context: "kind-c".into(),
            engine: Some(engine),
            nodes: vec![],
            workloads: rows,
            connectors: vec![],
            routes: vec![],
        });
        assert!(
            text.lines().any(|l| l.starts_with("docker") && l.contains("podman (not this engine")),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["ecom-db", "ecom", "1/1", "3", "40s", "bookstore-worker"]),
            "{text}"
        );
        assert!(text.lines().any(|l| l.starts_with("kafka") && l.contains("missing")));
    }

    #[test]
    fn connectors_and_routes_read_as_users_see_them() {
        let stack = load(Source::Embedded).unwrap();
        let empty = Ok(Response { status: 200, body: "{}".into() });
        let rows = connectors(&stack, &empty);
        assert!(rows.iter().all(|r| r.state == "missing"));
        let rows = connectors(&stack, &Err("connection refused".into()));
        assert!(rows.iter().all(|r| r.state == "unknown" && r.detail.contains("connection refused")));
        let check = &stack.smoke.checks[0];
        let reset = Ok(Response {
            status: 503,
            body: "upstream connect error or disconnect/reset before headers. reset reason: connection termination".into(),
        });
        let probe = |url: &str, answer| Probe { check: check.clone(), url: url.into(), answer };
        let r = route(&stack, &probe("http://127.0.0.1:30000/", reset));
        assert_eq!((r.ok, r.answer.as_str()), (false, "503 upstream reset (connection termination)"));
        let r = route(&stack, &probe("u", Ok(Response { status: 200, body: "<html>".into() })));
        assert_eq!((r.ok, r.answer.as_str(), r.status), (true, "200", Some(200)));
    }
}
