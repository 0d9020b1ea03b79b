//! Preflight: tools on PATH, Docker answering, the cluster and its node, port bindings. It
//! changes nothing; the legacy proxy containers are removed by their own step, once every check
//! (the cluster-side input included) has passed.

use crate::docker;
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::plan::Preflight;

use super::Ctx;
use super::op::{Op, Part};

/// The checks of `p`, as operations.
pub fn part(ctx: &Ctx, p: &Preflight) -> Part {
    let cluster = &ctx.stack.cluster;
    let mut ops = Vec::new();
    if !p.tools.is_empty() {
        ops.push(Op::Tools(p.tools.clone()));
    }
    if p.docker {
        ops.push(Op::DockerAnswers(docker::server_version()));
    }
    // Without `docker`, `up`'s detection already listed the cluster and checked its node.
    if p.cluster && p.docker {
        ops.push(Op::ListsCluster(docker::kind_get_clusters()));
        ops.push(Op::NodeRuns(docker::inspect(&cluster.control_plane_container())));
    }
    let done = if p.cluster {
        format!("cluster {} running, {} port mappings present", cluster.name, cluster.ports.len())
    } else {
        p.tools.join(", ")
    };
    Part::new("Checking prerequisites", ops, done)
}

/// `kind get clusters` lists the stack's cluster (stopped node containers count, as in kind).
pub fn lists_cluster(ctx: &Ctx, cmd: &Cmd) -> Result<()> {
    let clusters = cmd.run().map_err(|e| {
        e.with_next("check that Docker answers (`docker ps`) and that kind works (`kind get clusters`)")
    })?;
    if !docker::parse_names(&clusters.stdout).contains(&ctx.stack.cluster.name) {
        return Err(Error::prerequisite(
            format!("no kind cluster named `{}` (kind get clusters)", ctx.stack.cluster.name),
            "create it with `bookstore up`",
        ));
    }
    Ok(())
}

/// The node container runs and has every port mapping the cluster config asks for.
pub fn node_runs(ctx: &Ctx, inspect: &Cmd) -> Result<()> {
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

/// The old socat proxy containers, removed if there are any: they point at stale node IPs and
/// hold the host ports.
pub fn legacy_parts(ctx: &Ctx) -> Vec<Part> {
    let legacy = &ctx.stack.legacy_proxies;
    if legacy.is_empty() {
        return Vec::new();
    }
    vec![Part::quiet(vec![
        Op::Note("Remove the legacy socat proxy containers (after every check)".into()),
        Op::RemoveFound { list: docker::ps_named(legacy), remove: ctx.docker.rm_force(legacy) },
    ])]
}

/// Remove the containers `list` finds.
pub fn remove_found(ctx: &Ctx, list: &Cmd) -> Result<()> {
    let found: Vec<String> = docker::parse_names(&list.run()?.stdout).into_iter().collect();
    if found.is_empty() {
        return Ok(());
    }
    remove(ctx, &found, &ctx.docker.rm_force(&found))
}

/// Remove these legacy socat proxy containers (`rm`: their `docker rm -f`).
pub fn remove(ctx: &Ctx, names: &[String], rm: &Cmd) -> Result<()> {
    ctx.ui.warn(&format!(
        "removing legacy socat proxy container(s) {}: they point at stale node IPs; kind's port \
         mappings replace them",
        names.join(", ")
    ));
    rm.run()?;
    Ok(())
}
