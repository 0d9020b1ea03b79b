//! The host side: the tools, the node engine (which one, as kind chooses it, and whether it
//! answers; the cluster's Nodes against it), the kind node containers (stopped, more than one
//! control plane), the port mappings against the cluster config (missing, unpinned, a host port held by
//! something else), the legacy socat proxies, and whether the route host names resolve to this
//! machine.

use std::collections::BTreeSet;

use crate::engine::{self, Engine, Listed, Node};
use crate::error::{Error, Result};
use crate::judge::node::holds;
use crate::observe::Ctx;
use crate::stack::{PortMapping, Stack};

use super::{Finding, Report};

/// Returns the cluster's node containers when its API can be reached (Docker up, the control
/// plane running). On a shared cluster there is no host side of ours: kubectl, and the context
/// named (no node container: an empty list).
pub fn check(ctx: &Ctx, report: &mut Report) -> Result<Option<Vec<Node>>> {
    let stack = ctx.stack;
    if stack.cluster.shared() {
        if which::which("kubectl").is_err() {
            report.add(
                Finding::error("tool-missing", "kubectl", "`kubectl` is not on PATH")
                    .evidence(format!("PATH={}", std::env::var("PATH").unwrap_or_default()))
                    .fix(crate::observe::install_hint("kubectl")),
            );
            return Ok(None);
        }
        report.pass(&format!(
            "shared cluster {} (allowed by the stack file's allow_contexts): no node engine, kind, host \
             ports or host names to check; routes through kubectl port-forward",
            stack.cluster.context()
        ));
        return Ok(Some(Vec::new()));
    }
    let engine = ctx.engine();
    let missing: Vec<&str> = ["kubectl", "kind"]
        .into_iter()
        .chain(std::iter::once(engine.program.as_str()))
        .filter(|t| which::which(t).is_err())
        .collect();
    for tool in &missing {
        report.add(
            Finding::error("tool-missing", *tool, format!("`{tool}` is not on PATH"))
                .evidence(format!("PATH={}", std::env::var("PATH").unwrap_or_default()))
                .fix(crate::observe::install_hint(tool)),
        );
    }
    report.pass(&format!("node engine: {}, as kind chooses it: {}", engine.summary(), engine.why));
    if let Some(warning) = &engine.warning {
        report.add(
            Finding::warning("engine-provider-unknown", "KIND_EXPERIMENTAL_PROVIDER", warning.clone())
                .evidence(format!("the engine chosen: {} ({})", engine.program, engine.why))
                .fix("unset KIND_EXPERIMENTAL_PROVIDER, or set it to docker, podman, nerdctl, finch or nerdctl.lima"),
        );
    }
    if missing.contains(&engine.program.as_str()) {
        host_names(stack, report);
        return Ok(None);
    }
    match crate::observe::engine_answers(engine, &engine.version())? {
        Ok(version) => report.pass(&format!("{} {version} answers", engine.kind.title())),
        Err(why) => {
            let id =
                if engine.kind == engine::Kind::Docker { "docker-not-running" } else { "engine-not-running" };
            report.add(
                Finding::error(
                    id,
                    engine.program.as_str(),
                    format!("{} does not answer", engine.kind.title()),
                )
                .evidence_lines(why.lines().map(String::from))
                .fix(crate::observe::start_hint(engine)),
            );
            host_names(stack, report);
            return Ok(None);
        }
    }
    let ps = engine.ps_cluster(&stack.cluster.name);
    let listed = engine
        .parse_ps(&ps.run()?.stdout)
        .map_err(|p| Error::step(format!("`{ps}`: {p}"), "run it by hand"))?;
    let mut findings = nodes_findings(stack, &listed, &ps.to_string(), &engine.program);
    if listed.is_empty() {
        // A cluster another engine built: its Nodes say so.
        if let Some(f) = mismatch_finding(engine, &provider_ids(ctx)) {
            findings = vec![f];
        }
        report.add_all(findings);
        host_names(stack, report);
        return Ok(None);
    }
    // Each node container: its role, state and last start; its port bindings.
    let names: Vec<String> = listed.iter().map(|n| n.name.clone()).collect();
    let nodes = engine.nodes(&stack.cluster.name).ok().filter(|n| !n.is_empty());
    let reachable = listed.iter().any(|n| n.role() == "control-plane" && n.running());
    if findings.is_empty() {
        let each: Vec<String> = match &nodes {
            Some(nodes) => nodes
                .iter()
                .map(|n| format!("{} ({}, {}, started {})", n.name, n.role, n.status, when_started(n)))
                .collect(),
            None => listed.iter().map(|n| format!("{} ({}, {})", n.name, n.role(), n.state)).collect(),
        };
        report.pass(&format!("kind cluster {}: {}", stack.cluster.name, each.join("; ")));
    }
    // Port mappings: what the nodes publish against what the cluster config asks for.
    let mut port_findings = match &nodes {
        Some(nodes) => {
            ports_findings(stack, nodes, &format!("{} inspect {}", engine.program, names.join(" ")))
        }
        None => Vec::new(),
    };
    // A fixed host port no node holds right now, yet something accepts connections on.
    let not_held: Vec<&PortMapping> = stack
        .cluster
        .ports
        .iter()
        .filter(|m| m.host_port.is_some())
        .filter(|m| !(reachable && nodes.as_ref().is_some_and(|n| holds(n, m))))
        .collect();
    let taken: Vec<&PortMapping> = not_held
        .into_iter()
        .filter(|m| m.host_port.is_some_and(|p| !crate::http::port_free(&m.listen_address, p)))
        .collect();
    if !taken.is_empty() {
        let running = engine
            .parse_ps(&engine.ps_running().run().map(|o| o.stdout).unwrap_or_default())
            .unwrap_or_default();
        port_findings.push(taken_finding(stack, &taken, &running, &engine.program, &names));
    }
    if port_findings.is_empty() && nodes.is_some() {
        let fixed = stack.cluster.ports.len();
        report.pass(&format!("port mappings: the nodes publish all {fixed} of the cluster config"));
    }
    findings.extend(port_findings);
    report.add_all(findings);
    legacy_proxies(ctx, report)?;
    host_names(stack, report);
    Ok(nodes.filter(|_| reachable))
}

/// `2026-12-01T08:51:03Z` (the container's `State.StartedAt`), or "never".
fn when_started(node: &Node) -> String {
    node.started_at.map(crate::utc::format).unwrap_or_else(|| "never".into())
}

/// The kube context's Nodes and their `spec.providerID`, read once (a short deadline: the API
/// may not be there at all).
fn provider_ids(ctx: &Ctx) -> crate::observe::Read<Vec<(String, String)>> {
    let cmd = ctx.kube.list_nodes().deadline(std::time::Duration::from_secs(10));
    let out = cmd.run().map_err(|e| e.headline())?;
    Ok(crate::cluster::parse_nodes(&out.stdout)?.into_iter().map(|n| (n.name, n.provider_id)).collect())
}

/// The cluster's Nodes name another engine than the one chosen: `engine-mismatch`.
pub fn mismatch_finding(
    engine: &Engine,
    ids: &crate::observe::Read<Vec<(String, String)>>,
) -> Option<Finding> {
    let ids = ids.as_ref().ok()?;
    let foreign = crate::judge::engine::disagreeing(engine.kind, ids);
    let (_, first) = foreign.first()?;
    let provider = crate::judge::engine::provider_id(first).map_or("", |(p, _, _)| p).to_string();
    Some(
        Finding::error(
            "engine-mismatch",
            provider.as_str(),
            format!(
                "the cluster was built by {provider}, but bookstore (as kind would) uses {}: it cannot see \
                 or heal the cluster's node containers",
                engine.program
            ),
        )
        .evidence_lines(
            foreign
                .iter()
                .map(|(node, id)| format!("node {node}: spec.providerID {id}"))
                .chain(std::iter::once(format!("the engine chosen: {} ({})", engine.program, engine.why))),
        )
        .fix(format!("KIND_EXPERIMENTAL_PROVIDER={provider} bookstore doctor"))
        .note("set it where you run bookstore and kind (your shell profile), as kind's podman and nerdctl users do"),
    )
}

/// Node containers: none (no cluster), stopped ones, more than one control plane.
pub fn nodes_findings(stack: &Stack, nodes: &[Listed], ps: &str, program: &str) -> Vec<Finding> {
    let name = &stack.cluster.name;
    let mut out = Vec::new();
    if nodes.is_empty() {
        out.push(
            Finding::error(
                "cluster-missing",
                name.as_str(),
                format!("there is no kind cluster named {name}"),
            )
            .evidence(format!("`{ps}` lists no container (`kind get clusters` would not list {name})"))
            .fix("bookstore up"),
        );
        return out;
    }
    let control_planes: Vec<&Listed> = nodes.iter().filter(|n| n.role() == "control-plane").collect();
    if control_planes.len() > 1 {
        out.push(
            Finding::error(
                "multiple-control-planes",
                control_planes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", "),
                format!(
                    "the cluster {name} has {} control-plane nodes: kind clusters with more than one do not \
                     survive a Docker restart (kubernetes-sigs/kind#1689)",
                    control_planes.len()
                ),
            )
            .evidence_lines(
                control_planes
                    .iter()
                    .map(|n| format!("{}: label io.x-k8s.kind.role={} ({})", n.name, n.role(), n.status)),
            )
            .fix("bookstore down && bookstore up")
            .note("recreates the cluster from the cluster config, which has one control-plane node; down deletes its data"),
        );
    }
    let stopped: Vec<&Listed> = nodes.iter().filter(|n| !n.running()).collect();
    if !stopped.is_empty() {
        let names: Vec<&str> = stopped.iter().map(|n| n.name.as_str()).collect();
        out.push(
            Finding::error(
                "node-stopped",
                names.join(", "),
                format!(
                    "{} of the cluster's node containers {} not running",
                    names.len(),
                    if names.len() == 1 { "is" } else { "are" }
                ),
            )
            .evidence_lines(stopped.iter().map(|n| format!("{}: {} ({})", n.name, n.state, n.status)))
            .fix(format!("{program} start {}", names.join(" "))),
        );
    }
    out
}

/// The cluster config's port mappings against the nodes' `HostConfig.PortBindings`.
pub fn ports_findings(stack: &Stack, nodes: &[Node], inspect: &str) -> Vec<Finding> {
    let cluster = &stack.cluster;
    let used: BTreeSet<u16> =
        stack.smoke.checks.iter().map(|c| c.port).chain(std::iter::once(stack.connect.port)).collect();
    let config = stack.source.describe(&stack.cluster_file);
    let mut out = Vec::new();
    let published = |port: u16| {
        let one = nodes.len() == 1;
        nodes
            .iter()
            .flat_map(|n| n.bindings.iter().map(move |b| (n, b)))
            .filter(|(_, (p, _, _))| *p == port)
            .map(|(n, (_, ip, h))| {
                let on = if one { String::new() } else { format!(" ({})", n.name) };
                format!("{}:{h}{on}", if ip.is_empty() { "0.0.0.0" } else { ip })
            })
            .collect::<Vec<_>>()
    };
    let mut missing = Vec::new();
    for m in &cluster.ports {
        match m.host_port {
            None => {
                let how = match m.host_port_raw {
                    Some(-1) => "hostPort: -1 (Docker picks a new host port at every start of the node)",
                    Some(0) => "hostPort: 0 (kind picks a random host port when it creates the cluster)",
                    _ => "no hostPort (kind picks a random host port when it creates the cluster)",
                };
                let now = published(m.container_port);
                let now = if now.is_empty() {
                    String::new()
                } else {
                    format!("; the node publishes it on {} now", now.join(", "))
                };
                let p = m.container_port;
                let f = Finding::new(
                    "host-port-unpinned",
                    if used.contains(&p) { super::Severity::Error } else { super::Severity::Warning },
                    format!("containerPort {p}"),
                    format!("containerPort {p} has no fixed host port, so its routes cannot be found at a known address"),
                )
                .evidence(format!("{config}: containerPort {p} has {how}{now}"))
                .fix(format!("set `hostPort: {p}` for containerPort {p} in {config}, then `bookstore down && bookstore up`"))
                .note("port mappings are fixed when a kind cluster is created; down deletes the cluster's data");
                out.push(f);
            }
            Some(want) if !holds(nodes, m) => missing.push((m.container_port, want)),
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        let ports: Vec<String> = missing.iter().map(|(c, _)| c.to_string()).collect();
        out.push(
            Finding::error(
                "port-mapping-missing",
                ports.join(", "),
                format!(
                    "the cluster {} was created without the port mapping(s) {} that {config} asks for \
                     (an older cluster: mappings are fixed when a kind cluster is created)",
                    cluster.name,
                    ports.join(", ")
                ),
            )
            .evidence_lines(missing.iter().map(|(c, h)| {
                let now = published(*c);
                let now =
                    if now.is_empty() { "has none".to_string() } else { format!("has {}", now.join(", ")) };
                format!(
                    "{inspect}: HostConfig.PortBindings[\"{c}/tcp\"] {now}; the config wants 127.0.0.1:{h}"
                )
            }))
            .fix("bookstore down && bookstore up")
            .note("recreates the cluster with every mapping; down deletes the cluster and its data"),
        );
    }
    out
}

/// Fixed host ports no node holds, held by something else (`nodes`: the node containers' names).
pub fn taken_finding(
    stack: &Stack,
    taken: &[&PortMapping],
    running: &[Listed],
    program: &str,
    nodes: &[String],
) -> Finding {
    let ports: Vec<String> = taken.iter().filter_map(|m| m.host_port).map(|p| p.to_string()).collect();
    let mut evidence = Vec::new();
    let mut holders = BTreeSet::new();
    for m in taken {
        let Some(port) = m.host_port else { continue };
        let by: Vec<&Listed> =
            running.iter().filter(|c| c.published.iter().any(|(_, h, _)| *h == port)).collect();
        if by.is_empty() {
            evidence.push(format!(
                "{}:{port} (for containerPort {}) accepts connections, and no container publishes it",
                m.listen_address, m.container_port
            ));
        }
        for c in by {
            holders.insert(c.name.clone());
            evidence.push(format!(
                "{}:{port} (for containerPort {}) is published by container {} ({})",
                m.listen_address, m.container_port, c.name, c.status
            ));
        }
    }
    let fix = if holders.len() == evidence.len() && !holders.is_empty() {
        format!("{program} rm -f {}", holders.into_iter().collect::<Vec<_>>().join(" "))
    } else {
        let first = taken.iter().find_map(|m| m.host_port).unwrap_or(0);
        format!("lsof -nP -iTCP:{first} -sTCP:LISTEN   # names the process; stop it")
    };
    Finding::error(
        "host-port-taken",
        ports.join(", "),
        format!(
            "host port(s) {} of the cluster config are held by something other than the cluster {}'s nodes, \
             which cannot publish them (a stopped node will not start)",
            ports.join(", "),
            stack.cluster.name
        ),
    )
    .evidence_lines(evidence)
    .fix(fix)
    .note(format!("then `{program} start {}` if a node is stopped", nodes.join(" ")))
}

fn legacy_proxies(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let stack = ctx.stack;
    if stack.legacy_proxies.is_empty() {
        return Ok(());
    }
    let engine = ctx.engine();
    let ps = engine.ps_named(&stack.legacy_proxies);
    let found: Vec<String> = engine::parse_names(&ps.run()?.stdout).into_iter().collect();
    if found.is_empty() {
        report.pass("no legacy socat proxy containers");
        return Ok(());
    }
    report.add(
        Finding::warning(
            "legacy-proxy",
            found.join(", "),
            "legacy socat proxy containers exist: they forward to node IPs that change at every Docker \
             restart, and kind's port mappings replace them",
        )
        .evidence(format!("`{ps}` lists {}", found.join(", ")))
        .fix(format!("{} rm -f {}", engine.program, found.join(" ")))
        .note("`bookstore up` removes them too"),
    );
    Ok(())
}

/// The route host names should resolve to this machine for a browser (the smoke test sends the
/// Host header and does not need it).
fn host_names(stack: &Stack, report: &mut Report) {
    let hosts: BTreeSet<String> = stack.smoke.checks.iter().filter_map(|c| c.host.clone()).collect();
    let mut bad = Vec::new();
    for host in &hosts {
        let answer = crate::http::resolve(host);
        if let Some(line) = not_local(host, &answer) {
            bad.push((host.clone(), line));
        }
    }
    if let Some(f) = host_names_finding(&bad) {
        report.add(f);
    } else if !hosts.is_empty() {
        report.pass(&format!("{} resolve to 127.0.0.1", hosts.into_iter().collect::<Vec<_>>().join(", ")));
    }
}

/// `Some(evidence)` when `host` does not resolve to a loopback address.
pub fn not_local(host: &str, answer: &std::result::Result<Vec<std::net::IpAddr>, String>) -> Option<String> {
    match answer {
        Ok(ips) if ips.iter().any(|ip| ip.is_loopback()) => None,
        Ok(ips) if ips.is_empty() => Some(format!("{host} resolves to no address")),
        Ok(ips) => Some(format!(
            "{host} resolves to {}",
            ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
        )),
        Err(e) => Some(format!("{host} does not resolve: {e}")),
    }
}

pub fn host_names_finding(bad: &[(String, String)]) -> Option<Finding> {
    if bad.is_empty() {
        return None;
    }
    let names: Vec<&str> = bad.iter().map(|(h, _)| h.as_str()).collect();
    Some(
        Finding::warning(
            "host-name-not-local",
            names.join(", "),
            format!(
                "{} {} not resolve to 127.0.0.1: a browser cannot open the routes by name (the smoke test \
                 sends the Host header and does not need it)",
                names.join(", "),
                if names.len() == 1 { "does" } else { "do" }
            ),
        )
        .evidence_lines(bad.iter().map(|(_, e)| e.clone()))
        .fix(format!("echo '127.0.0.1 {}' | sudo tee -a /etc/hosts", names.join(" "))),
    )
}

pub fn describe(ctx: &Ctx, lines: &mut Vec<String>) {
    let stack = ctx.stack;
    let engine = ctx.engine();
    lines.push(engine.version().to_string());
    lines.push(format!(
        "{}   # node containers, their state and role",
        engine.ps_cluster(&stack.cluster.name)
    ));
    lines.push(format!(
        "{}   # each of them: its last start, its port bindings against the cluster config",
        crate::observe::describe_inspect(engine, &stack.cluster.name)
    ));
    lines.push(format!(
        "{}   # only when no node container is found: who built the cluster",
        ctx.kube.list_nodes()
    ));
    lines.push(format!("{}   # only when a host port is held by something else", engine.ps_running()));
    if !stack.legacy_proxies.is_empty() {
        lines.push(engine.ps_named(&stack.legacy_proxies).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{Source, load};

    fn listed(name: &str, state: &str, role: &str) -> Listed {
        Listed {
            name: name.into(),
            id: String::new(),
            state: state.into(),
            status: if state == "running" { "Up 1 hour".into() } else { "Exited (137) 5 seconds ago".into() },
            labels: [("io.x-k8s.kind.role".to_string(), role.to_string())].into(),
            published: vec![],
        }
    }

    #[test]
    fn node_containers_no_cluster_stopped_and_two_control_planes() {
        let stack = load(Source::Embedded).unwrap();
        let none = nodes_findings(&stack, &[], "docker ps", "docker");
        assert_eq!(none[0].id, "cluster-missing");
        assert_eq!(none[0].fix, "bookstore up");
        let nodes = [
            listed("bookstore-control-plane", "exited", "control-plane"),
            listed("bookstore-control-plane2", "running", "control-plane"),
        ];
        let found = nodes_findings(&stack, &nodes, "docker ps", "podman");
        let ids: Vec<&str> = found.iter().map(|f| f.id).collect();
        assert_eq!(ids, ["multiple-control-planes", "node-stopped"]);
        assert_eq!(found[1].fix, "podman start bookstore-control-plane");
        assert!(found[1].evidence[0].contains("Exited (137)"));
        assert!(found[0].evidence[1].contains("io.x-k8s.kind.role=control-plane"));
        assert!(
            nodes_findings(
                &stack,
                &nodes[..1].iter().map(|n| listed(&n.name, "running", "control-plane")).collect::<Vec<_>>(),
                "",
                "docker"
            )
            .is_empty()
        );
    }

    #[test]
    fn bindings_against_the_config_missing_and_unpinned() {
        let mut stack = load(Source::Embedded).unwrap();
        let all: Vec<(u16, String, u16)> = stack
            .cluster
            .ports
            .iter()
            .map(|m| (m.container_port, "127.0.0.1".into(), m.container_port))
            .collect();
        let node = Node { running: true, status: "running".into(), bindings: all.clone(), ..Node::default() };
        let node = [node];
        assert!(ports_findings(&stack, &node, "docker inspect n").is_empty());
        let old = Node {
            bindings: all.iter().filter(|(p, _, _)| *p < 32100).cloned().collect(),
            ..Node { running: true, status: "running".into(), ..Node::default() }
        };
        let found = ports_findings(&stack, std::slice::from_ref(&old), "docker inspect n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "port-mapping-missing");
        assert_eq!(found[0].subject, "32100, 32200, 32300");
        assert_eq!(found[0].fix, "bookstore down && bookstore up");
        assert!(found[0].evidence[0].contains("HostConfig.PortBindings[\"32100/tcp\"] has none"));

        let m = stack.cluster.ports.iter_mut().find(|m| m.container_port == 32300).unwrap();
        m.host_port = None;
        m.host_port_raw = Some(-1);
        let found = ports_findings(&stack, &node, "docker inspect n");
        assert_eq!(found[0].id, "host-port-unpinned");
        assert_eq!(found[0].severity, super::super::Severity::Error);
        assert!(found[0].evidence[0].contains("hostPort: -1"), "{:?}", found[0].evidence);
        assert!(found[0].evidence[0].contains("publishes it on 127.0.0.1:32300 now"));
    }

    #[test]
    fn a_taken_port_names_the_container_that_holds_it() {
        let stack = load(Source::Embedded).unwrap();
        let kiali = stack.cluster.ports.iter().find(|m| m.container_port == 32100).unwrap();
        let mut proxy = listed("kiali-proxy", "running", "");
        proxy.published = vec![("0.0.0.0".into(), 32100, 32100)];
        let nodes = ["bookstore-control-plane".to_string()];
        let f = taken_finding(&stack, &[kiali], &[proxy], "docker", &nodes);
        assert!(f.note.as_deref().is_some_and(|n| n.contains("docker start bookstore-control-plane")));
        assert_eq!(f.fix, "docker rm -f kiali-proxy");
        assert!(f.evidence[0].contains("published by container kiali-proxy"));
        let f = taken_finding(&stack, &[kiali], &[], "docker", &nodes);
        assert!(f.fix.starts_with("lsof -nP -iTCP:32100"));
        assert!(f.evidence[0].contains("no container publishes it"));
    }

    #[test]
    fn host_names_must_resolve_to_loopback() {
        let local: std::result::Result<Vec<std::net::IpAddr>, String> =
            Ok(vec!["127.0.0.1".parse().unwrap()]);
        assert_eq!(not_local("myecom.net", &local), None);
        let remote = Ok(vec!["93.184.215.14".parse().unwrap()]);
        assert_eq!(not_local("myecom.net", &remote).unwrap(), "myecom.net resolves to 93.184.215.14");
        let missing = Err("failed to lookup address information".to_string());
        let bad = vec![
            ("myecom.net".to_string(), not_local("myecom.net", &missing).unwrap()),
            ("idp.keycloak.net".to_string(), not_local("idp.keycloak.net", &remote).unwrap()),
        ];
        let f = host_names_finding(&bad).unwrap();
        assert_eq!(f.severity, super::super::Severity::Warning);
        assert_eq!(f.fix, "echo '127.0.0.1 myecom.net idp.keycloak.net' | sudo tee -a /etc/hosts");
        assert!(host_names_finding(&[]).is_none());
    }
}
