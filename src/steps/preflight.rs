//! Preflight: tools on PATH, Docker answering, the cluster and its node, port bindings. It
//! changes nothing; the legacy proxy containers are removed by their own step, once every check
//! (the cluster-side input included) has passed.

use crate::docker;
use crate::error::{Error, Result};
use crate::observe::{docker_running, tools};
use crate::plan::Preflight;

use super::Ctx;

/// `kind get clusters` lists the stack's cluster (stopped node containers count, as in kind).
pub fn cluster_exists(ctx: &Ctx) -> Result<bool> {
    let clusters = docker::kind_get_clusters().run().map_err(|e| {
        e.with_next("check that Docker answers (`docker ps`) and that kind works (`kind get clusters`)")
    })?;
    Ok(docker::parse_names(&clusters.stdout).contains(&ctx.stack.cluster.name))
}

/// Every node container of the cluster runs, and they publish every port mapping the cluster
/// config asks for.
pub fn node(ctx: &Ctx) -> Result<()> {
    let ps = docker::ps_cluster(&ctx.stack.cluster.name);
    let listed = docker::parse_ps(&ps.run()?.stdout)
        .map_err(|problem| Error::step(format!("`{ps}`: {problem}"), "run the command above by hand"))?;
    let nodes: Vec<docker::Node> = listed.iter().map(docker::Listed::node).collect();
    check_nodes(ctx, &nodes)
}

/// What `docker ps` or `docker inspect` says of the nodes: one control plane, each running,
/// every port mapping of the config published.
pub fn check_nodes(ctx: &Ctx, nodes: &[docker::Node]) -> Result<()> {
    let cluster = &ctx.stack.cluster;
    if nodes.is_empty() {
        return Err(Error::prerequisite(
            format!("no node container carries the label io.x-k8s.kind.cluster={}", cluster.name),
            "check `docker ps -a`; `bookstore up` creates the cluster when kind does not list it",
        ));
    }
    one_control_plane(ctx, nodes)?;
    let stopped: Vec<&docker::Node> = nodes.iter().filter(|n| !n.running).collect();
    if !stopped.is_empty() {
        let what: Vec<String> = stopped.iter().map(|n| format!("`{}` is {}", n.name, n.status)).collect();
        let names: Vec<&str> = stopped.iter().map(|n| n.name.as_str()).collect();
        return Err(Error::prerequisite(
            format!("the kind node container {}", what.join(", ")),
            format!(
                "start it: `bookstore up` starts it and heals the stack (or `docker start {}`), then run again",
                names.join(" ")
            ),
        ));
    }
    check_mappings(ctx, nodes)
}

/// One control plane: kind clusters with several do not survive a Docker restart (kind#1689).
pub fn one_control_plane(ctx: &Ctx, nodes: &[docker::Node]) -> Result<()> {
    let cluster = &ctx.stack.cluster;
    let control_planes: Vec<&str> =
        nodes.iter().filter(|n| n.role == "control-plane").map(|n| n.name.as_str()).collect();
    if control_planes.len() > 1 {
        return Err(Error::prerequisite(
            format!(
                "the cluster `{}` has {} control-plane nodes ({}): kind clusters with more than one do not \
                 survive a Docker restart (kubernetes-sigs/kind#1689); nothing was restarted",
                cluster.name,
                control_planes.len(),
                control_planes.join(", ")
            ),
            "recreate it with one control plane: `bookstore down && bookstore up` (down deletes the cluster and its data)",
        ));
    }
    Ok(())
}

/// The nodes publish every port mapping the cluster config asks for (fixed when kind created
/// them; a stopped container keeps its `HostConfig.PortBindings`).
pub fn check_mappings(ctx: &Ctx, nodes: &[docker::Node]) -> Result<()> {
    let cluster = &ctx.stack.cluster;
    let missing = crate::judge::node::missing(nodes, &cluster.ports);
    if !missing.is_empty() {
        let ports: Vec<String> = missing.iter().map(|m| m.container_port.to_string()).collect();
        return Err(Error::prerequisite(
            format!(
                "the cluster `{}` was created without the port mapping(s) {} that the cluster config \
                 asks for (mappings are fixed when a kind cluster is created; nothing was restarted)",
                cluster.name,
                ports.join(", ")
            ),
            "recreate the cluster: `bookstore down && bookstore up` (down deletes the cluster and its data)",
        ));
    }
    Ok(())
}

/// Remove these legacy socat proxy containers (found by the observation).
pub fn remove_legacy(ctx: &Ctx, names: &[String]) -> Result<()> {
    ctx.ui.warn(&format!(
        "removing legacy socat proxy container(s) {}: they point at stale node IPs; kind's port \
         mappings replace them",
        names.join(", ")
    ));
    docker::rm_force(names).run()?;
    Ok(())
}

/// Remove the old socat proxy containers: they point at stale node IPs and hold the host ports.
pub fn legacy_proxies(ctx: &Ctx) -> Result<()> {
    let legacy = &ctx.stack.legacy_proxies;
    if legacy.is_empty() {
        return Ok(());
    }
    let found: Vec<String> =
        docker::parse_names(&docker::ps_named(legacy).run()?.stdout).into_iter().collect();
    if !found.is_empty() {
        remove_legacy(ctx, &found)?;
    }
    Ok(())
}

pub fn run(ctx: &Ctx, p: &Preflight) -> Result<()> {
    let step = ctx.ui.start("Checking prerequisites");
    tools(&p.tools)?;
    if p.docker {
        docker_running()?;
    }
    if p.cluster {
        // Without `docker`, `up`'s detection already listed the cluster and checked its node.
        if p.docker {
            if !cluster_exists(ctx)? {
                return Err(Error::prerequisite(
                    format!("no kind cluster named `{}` (kind get clusters)", ctx.stack.cluster.name),
                    "create it with `bookstore up`",
                ));
            }
            node(ctx)?;
        }
        let cluster = &ctx.stack.cluster;
        step.done(&format!(
            "cluster {} running, {} port mappings present",
            cluster.name,
            cluster.ports.len()
        ));
    } else {
        step.done(&p.tools.join(", "));
    }
    Ok(())
}

pub fn describe(ctx: &Ctx, p: &Preflight, lines: &mut Vec<String>) {
    if !p.tools.is_empty() {
        lines.push(format!("# Preflight: {} on PATH", p.tools.join(", ")));
    }
    if p.docker {
        lines.push(docker::server_version().to_string());
    }
    if !p.cluster {
        return;
    }
    let cluster = &ctx.stack.cluster;
    if p.docker {
        lines.push(format!("{}   # must list {}", docker::kind_get_clusters(), cluster.name));
        lines.push(format!(
            "{}   # the cluster's node containers, by kind's label: each running, one control plane, the mappings {}",
            docker::ps_cluster(&cluster.name),
            cluster.ports.iter().map(|m| m.container_port.to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
}

pub fn describe_legacy_proxies(ctx: &Ctx, lines: &mut Vec<String>) {
    if !ctx.stack.legacy_proxies.is_empty() {
        lines.push("# Remove the legacy socat proxy containers (after every check)".into());
        lines.push(docker::ps_named(&ctx.stack.legacy_proxies).to_string());
        lines.push(format!("{}   # only those found", docker::rm_force(&ctx.stack.legacy_proxies)));
    }
}
