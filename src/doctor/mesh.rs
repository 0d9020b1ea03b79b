//! Root cause 1, the mesh: every route's answer (Envoy's upstream reset with its reason), the
//! HBONE connections ztunnel's log says failed (each target IP mapped back to its pod), and the
//! pods istio-cni could not reconcile.

use std::collections::BTreeMap;

use crate::cluster::{self, Pod};
use crate::judge::routes::Route;
use crate::observe::evidence::HboneFailure;
use crate::observe::routes::Probe;
use crate::observe::{CNI_DAEMONSET, LOG_TAIL};
use crate::observe::{Ctx, Observation};
use crate::stack::Stack;

use super::{Finding, Report};

/// Envoy's resets and other failing routes, one finding each.
pub fn routes_findings(stack: &Stack, probes: &[Probe]) -> Vec<Finding> {
    let mut resets: Vec<(&Probe, String)> = Vec::new();
    let mut failing: Vec<&Probe> = Vec::new();
    for p in probes {
        match crate::judge::routes::probe(stack, p) {
            Route::Works => {}
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
            .fix("bookstore recover")
            .note("restarts ztunnel, then every workload, so each registers with the new ztunnel"),
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
            .fix("bookstore recover")
            .note("if a pod above is in trouble, fix that first; `bookstore smoke` rechecks every route"),
        );
    }
    out
}

/// Failures grouped by the pod that holds the target IP now; lines to IPs no pod holds are
/// history (those pods were replaced) and only counted.
pub fn ztunnel_finding(failures: &[HboneFailure], facts: &Observation) -> (Option<Finding>, usize) {
    let by_ip = cluster::by_ip(&facts.pods);
    let mut per_pod: BTreeMap<(String, String), Vec<&HboneFailure>> = BTreeMap::new();
    let mut unmapped = 0;
    for f in failures {
        match by_ip.get(f.ip.as_str()) {
            Some(pod) => per_pod.entry((pod.namespace.clone(), pod.name.clone())).or_default().push(f),
            None => unmapped += 1,
        }
    }
    if per_pod.is_empty() {
        return (None, unmapped);
    }
    let pods: Vec<String> = per_pod.keys().map(|(ns, n)| format!("{ns}/{n}")).collect();
    // One log line as it is, then each target IP mapped back to its pod.
    let mut evidence = Vec::new();
    if let Some(first) = per_pod.values().next().and_then(|l| l.last()) {
        evidence.push(format!("ztunnel: {}", first.line));
    }
    for ((ns, name), list) in &per_pod {
        let pod = facts.pods.iter().find(|p| &p.namespace == ns && &p.name == name);
        let owner =
            pod.and_then(|p| facts.owner(p)).map(|d| format!(" (deployment {})", d.name)).unwrap_or_default();
        let last = list[list.len() - 1];
        evidence.push(format!(
            "dst.addr={}:15008 is pod {ns}/{name}{owner}: {} line(s), error=\"{}\"",
            last.ip,
            list.len(),
            last.error
        ));
    }
    if unmapped > 0 {
        evidence.push(format!("(and {unmapped} line(s) to IPs no current pod has: pods since replaced)"));
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
    .fix("bookstore recover")
    .note("restarts ztunnel first, then every workload so each registers with it; restarting only the workloads does not help");
    (Some(finding), unmapped)
}

pub fn cni_finding(
    stack: &Stack,
    entries: &[(String, String, String)],
    facts: &Observation,
) -> Option<Finding> {
    let current: Vec<(&Pod, &String)> = entries
        .iter()
        .filter_map(|(ns, name, line)| {
            facts.pods.iter().find(|p| &p.namespace == ns && &p.name == name).map(|p| (p, line))
        })
        .collect();
    if current.is_empty() {
        return None;
    }
    let context = stack.cluster.context();
    let mut restarts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut deletes = Vec::new();
    for (pod, _) in &current {
        match facts.owner(pod) {
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

pub fn check(ctx: &Ctx, facts: &Observation, report: &mut Report) {
    let probes: Vec<Probe> = facts.routes.iter().filter(|p| !p.check.connectors_running).cloned().collect();
    let routes = routes_findings(ctx.stack, &probes);
    if routes.is_empty() && !probes.is_empty() {
        report.pass(&format!("routes: all {} answer", probes.len()));
    }
    report.add_all(routes);
    let mesh = &ctx.stack.mesh;
    match &facts.hbone {
        Ok(failures) => match ztunnel_finding(failures, facts) {
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
        Ok(entries) => match cni_finding(ctx.stack, entries, facts) {
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
        assert_eq!(failures[0].ip, "10.244.0.18");
        assert_eq!(failures[0].error, "connection failed: deadline has elapsed");
        assert_eq!(failures[1].error, "io error: Connection refused (os error 111)");
        let (finding, unmapped) = ztunnel_finding(&failures, &facts());
        let f = finding.unwrap();
        assert_eq!(unmapped, 1);
        assert_eq!(f.id, "ztunnel-hbone-failing");
        assert_eq!(f.subject, "ecom/ecom-db-y, ecom/ui-service-x");
        assert!(f.evidence.iter().any(|e| e.starts_with("dst.addr=10.244.0.18:15008 is pod ecom/ui-service-x (deployment ui-service): 1 line(s), error=\"connection failed")), "{:?}", f.evidence);
        assert!(f.evidence.iter().any(|e| e.contains("Connection refused")));
        assert_eq!(f.fix, "bookstore recover");
        let (none, _) = ztunnel_finding(&parse_ztunnel("info all good\n"), &facts());
        assert!(none.is_none());
    }

    #[test]
    fn cni_lines_name_their_pod_in_text_and_json_formats() {
        let text = "2025-04-16T04:53:28.049072Z\terror\tcni-agent\tfailed to reconcile inpod rules for pod, try restarting the pod, or removing and re-adding it to the mesh: can't find netns for pod\tns=ecom name=ui-service-x";
        let json = r#"{"level":"error","scope":"cni-agent","msg":"failed to reconcile inpod rules for pod, try restarting the pod","ns":"ecom","name":"gone-pod"}"#;
        let entries = parse_cni(&format!("{text}\n{json}\nunrelated\n"));
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[1].0.as_str(), entries[1].1.as_str()), ("ecom", "gone-pod"));
        let stack = load(Source::Embedded).unwrap();
        let f = cni_finding(&stack, &entries, &facts()).unwrap();
        assert_eq!(f.subject, "ecom/ui-service-x", "a pod that no longer exists is history");
        assert_eq!(f.fix, "kubectl --context kind-bookstore -n ecom rollout restart deployment/ui-service");
        assert!(cni_finding(&stack, &entries[1..], &facts()).is_none());
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
        let found = routes_findings(&stack, &probes);
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
        assert!(routes_findings(&stack, &probes[3..]).is_empty());
    }
}
