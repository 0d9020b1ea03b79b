//! Root cause 1, the mesh, rendered from `judge::mesh` and `judge::workloads`: ztunnel stale on
//! its node, the workloads the time rule calls stale, every route's answer (Envoy's upstream
//! reset with its reason), the HBONE connections ztunnel's log says failed to a pod since it was
//! created (each target IP mapped back to its pod), and the pods istio-cni could not reconcile.
//! What `doctor` calls broken here is what `bookstore up` restarts.

use std::collections::BTreeMap;

use crate::cluster::Pod;
use crate::judge::mesh::{self, Ztunnel};
use crate::judge::routes::Route;
use crate::judge::workloads::{self, Health};
use crate::observe::evidence::HboneFailure;
use crate::observe::routes::Probe;
use crate::observe::{CNI_DAEMONSET, LOG_TAIL};
use crate::observe::{Ctx, Observation};
use crate::stack::Stack;

use super::{Finding, Report};

/// What restarts what these findings call stale, and how.
const UP_NOTE: &str = "restarts ztunnel first on the nodes where it is unhealthy or not shown to work (its pod there deleted: \
                       its DaemonSet recreates it), then what is stale, databases before the apps that migrate against \
                       them (`bookstore up --dry-run` says why for each)";

/// ztunnel stale or unhealthy on a node: every pod it serves there is stale with it.
pub fn ztunnel_finding(stack: &Stack, ztunnel: &Ztunnel) -> Option<Finding> {
    let why = ztunnel.stale()?;
    let mesh = &stack.mesh;
    let nodes: Vec<&str> = ztunnel.stale_nodes().map(|n| n.node.as_str()).filter(|n| !n.is_empty()).collect();
    let on = if nodes.is_empty() { String::new() } else { format!(" on {}", nodes.join(", ")) };
    Some(
        Finding::error(
            "ztunnel-stale",
            format!("{}/{}", mesh.namespace, mesh.daemonset),
            format!(
                "{} must be restarted{on} ({why}); every pod in the mesh there is then stale with it (root cause 1)",
                mesh.daemonset
            ),
        )
        .evidence_lines(ztunnel.nodes.iter().filter_map(|n| {
            n.stale
                .as_ref()
                .map(|why| format!("node {}: {why}", if n.node.is_empty() { "?" } else { &n.node }))
        }))
        .fix("bookstore up")
        .note(UP_NOTE),
    )
}

/// The workloads the time rule calls stale: created before ztunnel was Ready (or ztunnel stale).
pub fn stale_finding(stack: &Stack, health: &[Health]) -> Option<Finding> {
    let stale: Vec<(String, String)> = stack
        .workloads
        .iter()
        .zip(health)
        .filter_map(|(w, h)| match h {
            Health::Stale(s) => s.time.clone().map(|why| (format!("{}/{}", w.namespace, w.name), why)),
            _ => None,
        })
        .collect();
    if stale.is_empty() {
        return None;
    }
    let subjects: Vec<&str> = stale.iter().map(|(w, _)| w.as_str()).collect();
    Some(
        Finding::error(
            "mesh-registration-stale",
            subjects.join(", "),
            format!(
                "{} workload(s) in the mesh have pods the mesh has not adopted: created before ztunnel's pods were \
                 Ready (a node restart restarts them in place), and neither ztunnel's workloadState nor istio-cni's \
                 log shows them captured since their sandbox started (root cause 1)",
                stale.len()
            ),
        )
        .evidence_lines(stale.iter().map(|(w, why)| format!("deployment {w}: {why}")))
        .fix("bookstore up")
        .note(UP_NOTE),
    )
}

/// Failing routes, one finding each kind: Envoy's resets, other failures, and, as a warning, a
/// route whose workload up keeps because its pods became Ready too recently for the gateway to
/// have them as endpoints.
pub fn routes_findings(
    stack: &Stack,
    facts: &Observation,
    health: &[Health],
    probes: &[Probe],
) -> Vec<Finding> {
    let mut resets: Vec<(&Probe, String)> = Vec::new();
    let mut failing: Vec<&Probe> = Vec::new();
    let mut settling: Vec<&Probe> = Vec::new();
    for p in probes {
        let judged = crate::judge::routes::probe(stack, p);
        if judged.works() {
            continue;
        }
        let kept = p.check.serves.as_deref().and_then(|s| stack.index(s)).filter(|i| {
            let w = &stack.workloads[*i];
            let routed = facts
                .deployment(&w.namespace, &w.name)
                .is_some_and(|d| mesh::routed(facts, &workloads::serving(facts, d)));
            matches!(health.get(*i), Some(Health::Healthy(_))) && !routed
        });
        match judged {
            _ if kept.is_some() => settling.push(p),
            Route::Reset { reason, .. } => resets.push((p, reason)),
            _ => failing.push(p),
        }
    }
    let mut out = Vec::new();
    if !resets.is_empty() {
        let mut reasons: Vec<&str> = resets.iter().map(|(_, r)| r.as_str()).collect();
        reasons.dedup();
        let routes: Vec<&str> = resets.iter().map(|(p, _)| p.check.name.as_str()).collect();
        out.push(
            Finding::error(
                "gateway-upstream-reset",
                routes.join(", "),
                format!(
                    "the gateway answers {} route(s) with Envoy's upstream reset (reason: {}): it cannot reach \
                     the workloads behind them, the signature of stale Istio ambient (HBONE) registrations \
                     after a Docker restart",
                    routes.len(),
                    reasons.join(", ")
                ),
            )
            .evidence_lines(resets.iter().map(|(p, _)| p.line()))
            .fix("bookstore up")
            .note(UP_NOTE),
        );
    }
    if !failing.is_empty() {
        let routes: Vec<&str> = failing.iter().map(|p| p.check.name.as_str()).collect();
        out.push(
            Finding::error(
                "route-failing",
                routes.join(", "),
                format!("{} route(s) do not answer with success", routes.len()),
            )
            .evidence_lines(failing.iter().map(|p| {
                let serves = p.check.serves.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
                format!("{}{serves}: {}", p.check.name, p.line())
            }))
            .fix("bookstore up")
            .note("restarts what is stale behind them; if a pod above is in trouble, fix that first; `bookstore smoke` rechecks every route"),
        );
    }
    if !settling.is_empty() {
        let routes: Vec<&str> = settling.iter().map(|p| p.check.name.as_str()).collect();
        out.push(
            Finding::warning(
                "gateway-endpoint-settling",
                routes.join(", "),
                format!(
                    "{} route(s) fail while the pods behind them became Ready less than {}s ago: the gateway may \
                     not have them as endpoints yet",
                    routes.len(),
                    mesh::GATEWAY_GRACE
                ),
            )
            .evidence_lines(settling.iter().map(|p| p.line()))
            .fix("bookstore doctor")
            .note("run it again in a few seconds; a failure that stays is then judged"),
        );
    }
    out
}

/// ztunnel's failed HBONE connections, grouped by the pod they were to: a current pod that held
/// the target IP when the line was logged. Lines to IPs no such pod holds are history (those pods
/// were replaced) and only counted.
pub fn hbone_finding(stack: &Stack, facts: &Observation) -> (Option<Finding>, usize) {
    let mut per_pod: BTreeMap<(String, String), (&Pod, Vec<&HboneFailure>)> = BTreeMap::new();
    let nodes = mesh::nodes(stack, facts);
    for pod in workloads::current(stack, facts) {
        let lines = mesh::hbone(facts, &nodes, pod);
        if !lines.is_empty() {
            per_pod.insert((pod.namespace.clone(), pod.name.clone()), (pod, lines));
        }
    }
    let logged = facts.hbone.as_ref().map_or(0, Vec::len);
    let unmapped = logged - per_pod.values().map(|(_, l)| l.len()).sum::<usize>();
    if per_pod.is_empty() {
        return (None, unmapped);
    }
    let pods: Vec<String> = per_pod.keys().map(|(ns, n)| format!("{ns}/{n}")).collect();
    // One log line as it is, then each target IP mapped back to its pod.
    let mut evidence = Vec::new();
    if let Some(first) = per_pod.values().next().and_then(|(_, l)| l.last()) {
        evidence.push(format!("ztunnel: {}", first.line));
    }
    for ((ns, name), (pod, list)) in &per_pod {
        let owner =
            workloads::owner(facts, pod).map(|d| format!(" (deployment {})", d.name)).unwrap_or_default();
        let last = list[list.len() - 1];
        evidence.push(format!(
            "dst.addr={}:15008 is pod {ns}/{name}{owner}: {} line(s), error=\"{}\"",
            last.ip,
            list.len(),
            last.error
        ));
    }
    if unmapped > 0 {
        evidence
            .push(format!("(and {unmapped} line(s) to IPs no current pod held then: pods since replaced)"));
    }
    let finding = Finding::error(
        "ztunnel-hbone-failing",
        pods.join(", "),
        format!(
            "ztunnel's HBONE connections (port 15008) to {} pod(s) fail: their mesh registration is stale \
             (root cause 1)",
            per_pod.len()
        ),
    )
    .evidence_lines(evidence)
    .fix("bookstore up")
    .note(UP_NOTE);
    (Some(finding), unmapped)
}

pub fn cni_finding(stack: &Stack, facts: &Observation) -> Option<Finding> {
    let current: Vec<(&Pod, &str)> = workloads::current(stack, facts)
        .into_iter()
        .flat_map(|p| mesh::cni(facts, p).into_iter().map(move |line| (p, line)))
        .collect();
    if current.is_empty() {
        return None;
    }
    let context = stack.cluster.context();
    let mut restarts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut deletes = Vec::new();
    for (pod, _) in &current {
        match workloads::owner(facts, pod) {
            Some(d) => {
                restarts.entry(pod.namespace.clone()).or_default().push(format!("deployment/{}", d.name))
            }
            None => deletes
                .push(format!("kubectl --context {context} -n {} delete pod {}", pod.namespace, pod.name)),
        }
    }
    let mut fixes: Vec<String> = restarts
        .into_iter()
        .map(|(ns, mut targets)| {
            targets.sort();
            targets.dedup();
            format!("kubectl --context {context} -n {ns} rollout restart {}", targets.join(" "))
        })
        .collect();
    fixes.extend(deletes);
    let pods: Vec<String> = current.iter().map(|(p, _)| format!("{}/{}", p.namespace, p.name)).collect();
    Some(
        Finding::error(
            "istio-cni-reconcile-failed",
            pods.join(", "),
            format!(
                "istio-cni could not re-apply the in-pod traffic rules of {} pod(s) (their network namespace \
                 changed): they are outside the mesh",
                current.len()
            ),
        )
        .evidence_lines(current.iter().map(|(_, line)| line.to_string()))
        .fix(fixes.join(" && "))
        .note("the log line itself says so: a new pod gets its rules from istio-cni when it is created"),
    )
}

/// The mesh settling after its node started: what it adopted is judged once it has.
pub fn settling_finding(stack: &Stack, facts: &Observation) -> Option<Finding> {
    let why = mesh::settled(stack, facts).err()?;
    Some(
        Finding::warning(
            "mesh-settling",
            format!("{}/{}", stack.mesh.namespace, CNI_DAEMONSET),
            format!(
                "the mesh is settling ({why}): which pods it adopted since their node started is judged once \
             istio-cni-node and ztunnel are Ready and every meshed pod has a running sandbox"
            ),
        )
        .fix("bookstore doctor")
        .note(format!(
            "run it again in a few seconds; `bookstore up` waits for it (≤ {}) before it judges",
            crate::ui::human(stack.mesh.timeout)
        )),
    )
}

/// The pods kept on evidence that the mesh adopted them since their sandbox started, one line
/// each (what `up --dry-run` says for each keep).
fn adopted_lines(stack: &Stack, facts: &Observation, ztunnel: &Ztunnel) -> Vec<String> {
    let nodes = mesh::nodes(stack, facts);
    workloads::current(stack, facts)
        .into_iter()
        .filter(|p| p.meshed)
        .filter_map(|p| match mesh::in_mesh(facts, ztunnel, &nodes, p) {
            mesh::InMesh::Adopted(evidence) => Some(evidence),
            _ => None,
        })
        .collect()
}

pub fn check(ctx: &Ctx, facts: &Observation, ztunnel: &Ztunnel, health: &[Health], report: &mut Report) {
    let stack = ctx.stack;
    if let Some(f) = settling_finding(stack, facts) {
        report.add(f);
    }
    match ztunnel_finding(stack, ztunnel) {
        Some(f) => report.add(f),
        None => report.pass(&format!("{}: {}", stack.mesh.daemonset, ztunnel.kept())),
    }
    match stale_finding(stack, health) {
        Some(f) => report.add(f),
        None => {
            let adopted = adopted_lines(stack, facts, ztunnel);
            report.pass(&format!(
                "mesh: every meshed workload's pods were created after ztunnel was Ready{}",
                if adopted.is_empty() {
                    String::new()
                } else {
                    format!(", or adopted since their sandbox started ({} pods)", adopted.len())
                }
            ));
            for line in adopted {
                report.pass(&format!("  {line}"));
            }
        }
    }
    let probes: Vec<Probe> = facts.routes.iter().filter(|p| !p.check.connectors_running).cloned().collect();
    let routes = routes_findings(stack, facts, health, &probes);
    if routes.is_empty() && !probes.is_empty() {
        report.pass(&format!("routes: all {} answer", probes.len()));
    }
    report.add_all(routes);
    let mesh = &stack.mesh;
    match &facts.hbone {
        Ok(_) => match hbone_finding(stack, facts) {
            (Some(f), _) => report.add(f),
            (None, old) => {
                let old = if old > 0 { format!(" ({old} to pods since replaced)") } else { String::new() };
                report.pass(&format!(
                    "{}: no failed HBONE connection to a current pod in its last {LOG_TAIL} log lines{old}",
                    mesh.daemonset
                ));
            }
        },
        Err(e) => report.skip(&format!("ztunnel's log: {e}")),
    }
    match &facts.cni {
        Ok(_) => match cni_finding(stack, facts) {
            Some(f) => report.add(f),
            None => report.pass(&format!("{CNI_DAEMONSET}: no failed in-pod reconcile for a current pod")),
        },
        Err(e) => report.skip(&format!("istio-cni's log: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Deployment;
    use crate::http::Response;
    use crate::observe::evidence::{parse_cni, parse_ztunnel};
    use crate::stack::{Source, load};

    const TIMEOUT_LINE: &str = r#"2026-11-26T14:05:01.736Z  error access connection complete src.addr=10.244.0.1:40113 src.workload="bookstore-gateway-istio" dst.addr=10.244.0.18:15008 dst.hbone_addr=10.244.0.18:80 dst.workload="ui-service-x" direction="outbound" bytes_sent=0 bytes_recv=0 duration="10001ms" error="connection failed: deadline has elapsed""#;
    const REFUSED_LINE: &str = r#"2026-11-26T14:05:02Z error access connection complete dst.addr=10.244.0.20:15008 direction="outbound" error="io error: Connection refused (os error 111)""#;

    fn facts() -> Observation {
        let pod = |ns: &str, name: &str, ip: &str, app: &str| Pod {
            namespace: ns.into(),
            name: name.into(),
            ips: vec![ip.into()],
            labels: [("app".to_string(), app.to_string())].into(),
            phase: "Running".into(),
            ..Pod::default()
        };
        Observation::of(
            vec![Deployment {
                namespace: "ecom".into(),
                name: "ui-service".into(),
                selector: [("app".to_string(), "ui-service".to_string())].into(),
                ..Deployment::default()
            }],
            vec![
                pod("ecom", "ui-service-x", "10.244.0.18", "ui-service"),
                pod("ecom", "ecom-db-y", "10.244.0.20", "ecom-db"),
            ],
        )
    }

    #[test]
    fn ztunnel_lines_are_parsed_and_mapped_back_to_pods() {
        let log = format!(
            "{TIMEOUT_LINE}\ninfo something else\n{REFUSED_LINE}\n{}\n",
            TIMEOUT_LINE.replace("10.244.0.18", "10.244.9.9")
        );
        let failures = parse_ztunnel(&log);
        assert_eq!(failures.len(), 3);
        // `kubectl logs --all-pods` prefixes each pod's lines: the same failures, timestamps read.
        let prefixed: String =
            log.lines().map(|l| format!("[pod/ztunnel-7xk2p/istio-proxy] {l}\n")).collect();
        assert_eq!(parse_ztunnel(&prefixed), failures);
        assert_eq!(failures[0].ip, "10.244.0.18");
        assert_eq!(failures[0].error, "connection failed: deadline has elapsed");
        assert_eq!(failures[1].error, "io error: Connection refused (os error 111)");
        let stack = load(Source::Embedded).unwrap();
        let mut facts = facts();
        facts.hbone = Ok(failures.clone());
        let (finding, unmapped) = hbone_finding(&stack, &facts);
        let f = finding.unwrap();
        assert_eq!(unmapped, 1);
        assert_eq!(f.id, "ztunnel-hbone-failing");
        assert_eq!(f.subject, "ecom/ecom-db-y, ecom/ui-service-x");
        assert!(f.evidence.iter().any(|e| e.starts_with("dst.addr=10.244.0.18:15008 is pod ecom/ui-service-x (deployment ui-service): 1 line(s), error=\"connection failed")), "{:?}", f.evidence);
        assert!(f.evidence.iter().any(|e| e.contains("Connection refused")));
        assert_eq!(f.fix, "bookstore up");
        // A line logged before the pod holding its IP now was created is about the IP's previous
        // holder: history, not evidence against this pod.
        let ui = facts.pods.iter_mut().find(|p| p.name == "ui-service-x").unwrap();
        ui.created = crate::utc::parse("2026-11-26T14:05:02Z");
        let (f, unmapped) = hbone_finding(&stack, &facts);
        assert_eq!((f.unwrap().subject.as_str(), unmapped), ("ecom/ecom-db-y", 2));
        facts.hbone = Ok(parse_ztunnel("info all good\n"));
        let (none, _) = hbone_finding(&stack, &facts);
        assert!(none.is_none());
    }

    #[test]
    fn cni_lines_name_their_pod_in_text_and_json_formats() {
        let text = "2025-04-16T04:53:28.049072Z\terror\tcni-agent\tfailed to reconcile inpod rules for pod, try restarting the pod, or removing and re-adding it to the mesh: can't find netns for pod\tns=ecom name=ui-service-x";
        let json = r#"{"level":"error","scope":"cni-agent","msg":"failed to reconcile inpod rules for pod, try restarting the pod","ns":"ecom","name":"gone-pod"}"#;
        let entries = parse_cni(&format!("{text}\n{json}\nunrelated\n"));
        assert_eq!(entries.len(), 2);
        // `kubectl logs --all-pods` prefixes each pod's lines: the same line, and which agent said it.
        let prefixed = parse_cni(&format!("[pod/istio-cni-node-4kq9z/install-cni] {text}\n"));
        assert_eq!((&prefixed[0].pod, &prefixed[0].line), (&entries[0].pod, &entries[0].line));
        assert_eq!(prefixed[0].source.as_deref(), Some("istio-cni-node-4kq9z"));
        assert_eq!(entries[1].pod, Some(("ecom".to_string(), "gone-pod".to_string())));
        let stack = load(Source::Embedded).unwrap();
        let mut facts = facts();
        facts.cni = Ok(entries.clone());
        let f = cni_finding(&stack, &facts).unwrap();
        assert_eq!(f.subject, "ecom/ui-service-x", "a pod that no longer exists is history");
        assert_eq!(f.fix, "kubectl --context kind-bookstore -n ecom rollout restart deployment/ui-service");
        facts.cni = Ok(entries[1..].to_vec());
        assert!(cni_finding(&stack, &facts).is_none());
    }

    #[test]
    fn right_after_its_node_started_the_mesh_settling_is_a_warning() {
        let stack = load(Source::Embedded).unwrap();
        let mut facts = facts();
        let zt = Pod {
            namespace: "istio-system".into(),
            name: "ztunnel-x".into(),
            node: "bookstore-control-plane".into(),
            phase: "Running".into(),
            owner: Some(("DaemonSet".into(), "ztunnel".into())),
            containers: vec![crate::cluster::Container::default()],
            ..Pod::default()
        };
        for p in facts.pods.iter_mut() {
            p.meshed = true;
            p.node = "bookstore-control-plane".into();
        }
        facts.pods.push(zt);
        facts.at = 1_800_000_010;
        facts.nodes = vec![crate::engine::Node {
            name: "bookstore-control-plane".into(),
            role: "control-plane".into(),
            running: true,
            started_at: Some(1_800_000_000),
            ..crate::engine::Node::default()
        }];
        let f = settling_finding(&stack, &facts).expect("ztunnel not Ready yet, 10 s after the node started");
        assert_eq!((f.id, f.severity), ("mesh-settling", crate::doctor::Severity::Warning));
        assert!(
            f.problem.contains("ztunnel's pod ztunnel-x on node bookstore-control-plane is not Ready yet"),
            "{}",
            f.problem
        );
        assert_eq!(f.fix, "bookstore doctor");
        // Long after, what is not Ready is judged as it is (ztunnel-stale), not waited for.
        facts.at = 1_800_003_600;
        assert!(settling_finding(&stack, &facts).is_none());
    }

    #[test]
    fn routes_group_envoy_resets_apart_from_other_failures() {
        let stack = load(Source::Embedded).unwrap();
        let probe = |name: &str, answer: Result<Response, String>| Probe {
            check: stack.smoke.checks.iter().find(|c| c.name == name).unwrap().clone(),
            url: format!("http://127.0.0.1:1/{name}"),
            answer,
        };
        let reset =
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
        let probes = vec![
            probe("ui", Ok(Response { status: 503, body: reset.into() })),
            probe("keycloak", Ok(Response { status: 503, body: reset.into() })),
            probe("pgadmin", Err("connection reset".into())),
            probe("kiali", Ok(Response { status: 200, body: "ok".into() })),
        ];
        let facts = facts();
        let health = vec![Health::Missing; stack.workloads.len()];
        let found = routes_findings(&stack, &facts, &health, &probes);
        assert_eq!(found[0].id, "gateway-upstream-reset");
        assert_eq!(found[0].subject, "ui, keycloak");
        assert!(found[0].problem.contains("reason: connection termination"));
        assert!(
            found[0].evidence[0].contains("(Host: myecom.net) → 503 upstream connect error"),
            "{:?}",
            found[0].evidence
        );
        assert_eq!(found[1].id, "route-failing");
        assert!(found[1].evidence[0].contains("no answer (connection reset)"));
        assert!(routes_findings(&stack, &facts, &health, &probes[3..]).is_empty());
    }
}
