//! Steps: each plan step's execution and its `--dry-run` description, side by side so they cannot
//! drift apart. Steps call the typed wrappers (`kube`, `engine`, `connect`, `smoke`); they never
//! spawn processes or open sockets themselves.

mod bootstrap;
mod connectors;
mod converge;
pub mod down;
mod executor;
mod failfast;
mod images;
mod inputs;
mod mesh;
pub(crate) mod nodes;
pub mod op;
pub(crate) mod preflight;
pub(crate) mod rollout;
pub mod service;

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::engine::{Engine, EngineWrite};
use crate::kube::KubectlWrite;
use crate::stack::Stack;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::plan::{self, Order, Step};
use crate::ui::Ui;

use op::{Op, Part};

/// What a step can reach: the read-only context ([`crate::observe::Ctx`], by `Deref`) and the
/// change halves of the wrappers, which only the steps hold.
pub struct Ctx<'a> {
    read: crate::observe::Ctx<'a>,
    /// kubectl's changes (apply, rollout restart).
    pub write: KubectlWrite,
    /// The node engine's changes, kind's among them (start a node, remove a container, pull,
    /// build, save, kind create/load/delete): the engine of the run, its endpoint pinned.
    pub engine_write: EngineWrite<'static>,
}

impl<'a> Ctx<'a> {
    pub fn new(stack: &'a Stack, ui: &'a Ui) -> Ctx<'a> {
        let read = crate::observe::Ctx::new(stack, ui);
        let write = KubectlWrite::new(&read.kube);
        Ctx { read, write, engine_write: Engine::for_run().write() }
    }
}

impl<'a> Deref for Ctx<'a> {
    type Target = crate::observe::Ctx<'a>;

    fn deref(&self) -> &Self::Target {
        &self.read
    }
}

impl DerefMut for Ctx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.read
    }
}

impl Drop for Ctx<'_> {
    /// The restart kubectls started ahead ([`KubectlWrite::warm_restarts`]) that no restart took
    /// are killed and reaped with the run's context, whatever the outcome.
    fn drop(&mut self) {
        self.write.cool();
    }
}

/// The context a command's steps run in: the stack, `--tolerate`.
fn ctx<'a>(config: &'a Config, ui: &'a Ui) -> Ctx<'a> {
    let mut ctx = Ctx::new(&config.stack, ui);
    ctx.tolerate = config.tolerate;
    ctx
}

/// `recover`, `connectors`, `smoke`: their steps, run or printed.
pub fn execute(config: &Config, ui: &Ui, title: &str, steps: &[Step]) -> Result<()> {
    run_or_print(config, &ctx(config, ui), title, steps, Instant::now(), crate::exec::spawned())
}

/// `bookstore up` (and each heal of `watch`): detection and the observation (read-only, with
/// `--dry-run` too, so the printed plan is the one `up` would run here), then the bootstrap, its
/// resumption, or the convergent recovery. One context for the observation and the run: what
/// was read is not read again. `tiers`: a bootstrap goes tier by tier (`up --tiers`).
pub fn up(config: &Config, ui: &Ui, order: Order, settle: Option<Duration>, tiers: bool) -> Result<()> {
    let (started, spawned) = (Instant::now(), crate::exec::spawned());
    let ctx = ctx(config, ui);
    let steps = plan_up(&ctx, order, settle, tiers)?;
    if config.dry_run {
        // What was read, then what runs.
        let mut lines = Vec::new();
        crate::observe::describe(&ctx, &mut lines);
        if steps.iter().any(|s| matches!(s, Step::BootstrapChecks { .. })) {
            // A bootstrap's plan reads istioctl first (its release, the images it installs).
            crate::observe::istio::describe(ctx.stack, &mut lines);
        }
        lines.extend(describe(&ctx, &steps)?);
        ui.plan(&lines);
        return Ok(());
    }
    run_or_print(config, &ctx, "up", &steps, started, spawned)
}

/// Run the steps (or print them with `--dry-run`); `started` and `spawned`: when the command
/// began and the child count then (for `up`, before its observation).
fn run_or_print(
    config: &Config,
    ctx: &Ctx,
    title: &str,
    steps: &[Step],
    started: Instant,
    spawned: usize,
) -> Result<()> {
    let ui = ctx.ui;
    if config.dry_run {
        ui.plan(&describe(ctx, steps)?);
        return Ok(());
    }
    run(ctx, steps)?;
    ui.ok_line(&format!(
        "bookstore {title} finished in {} ({} commands run)",
        crate::ui::human(started.elapsed()),
        crate::exec::spawned() - spawned
    ));
    Ok(())
}

/// `up`'s detection and observation (read-only, with `--dry-run` too): no cluster → the full
/// bootstrap; a cluster whose stack is incomplete → the bootstrap without `kind create`; a
/// complete stack → the smallest remedy for what one observation shows.
pub fn plan_up(ctx: &Ctx, order: Order, settle: Option<Duration>, tiers: bool) -> Result<Vec<Step>> {
    let stack = ctx.stack;
    let bootstrap = |create: bool| bootstrap_plan(ctx, create, tiers);
    let step = ctx.ui.start("Observing the stack");
    let host = crate::observe::host(ctx)?;
    // The cluster's Nodes name the engine that built it: nothing is done on another engine's
    // word (no bootstrap beside a cluster the other engine has, no start of the wrong nodes). A
    // shared cluster has no engine of ours.
    if !stack.cluster.shared() {
        preflight::engine_agrees(ctx.engine(), &host.provider_ids)?;
    }
    let Some(nodes) = host.nodes else {
        step.done(&format!("no kind cluster {}: bootstrap from scratch", stack.cluster.name));
        return bootstrap(true);
    };
    let nodes = nodes.map_err(|e| {
        Error::step(
            e,
            format!("check the node containers (`{} ps -a`), then run again", ctx.engine().program),
        )
    })?;
    // A shared cluster has no node container of ours: its Nodes are read from the API.
    if !stack.cluster.shared() {
        preflight::one_control_plane(ctx, &nodes)?;
        preflight::check_mappings(ctx, &nodes)?;
        let stopped: Vec<String> = nodes
            .iter()
            .filter(|n| !n.running)
            .map(|n| format!("{} is {} (exit {})", n.name, n.status, n.exit_code))
            .collect();
        if !stopped.is_empty() {
            // Docker came back without it (kind's `on-failure:1` restarts only a node that failed).
            step.done(&format!("the kind node {}: starting it", stopped.join(", ")));
            return Ok(plan::start_nodes(order, settle, tiers));
        }
    }
    let observed = nodes.clone();
    let (step, obs) = match host.cluster {
        Some(Ok(obs)) => (step, obs),
        Some(Err(e @ (Error::Prerequisite { .. } | Error::Interrupted))) => return Err(e),
        // The API does not answer yet (it can refuse for a while after a Docker restart).
        _ => {
            step.done(&format!("cluster {} exists; its API does not answer yet", stack.cluster.name));
            executor::run_part(ctx, &mesh::api_part(ctx))?;
            let step = ctx.ui.start("Observing the stack");
            let obs = crate::observe::cluster(ctx, nodes)?;
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

/// Each plan step's operations, as values (one match, every variant): what [`run`] executes and
/// [`describe`] prints.
pub fn parts(ctx: &Ctx, step: &Step) -> Result<Vec<Part>> {
    let stack = ctx.stack;
    let quiet = |op: Op| vec![Part::quiet(vec![op])];
    Ok(match step {
        Step::Preflight(p) => vec![preflight::part(ctx, p)],
        Step::WaitApi => vec![mesh::api_part(ctx)],
        Step::CheckCluster => vec![inputs::part(ctx)],
        Step::LegacyProxies => preflight::legacy_parts(ctx),
        Step::RestartMesh { settle } => mesh::restart_parts(ctx, *settle),
        Step::RestartZtunnel { nodes, settle } => mesh::restart_on_parts(ctx, nodes, *settle),
        Step::Rollout(graph) => quiet(Op::Graph(graph.clone())),
        Step::Connectors => connectors::parts(ctx),
        Step::Smoke => vec![Part::new(
            "Smoke-testing every route",
            vec![Op::Smoke],
            format!("{} checks pass", stack.smoke.checks.len()),
        )],
        Step::RemoveLegacy(names) => {
            quiet(Op::Remove { names: names.clone(), cmd: ctx.engine_write.rm_force(names) })
        }
        Step::Decide(remedy) => quiet(Op::Decide(remedy.clone())),
        Step::Verify { escalate, order, settle } => {
            quiet(Op::Verify { escalate: *escalate, order: *order, settle: *settle })
        }
        Step::BootstrapChecks { ports } => vec![bootstrap::checks_part(ctx, *ports)],
        Step::Bootstrap { create, graph } => {
            quiet(Op::Bootstrap(Box::new(bootstrap::on_graph(ctx, *create, graph))))
        }
        Step::CreateCluster => vec![bootstrap::create_part(ctx)],
        Step::GatewayCrds => {
            vec![Part::new("Installing the Gateway API CRDs", bootstrap::crds_ops(ctx), "established")]
        }
        Step::InstallIstio => vec![bootstrap::istio_part(ctx)],
        Step::Secrets => vec![Part::new(
            "Creating the Secrets (existing ones are kept)",
            vec![bootstrap::secrets_op(ctx, false)],
            "",
        )],
        Step::Images => vec![Part::new(
            format!("Loading {} images into the cluster", stack.bootstrap.images.len()),
            vec![Op::LoadImages],
            "",
        )],
        Step::Tier(i) => vec![bootstrap::tier_part(ctx, *i)],
        Step::StartNodes => quiet(Op::StartNodes),
        Step::Converge { order, settle, tiers } => {
            quiet(Op::Converge { order: *order, settle: *settle, tiers: *tiers })
        }
    })
}

/// Run the steps: each one's operations, the moment it is its turn.
pub fn run(ctx: &Ctx, steps: &[Step]) -> Result<()> {
    for step in steps {
        for part in parts(ctx, step)? {
            executor::run_part(ctx, &part)?;
        }
    }
    Ok(())
}

/// After a node start: observe again and run what `up` plans (every pod restarted in place).
fn converge_again(ctx: &Ctx, order: Order, settle: Option<Duration>, tiers: bool) -> Result<()> {
    let steps = plan_up(ctx, order, settle, tiers)?;
    if steps.contains(&Step::StartNodes) {
        let node = ctx.stack.cluster.control_plane_container();
        let program = &ctx.engine().program;
        return Err(Error::prerequisite(
            format!("the kind node {node} stopped again right after `{program} start {node}`"),
            format!("see why: `{program} logs --tail 50 {node}`"),
        ));
    }
    run(ctx, &steps)
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

/// The exact commands and requests `run` would make, as pasteable lines, secrets masked: the
/// same operations, printed.
pub fn describe(ctx: &Ctx, steps: &[Step]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for step in steps {
        lines.extend(executor::lines(ctx, &parts(ctx, step)?)?);
    }
    Ok(lines)
}
