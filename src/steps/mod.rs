//! Steps: each plan step's execution and its `--dry-run` description, side by side so they cannot
//! drift apart. Steps call the typed wrappers (`kube`, `docker`, `connect`, `smoke`); they never
//! spawn processes or open sockets themselves.

mod connectors;
mod mesh;
mod preflight;
mod rollout;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::error::Result;
use crate::kube::Kubectl;
use crate::plan::Step;
use crate::secret::Secret;
use crate::stack::Stack;
use crate::ui::Ui;

pub use preflight::MissingCluster;

/// What every step can reach.
pub struct Ctx<'a> {
    pub stack: &'a Stack,
    pub kube: Kubectl,
    pub ui: &'a Ui,
    pub missing_cluster: MissingCluster,
    /// The connector credentials, read from the secret once per run.
    secrets: OnceLock<BTreeMap<String, Secret>>,
}

impl<'a> Ctx<'a> {
    pub fn new(stack: &'a Stack, ui: &'a Ui, missing_cluster: MissingCluster) -> Ctx<'a> {
        Ctx {
            stack,
            kube: Kubectl::new(stack.cluster.context()),
            ui,
            missing_cluster,
            secrets: OnceLock::new(),
        }
    }

    /// The connector credentials (read once, in-process, never printed).
    fn credentials(&self) -> Result<&BTreeMap<String, Secret>> {
        if let Some(s) = self.secrets.get() {
            return Ok(s);
        }
        let connect = &self.stack.connect;
        let keys: Vec<&str> =
            connect.connectors.iter().flat_map(|c| [c.user_key.as_str(), c.password_key.as_str()]).collect();
        let read = self.kube.read_secret(&connect.secret_namespace, &connect.secret_name, &keys)?;
        Ok(self.secrets.get_or_init(|| read))
    }
}

pub fn run(ctx: &Ctx, steps: &[Step]) -> Result<()> {
    for step in steps {
        match step {
            Step::Preflight(p) => preflight::run(ctx, p)?,
            Step::WaitApi => mesh::wait_api(ctx)?,
            Step::RestartMesh { settle } => mesh::restart(ctx, *settle)?,
            Step::Rollout(graph) => rollout::run(ctx, graph)?,
            Step::Connectors => connectors::run_all(ctx)?,
            Step::Smoke => {
                let step = ctx.ui.start("Smoke-testing every route");
                crate::smoke::run(ctx.stack, ctx.ui, ctx.stack.smoke.timeout)?;
                step.done(&format!("{} checks pass", ctx.stack.smoke.checks.len()));
            }
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
                    lines.push(crate::smoke::request(ctx.stack, check)?.to_string());
                }
            }
        }
    }
    Ok(lines)
}
