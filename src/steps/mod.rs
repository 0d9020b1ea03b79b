//! Steps: each plan step's execution and its `--dry-run` description, side by side so they cannot
//! drift apart. Steps call the typed wrappers (`kube`, `docker`, `connect`, `smoke`); they never
//! spawn processes or open sockets themselves.

mod bootstrap;
mod connectors;
mod failfast;
mod inputs;
mod mesh;
mod preflight;
pub(crate) mod rollout;

pub use preflight::install_hint;

pub use crate::observe::Ctx;

use crate::error::Result;
use crate::plan::{self, Known, Order, Step};

/// `up`'s detection (read-only): no cluster → the full bootstrap; a cluster whose stack is
/// incomplete → the bootstrap without `kind create`; a complete stack → the recovery.
pub fn plan_up(ctx: &Ctx, order: Order, settle: Option<std::time::Duration>) -> Result<Vec<Step>> {
    let step = ctx.ui.start("Detecting the stack");
    preflight::tools(&["kind", "kubectl", "docker"])?;
    preflight::docker_running()?;
    if !preflight::cluster_exists(ctx)? {
        step.done(&format!("no kind cluster {}: bootstrap from scratch", ctx.stack.cluster.name));
        return Ok(plan::bootstrap(ctx.stack, true));
    }
    preflight::node(ctx)?;
    step.done(&format!("cluster {} exists", ctx.stack.cluster.name));
    mesh::wait_api(ctx)?;
    let missing = rollout::missing_workloads(ctx)?;
    if missing.is_empty() {
        return Ok(plan::recover(ctx.stack, order, settle, Known { cluster_listed: true, api_ready: true }));
    }
    ctx.ui.info(&format!("the stack is incomplete ({} missing): resuming the bootstrap", missing.join(", ")));
    Ok(plan::bootstrap(ctx.stack, false))
}

pub fn run(ctx: &Ctx, steps: &[Step]) -> Result<()> {
    for step in steps {
        match step {
            Step::Preflight(p) => preflight::run(ctx, p)?,
            Step::WaitApi => mesh::wait_api(ctx)?,
            Step::CheckCluster => inputs::run(ctx)?,
            Step::RestartMesh { settle } => mesh::restart(ctx, *settle)?,
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
            Step::Images => bootstrap::images(ctx)?,
            Step::Tier(i) => bootstrap::tier(ctx, *i)?,
        }
    }
    Ok(())
}

/// The exact commands and requests `run` would make, as pasteable lines, secrets masked.
pub fn describe(ctx: &Ctx, steps: &[Step]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for step in steps {
        match step {
            Step::Preflight(p) => preflight::describe(ctx, p, &mut lines),
            Step::WaitApi => mesh::describe_api(ctx, &mut lines),
            Step::CheckCluster => inputs::describe(ctx, &mut lines),
            Step::RestartMesh { settle } => mesh::describe_restart(ctx, *settle, &mut lines),
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
            other => bootstrap::describe(ctx, other, &mut lines)?,
        }
    }
    Ok(lines)
}
