//! Preflight: tools on PATH, the node engine answering, the cluster and its node, port bindings.
//! It changes nothing; the legacy proxy containers are removed by their own step, once every
//! check (the cluster-side input included) has passed.

use crate::engine::Node;
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::plan::Preflight;

use super::Ctx;
use super::op::{Op, Part};

/// The checks of `p`, as operations.
pub fn part(ctx: &Ctx, p: &Preflight) -> Part {
    let cluster = &ctx.stack.cluster;
    if cluster.shared() {
        // A shared cluster: kubectl is the only tool (no engine is even resolved); its API is
        // waited for next.
        let done =
            format!("kubectl; shared cluster {} (no node engine, kind or istioctl)", cluster.context());
        return Part::new("Checking prerequisites", vec![Op::Tools(vec!["kubectl"])], done);
    }
    let engine = ctx.engine();
    let tools = engine_tools(ctx, &p.tools);
    let mut ops = Vec::new();
    if !tools.is_empty() {
        ops.push(Op::Tools(tools.clone()));
    }
    if p.docker {
        ops.push(Op::EngineAnswers(engine.version()));
    }
    // Without `docker`, `up`'s detection already listed the cluster and checked its node.
    if p.cluster && p.docker {
        ops.push(Op::ListsCluster(engine.kind_get_clusters()));
        ops.push(Op::NodeRuns(engine.ps_cluster(&cluster.name)));
    }
    let done = if p.cluster {
        format!("cluster {} running, {} port mappings present", cluster.name, cluster.ports.len())
    } else {
        tools.join(", ")
    };
    Part::new("Checking prerequisites", ops, done)
}

/// The plan's tools with `docker` standing for the node engine's CLI (`podman`, `nerdctl`, …).
fn engine_tools(ctx: &Ctx, tools: &[&'static str]) -> Vec<&'static str> {
    let program: &'static str = ctx.engine().program.as_str();
    tools.iter().map(|t| if *t == "docker" { program } else { t }).collect()
}

/// `kind get clusters` lists the stack's cluster (stopped node containers count, as in kind).
pub fn lists_cluster(ctx: &Ctx, cmd: &Cmd) -> Result<()> {
    let engine = ctx.engine();
    let clusters = cmd.run().map_err(|e| {
        e.with_next(format!(
            "check that {} answers (`{} ps`) and that kind works (`kind get clusters`)",
            engine.kind.title(),
            engine.program
        ))
    })?;
    if !crate::engine::parse_names(&clusters.stdout).contains(&ctx.stack.cluster.name) {
        return Err(Error::prerequisite(
            format!("no kind cluster named `{}` (kind get clusters)", ctx.stack.cluster.name),
            "create it with `bookstore up`",
        ));
    }
    Ok(())
}

/// Every node container of the cluster (found by kind's labels: `ps` is
/// [`crate::engine::Engine::ps_cluster`]) runs, one of them the control plane, and they publish
/// every port mapping the cluster config asks for: read from `ps` alone (a running container's
/// published ports are its bindings).
pub fn node_runs(ctx: &Ctx, ps: &Cmd) -> Result<()> {
    let engine = ctx.engine();
    let listed = engine
        .parse_ps(&ps.run()?.stdout)
        .map_err(|problem| Error::step(format!("`{ps}`: {problem}"), "run the command above by hand"))?;
    if listed.is_empty() {
        return Err(Error::prerequisite(
            format!("`{ps}` finds no node container"),
            "create the cluster with `bookstore up`",
        ));
    }
    let mut nodes: Vec<Node> = listed.iter().map(|l| l.node()).collect();
    crate::engine::start_order(&mut nodes);
    check_nodes(ctx, &nodes)
}

/// What `ps` or `inspect` says of the nodes: one control plane, each running, every port
/// mapping of the config published.
pub fn check_nodes(ctx: &Ctx, nodes: &[Node]) -> Result<()> {
    one_control_plane(ctx, nodes)?;
    // A stopped container publishes nothing (`ps`): whether it runs is said first.
    let stopped: Vec<&Node> = nodes.iter().filter(|n| !n.running).collect();
    if !stopped.is_empty() {
        let what: Vec<String> = stopped.iter().map(|n| format!("`{}` is {}", n.name, n.status)).collect();
        let names: Vec<&str> = stopped.iter().map(|n| n.name.as_str()).collect();
        return Err(Error::prerequisite(
            format!("the kind node container {}", what.join(", ")),
            format!(
                "start it: `bookstore up` starts it and heals the stack (or `{} start {}`), then run again",
                ctx.engine().program,
                names.join(" ")
            ),
        ));
    }
    check_mappings(ctx, nodes)
}

/// One control plane: kind clusters with several do not survive a Docker restart (kind#1689).
pub fn one_control_plane(ctx: &Ctx, nodes: &[Node]) -> Result<()> {
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
pub fn check_mappings(ctx: &Ctx, nodes: &[Node]) -> Result<()> {
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

/// The old socat proxy containers, removed if there are any: they point at stale node IPs and
/// hold the host ports.
pub fn legacy_parts(ctx: &Ctx) -> Vec<Part> {
    let legacy = &ctx.stack.legacy_proxies;
    if legacy.is_empty() || ctx.stack.cluster.shared() {
        return Vec::new();
    }
    vec![Part::quiet(vec![
        Op::Note("Remove the legacy socat proxy containers (after every check)".into()),
        Op::RemoveFound { list: ctx.engine().ps_named(legacy), remove: ctx.engine_write.rm_force(legacy) },
    ])]
}

/// Remove the containers `list` finds.
pub fn remove_found(ctx: &Ctx, list: &Cmd) -> Result<()> {
    let found: Vec<String> = crate::engine::parse_names(&list.run()?.stdout).into_iter().collect();
    if found.is_empty() {
        return Ok(());
    }
    remove(ctx, &found, &ctx.engine_write.rm_force(&found))
}

/// Remove these legacy socat proxy containers (`rm`: their `<engine> rm -f`).
pub fn remove(ctx: &Ctx, names: &[String], rm: &Cmd) -> Result<()> {
    ctx.ui.warn(&format!(
        "removing legacy socat proxy container(s) {}: they point at stale node IPs; kind's port \
         mappings replace them",
        names.join(", ")
    ));
    rm.run()?;
    Ok(())
}

/// The cluster's Nodes that name another engine than this run's, said as a prerequisite error
/// (nothing is changed on the wrong engine's word); `Ok` when they agree or say nothing.
pub fn engine_agrees(
    engine: &crate::engine::Engine,
    provider_ids: &crate::observe::Read<Vec<(String, String)>>,
) -> Result<()> {
    let Ok(ids) = provider_ids else { return Ok(()) };
    let foreign = crate::judge::engine::disagreeing(engine.kind, ids);
    let Some((node, id)) = foreign.first() else { return Ok(()) };
    let provider = crate::judge::engine::provider_id(id).map_or("", |(p, _, _)| p);
    Err(Error::prerequisite(
        format!(
            "the cluster was built by {provider} (node {node}: spec.providerID {id}), but this run's node engine is {} ({})",
            engine.program, engine.why
        ),
        format!(
            "run bookstore on the engine that built it: `KIND_EXPERIMENTAL_PROVIDER={provider} bookstore …` (as for kind)"
        ),
    ))
}
