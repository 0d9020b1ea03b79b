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

/// The node container runs and has every port mapping the cluster config asks for.
pub fn node(ctx: &Ctx) -> Result<()> {
    let inspect = docker::inspect(&ctx.stack.cluster.control_plane_container());
    let node = docker::parse_inspect(&inspect.run()?.stdout)
        .map_err(|problem| Error::step(format!("`{inspect}`: {problem}"), "run the command above by hand"))?;
    check_node(ctx, &node)
}

/// What `docker inspect` says of the node: it runs, with every port mapping of the config.
pub fn check_node(ctx: &Ctx, node: &docker::Node) -> Result<()> {
    let node_name = ctx.stack.cluster.control_plane_container();
    check_mappings(ctx, node)?;
    if !node.running {
        return Err(Error::prerequisite(
            format!("the kind node container `{node_name}` is {}", node.status),
            format!(
                "start it: `bookstore up` starts it and heals the stack (or `docker start {node_name}`), then run again"
            ),
        ));
    }
    Ok(())
}

/// The node has every port mapping the cluster config asks for (fixed when kind created it).
pub fn check_mappings(ctx: &Ctx, node: &docker::Node) -> Result<()> {
    let cluster = &ctx.stack.cluster;
    let missing = crate::judge::node::missing(node, &cluster.ports);
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
    if legacy.is_empty() || ctx.stack.cluster.shared() {
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
    if ctx.stack.cluster.shared() {
        // A shared cluster: kubectl is the only tool; its API is waited for next.
        tools(&["kubectl"])?;
        step.done(&format!(
            "kubectl; shared cluster {} (no docker, kind or istioctl)",
            ctx.stack.cluster.context()
        ));
        return Ok(());
    }
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
    if ctx.stack.cluster.shared() {
        lines.push(format!(
            "# Preflight: kubectl on PATH (shared cluster {}: no docker, kind or istioctl)",
            ctx.stack.cluster.context()
        ));
        return;
    }
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
            "{}   # running, with the mappings {}",
            docker::inspect(&cluster.control_plane_container()),
            cluster.ports.iter().map(|m| m.container_port.to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
}

pub fn describe_legacy_proxies(ctx: &Ctx, lines: &mut Vec<String>) {
    if !ctx.stack.legacy_proxies.is_empty() && !ctx.stack.cluster.shared() {
        lines.push("# Remove the legacy socat proxy containers (after every check)".into());
        lines.push(docker::ps_named(&ctx.stack.legacy_proxies).to_string());
        lines.push(format!("{}   # only those found", docker::rm_force(&ctx.stack.legacy_proxies)));
    }
}
