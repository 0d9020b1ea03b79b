//! Preflight: tools on PATH, the node engine answering, the cluster and its node, port bindings. It
//! changes nothing; the legacy proxy containers are removed by their own step, once every check
//! (the cluster-side input included) has passed.

use crate::engine::Node;
use crate::error::{Error, Result};
use crate::observe::{engine_running, tools};
use crate::plan::Preflight;

use super::Ctx;

/// `kind get clusters` lists the stack's cluster (stopped node containers count, as in kind).
pub fn cluster_exists(ctx: &Ctx) -> Result<bool> {
    let engine = ctx.engine();
    let clusters = engine.kind_get_clusters().run().map_err(|e| {
        e.with_next(format!(
            "check that {} answers (`{} ps`) and that kind works (`kind get clusters`)",
            engine.kind.title(),
            engine.program
        ))
    })?;
    Ok(crate::engine::parse_names(&clusters.stdout).contains(&ctx.stack.cluster.name))
}

/// The node container (found by kind's labels) runs and has every port mapping the cluster
/// config asks for: read from `ps` alone (a running container's published ports are its
/// bindings), so the dry run lists every command without reading anything.
pub fn node(ctx: &Ctx) -> Result<()> {
    let engine = ctx.engine();
    let ps = engine.ps_cluster(&ctx.stack.cluster.name);
    let mut listed = engine
        .parse_ps(&ps.run()?.stdout)
        .map_err(|problem| Error::step(format!("`{ps}`: {problem}"), "run the command above by hand"))?;
    listed.sort_by_key(|n| n.role() != "control-plane");
    let Some(node) = listed.first() else {
        return Err(Error::prerequisite(
            format!("`{ps}` finds no node container"),
            "create the cluster with `bookstore up`",
        ));
    };
    check_node(ctx, &node.node())
}

/// What `inspect` says of the node: it runs, with every port mapping of the config.
pub fn check_node(ctx: &Ctx, node: &Node) -> Result<()> {
    // A stopped container publishes nothing (`ps`): whether it runs is said first.
    if !node.running {
        return Err(Error::prerequisite(
            format!("the kind node container `{}` is {}", node.name, node.status),
            format!(
                "start it: `bookstore up` starts it and heals the stack (or `{} start {}`), then run again",
                ctx.engine().program,
                node.name
            ),
        ));
    }
    check_mappings(ctx, node)
}

/// The node has every port mapping the cluster config asks for (fixed when kind created it).
pub fn check_mappings(ctx: &Ctx, node: &Node) -> Result<()> {
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
    ctx.engine().write().rm_force(names).run()?;
    Ok(())
}

/// Remove the old socat proxy containers: they point at stale node IPs and hold the host ports.
pub fn legacy_proxies(ctx: &Ctx) -> Result<()> {
    let legacy = &ctx.stack.legacy_proxies;
    if legacy.is_empty() || ctx.stack.cluster.shared() {
        return Ok(());
    }
    let found: Vec<String> =
        crate::engine::parse_names(&ctx.engine().ps_named(legacy).run()?.stdout).into_iter().collect();
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
    tools(&engine_tools(ctx, &p.tools))?;
    if p.docker {
        engine_running(ctx.engine())?;
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
        step.done(&engine_tools(ctx, &p.tools).join(", "));
    }
    Ok(())
}

/// The plan's tools with `docker` standing for the node engine's CLI (`podman`, `nerdctl`, …).
fn engine_tools<'a>(ctx: &Ctx, tools: &[&'a str]) -> Vec<&'a str> {
    tools.iter().map(|t| if *t == "docker" { ctx.engine().program.as_str() } else { t }).collect()
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
        lines.push(format!("# Preflight: {} on PATH", engine_tools(ctx, &p.tools).join(", ")));
    }
    if p.docker {
        ctx.engine().describe(lines);
        lines.push(ctx.engine().version().to_string());
    }
    if !p.cluster {
        return;
    }
    let cluster = &ctx.stack.cluster;
    if p.docker {
        let engine = ctx.engine();
        lines.push(format!("{}   # must list {}", engine.kind_get_clusters(), cluster.name));
        lines.push(format!(
            "{}   # the node containers, by kind's label: running, publishing {}",
            engine.ps_cluster(&cluster.name),
            cluster.ports.iter().map(|m| m.container_port.to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
}

pub fn describe_legacy_proxies(ctx: &Ctx, lines: &mut Vec<String>) {
    if !ctx.stack.legacy_proxies.is_empty() && !ctx.stack.cluster.shared() {
        lines.push("# Remove the legacy socat proxy containers (after every check)".into());
        let engine = ctx.engine();
        lines.push(engine.ps_named(&ctx.stack.legacy_proxies).to_string());
        lines.push(format!("{}   # only those found", engine.write().rm_force(&ctx.stack.legacy_proxies)));
    }
}
