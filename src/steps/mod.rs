//! Steps: each plan step's execution and its `--dry-run` description, side by side so they cannot
//! drift apart. Steps call the typed wrappers (`kube`, `engine`, `connect`, `smoke`); they never
//! spawn processes or open sockets themselves.

mod bootstrap;
mod connectors;
mod converge;
mod failfast;
mod images;
mod inputs;
mod mesh;
pub(crate) mod nodes;
pub(crate) mod preflight;
pub(crate) mod rollout;

pub use crate::observe::Ctx;

use crate::error::{Error, Result};
use crate::plan::{self, Order, Step};

/// `up`'s detection and observation (read-only, with `--dry-run` too): no cluster → the full
/// bootstrap; a cluster whose stack is incomplete → the bootstrap without `kind create`; a
/// complete stack → the smallest remedy for what one observation shows.
pub fn plan_up(
    ctx: &Ctx,
    order: Order,
    settle: Option<std::time::Duration>,
    tiers: bool,
) -> Result<Vec<Step>> {
    let stack = ctx.stack;
    let bootstrap = |create: bool| bootstrap_plan(ctx, create, tiers);
    let step = ctx.ui.start("Observing the stack");
    let host = crate::observe::host(ctx)?;
    // The cluster's Nodes name the engine that built it: nothing is done on another engine's
    // word (no bootstrap beside a cluster the other engine has, no start of the wrong nodes). A
    // shared cluster has no engine of ours.
    if !stack.cluster.shared() {
        crate::observe::engine_agrees(ctx.engine(), &host.provider_ids)?;
    }
    let Some(node) = host.node else {
        step.done(&format!("no kind cluster {}: bootstrap from scratch", stack.cluster.name));
        return bootstrap(true);
    };
    let node = node.map_err(|e| {
        Error::step(
            e,
            format!("check the node containers (`{} ps -a`), then run again", ctx.engine().program),
        )
    })?;
    if !stack.cluster.shared() {
        preflight::check_mappings(ctx, &node)?;
        if !node.running {
            // Docker came back without it (kind's `on-failure:1` restarts only a node that failed).
            step.done(&format!(
                "the kind node {} is {} (exit {}): starting it",
                stack.cluster.control_plane_container(),
                node.status,
                node.exit_code
            ));
            return Ok(plan::start_nodes(order, settle, tiers));
        }
    }
    let observed = node.clone();
    let (step, obs) = match host.cluster {
        Some(Ok(obs)) => (step, obs),
        Some(Err(e @ (Error::Prerequisite { .. } | Error::Interrupted))) => return Err(e),
        // The API does not answer yet (it can refuse for a while after a Docker restart).
        _ => {
            step.done(&format!("cluster {} exists; its API does not answer yet", stack.cluster.name));
            mesh::wait_api(ctx)?;
            let step = ctx.ui.start("Observing the stack");
            let obs = crate::observe::cluster(ctx, node)?;
            (step, obs)
        }
    };
    let missing = crate::judge::workloads::missing(stack, |ns, name| obs.deployment(ns, name).is_some());
    if !missing.is_empty() && stack.cluster.shared() {
        return Err(Error::prerequisite(
            format!(
                "the stack is not on the shared cluster `{}` ({} of {} workloads missing: {}): bookstore \
                 heals the stack there but never bootstraps a shared cluster; nothing was changed",
                stack.cluster.context(),
                missing.len(),
                stack.workloads.len(),
                missing.join(", ")
            ),
            "deploy the stack there the way your team does (its manifests are under infra/k8s), or work \
             on the kind cluster (drop --context)",
        ));
    }
    if !missing.is_empty() {
        step.done(&format!(
            "the stack is incomplete ({} missing): resuming the bootstrap",
            missing.join(", ")
        ));
        return bootstrap(false);
    }
    let (step, obs) = match crate::judge::mesh::settled(stack, &obs) {
        Ok(()) => (step, obs),
        Err(why) => {
            step.done(&format!("the mesh is settling: {why}"));
            mesh::settle(ctx, &obs)?;
            let step = ctx.ui.start("Observing the stack");
            let obs = crate::observe::cluster(ctx, observed)?;
            (step, obs)
        }
    };
    ctx.seed(&obs);
    // The secret's keys are input: checked before the first change, whatever the remedy.
    let keys = ctx.credentials()?.len();
    let remedy = plan::converge::converge(stack, &obs, &plan::converge::Force::default());
    let restart = remedy.restarts().len();
    let mesh = if remedy.ztunnel.act == plan::converge::Act::Restart { "ztunnel and " } else { "" };
    let c = &stack.connect;
    step.done(&format!(
        "{} workloads present, secret {}/{} has its {keys} keys: {mesh}{restart} to restart",
        stack.workloads.len(),
        c.secret_namespace,
        c.secret_name
    ));
    let legacy = host.legacy.unwrap_or_default();
    Ok(plan::converge_steps(stack, remedy, legacy, order, settle))
}

/// A bootstrap's plan, after istioctl is judged (read-only, before anything is created): its
/// release in the stack's tested range (exit 3 otherwise), and the images its install and its
/// gateways run, from `istioctl manifest generate` with the install's own flags.
fn bootstrap_plan(ctx: &Ctx, create: bool, tiers: bool) -> Result<Vec<Step>> {
    let stack = ctx.stack;
    let b = &stack.bootstrap;
    let step = ctx.ui.start("Reading istioctl (its release, and the images its install runs)");
    let read = crate::observe::istio::read(stack)?;
    let version = plan::istio::check(&read.version?, &b.istio_range, &b.gateway_api_version)?;
    let manifest = read.manifest.map_err(|e| {
        e.with_next("check bootstrap.istio.install in the stack file (the flags of `istioctl install`)")
    })?;
    let images = plan::istio::images(&manifest).map_err(|p| {
        Error::step(
            format!("`{}` printed {p}", crate::kube::istioctl_manifest(&b.istio_install)),
            "run it by hand and check its output; check bootstrap.istio.install in the stack file",
        )
    })?;
    step.done(&format!(
        "istioctl {version} (tested: Istio {}); it runs {}",
        b.istio_range,
        images.all().join(", ")
    ));
    Ok(if tiers { plan::bootstrap_tiers(stack, create) } else { plan::bootstrap(stack, create, &images) })
}

pub fn run(ctx: &Ctx, steps: &[Step]) -> Result<()> {
    for step in steps {
        match step {
            Step::Preflight(p) => preflight::run(ctx, p)?,
            Step::WaitApi => mesh::wait_api(ctx)?,
            Step::CheckCluster => inputs::run(ctx)?,
            Step::LegacyProxies => preflight::legacy_proxies(ctx)?,
            Step::RestartMesh { settle } => mesh::restart(ctx, *settle)?,
            Step::RemoveLegacy(names) => preflight::remove_legacy(ctx, names)?,
            Step::Decide(remedy) => converge::decide(ctx, remedy),
            Step::Verify { escalate, order, settle } => converge::verify(ctx, *escalate, *order, *settle)?,
            Step::Rollout(graph) => rollout::run(ctx, graph)?,
            Step::Connectors => connectors::run_all(ctx)?,
            Step::Smoke => {
                let step = ctx.ui.start("Smoke-testing every route");
                crate::smoke::run(ctx.stack, ctx.ui, ctx.stack.smoke.timeout)?;
                step.done(&format!("{} checks pass", ctx.stack.smoke.checks.len()));
            }
            Step::BootstrapChecks { ports } => bootstrap::checks(ctx, *ports)?,
            Step::CreateCluster => bootstrap::create_cluster(ctx)?,
            Step::GatewayCrds => bootstrap::gateway_crds(ctx)?,
            Step::InstallIstio => bootstrap::istio(ctx)?,
            Step::Secrets => bootstrap::secrets(ctx)?,
            Step::Images => images::tiers_step(ctx)?,
            Step::Bootstrap { create, graph } => bootstrap::run_graph(ctx, *create, graph)?,
            Step::Tier(i) => bootstrap::tier(ctx, *i)?,
            Step::StartNodes => nodes::start(ctx)?,
            Step::Converge { order, settle, tiers } => {
                let steps = plan_up(ctx, *order, *settle, *tiers)?;
                if steps.contains(&Step::StartNodes) {
                    let node = ctx.stack.cluster.control_plane_container();
                    let program = &ctx.engine().program;
                    return Err(Error::prerequisite(
                        format!("the kind node {node} stopped again right after `{program} start {node}`"),
                        format!("see why: `{program} logs --tail 50 {node}`"),
                    ));
                }
                run(ctx, &steps)?;
            }
        }
    }
    Ok(())
}

/// Wait for the kube API of a node that has (re)started, with `budget`: at once when it
/// answers, else saying so once (the kubelet restarts etcd and the apiserver as static pods,
/// which takes minutes on some laptops). `watch` waits so before each heal.
pub fn wait_booting_api(ctx: &Ctx, budget: std::time::Duration) -> Result<()> {
    nodes::wait_booting_api(ctx, budget)
}

/// The API wait after a node start: [`nodes::BOOT`], or the stack's `api_timeout` if longer.
pub fn boot_budget(ctx: &Ctx) -> std::time::Duration {
    nodes::boot_budget(ctx)
}

/// `<engine> start` every stopped node of the cluster, control planes first (`watch` starts a
/// node that stopped together with Docker; `up` does it through [`plan::start_nodes`]).
pub fn start_nodes(ctx: &Ctx) -> Result<()> {
    nodes::start_stopped(ctx)
}

/// The exact commands and requests `run` would make, as pasteable lines, secrets masked.
pub fn describe(ctx: &Ctx, steps: &[Step]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for step in steps {
        match step {
            Step::Preflight(p) => preflight::describe(ctx, p, &mut lines),
            Step::WaitApi => mesh::describe_api(ctx, &mut lines),
            Step::CheckCluster => inputs::describe(ctx, &mut lines),
            Step::LegacyProxies => preflight::describe_legacy_proxies(ctx, &mut lines),
            Step::RestartMesh { settle } => mesh::describe_restart(ctx, *settle, &mut lines),
            Step::RemoveLegacy(names) => lines.push(format!(
                "{}   # legacy socat proxies, found above",
                ctx.engine().write().rm_force(names)
            )),
            Step::Decide(remedy) => {
                crate::observe::describe(ctx, &mut lines);
                converge::describe_decide(ctx, remedy, &mut lines);
            }
            Step::Verify { escalate, .. } => converge::describe_verify(ctx, *escalate, &mut lines)?,
            Step::Rollout(graph) => rollout::describe(ctx, graph, &mut lines)?,
            Step::Connectors => {
                lines.push("# Register the Debezium connectors".into());
                connectors::describe_all(ctx, &mut lines)?;
            }
            Step::Smoke => {
                lines.push(format!(
                    "# Smoke test: every route, retried until all pass (≤ {})",
                    crate::ui::human(ctx.stack.smoke.timeout)
                ));
                for check in &ctx.stack.smoke.checks {
                    lines.push(crate::observe::routes::request(ctx.stack, check)?.to_string());
                }
            }
            Step::BootstrapChecks { ports } => bootstrap::describe_checks(ctx, *ports, &mut lines),
            Step::StartNodes => nodes::describe(ctx, &mut lines),
            Step::Converge { .. } => lines.push(
                "# Then observe again and run what `bookstore up` plans (after a node start every pod \
                 restarted in place: ztunnel and the workloads it left stale, the connectors, the smoke test)"
                    .into(),
            ),
            other => bootstrap::describe(ctx, other, &mut lines)?,
        }
    }
    Ok(lines)
}
