//! The one executor of the steps' operations ([`super::op`]): [`run_part`] runs them, [`lines`]
//! prints the same values for `--dry-run`. Every variant is matched in both (no `_ =>`); what is
//! more than one command goes to its named handler in its step's module.

use crate::error::Result;
use crate::ui::human;

use super::op::{Op, Part, line};
use super::{Ctx, bootstrap, connectors, converge, images, inputs, mesh, nodes, preflight, rollout};

/// Run a part: its progress line, its operations in order, its note.
pub fn run_part(ctx: &Ctx, part: &Part) -> Result<String> {
    let step = part.title.as_ref().map(|t| ctx.ui.start(t));
    let mut notes = Vec::new();
    for op in &part.ops {
        notes.extend(run(ctx, op)?);
    }
    let note = if notes.is_empty() { part.done.clone() } else { notes.join(", ") };
    if let Some(step) = step {
        step.done(&note);
    }
    Ok(note)
}

/// Run one operation; some give the note of their part.
pub fn run(ctx: &Ctx, op: &Op) -> Result<Option<String>> {
    match op {
        Op::Note(_) => {}
        Op::Run { cmd, .. } => {
            cmd.run().map_err(|e| if cmd.program() == "kubectl" { ctx.kube.explain(e) } else { e })?;
        }
        Op::Pause(d) => crate::wait::sleep(*d)?,
        Op::Tools(tools) => crate::observe::tools(tools)?,
        Op::EngineAnswers(cmd) => crate::observe::engine_running(ctx.engine(), cmd)?,
        Op::ListsCluster(cmd) => preflight::lists_cluster(ctx, cmd)?,
        Op::NodeRuns(cmd) => preflight::node_runs(ctx, cmd)?,
        Op::Workloads(_) => return inputs::workloads(ctx).map(Some),
        Op::SecretKeys { .. } => return inputs::secret_keys(ctx).map(Some),
        Op::Deployed => bootstrap::deployed(ctx)?,
        Op::PortsFree => bootstrap::ports_free(ctx)?,
        Op::ImagePresent { cmd, image, context_env } => bootstrap::image_present(cmd, image, context_env)?,
        Op::Api { cmd, deadline } => mesh::wait_api(ctx, cmd, *deadline)?,
        Op::RolledOut { targets, timeout, .. } => rollout::await_ready(ctx, targets, *timeout)?,
        Op::RemoveFound { list, .. } => preflight::remove_found(ctx, list)?,
        Op::Remove { names, cmd } => preflight::remove(ctx, names, cmd)?,
        Op::CreateCluster(cmd) => bootstrap::create_cluster(ctx, cmd)?,
        Op::RestartMesh { status, .. } => mesh::restart(ctx, status)?,
        Op::RestartZtunnelOn { nodes, deletes, .. } => mesh::restart_on(ctx, nodes, deletes)?,
        Op::Secrets { list, apply, namespaces, .. } => {
            return bootstrap::secrets(ctx, list, apply, *namespaces).map(Some);
        }
        Op::LoadImages => return images::tiers_step(ctx).map(Some),
        Op::StartNodes => nodes::start(ctx)?,
        Op::Converge { order, settle, tiers } => super::converge_again(ctx, *order, *settle, *tiers)?,
        Op::Graph(graph) => rollout::run(ctx, graph)?,
        Op::Register(i) => return connectors::register_one(ctx, *i).map(Some),
        Op::Smoke => crate::smoke::run(ctx.stack, ctx.ui, ctx.stack.smoke.timeout)?,
        Op::Decide(remedy) => converge::decide(ctx, remedy),
        Op::Verify { escalate, order, settle } => converge::verify(ctx, *escalate, *order, *settle)?,
        Op::Bootstrap(on_graph) => bootstrap::run_graph(ctx, on_graph, run_part)?,
    }
    Ok(None)
}

/// The pasteable lines of these parts (`--dry-run`): their commands and requests, secrets
/// masked, each with why it runs.
pub fn lines(ctx: &Ctx, parts: &[Part]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for part in parts {
        for op in &part.ops {
            print(ctx, op, &mut out)?;
        }
    }
    Ok(out)
}

/// The lines of one operation.
pub fn print(ctx: &Ctx, op: &Op, out: &mut Vec<String>) -> Result<()> {
    let stack = ctx.stack;
    match op {
        Op::Note(text) => out.push(format!("# {text}")),
        Op::Run { cmd, why } => out.push(line(cmd, why)),
        Op::Pause(d) => out.push(format!("sleep {}", d.as_secs_f64())),
        Op::Tools(tools) => out.push(format!("# Preflight: {} on PATH", tools.join(", "))),
        Op::EngineAnswers(cmd) => {
            ctx.engine().describe(out);
            out.push(cmd.to_string());
        }
        Op::ListsCluster(cmd) => out.push(line(cmd, &format!("must list {}", stack.cluster.name))),
        Op::NodeRuns(cmd) => {
            let ports: Vec<String> =
                stack.cluster.ports.iter().map(|m| m.container_port.to_string()).collect();
            out.push(line(
                cmd,
                &format!("the node containers, by kind's label: running, publishing {}", ports.join(", ")),
            ));
        }
        Op::Workloads(cmd) => out.push(line(cmd, "every workload exists")),
        Op::SecretKeys { cmd, why } => out.push(line(cmd, why)),
        Op::Deployed => {}
        Op::PortsFree => {
            let list: Vec<String> =
                stack.cluster.ports.iter().filter_map(|m| m.host_port).map(|p| p.to_string()).collect();
            out.push(format!("# host ports {} must be free", list.join(", ")));
        }
        Op::ImagePresent { cmd, context_env, .. } => {
            out.push(line(cmd, &format!("else build from ${context_env}")))
        }
        Op::Api { cmd, deadline } => {
            out.push(format!("# Wait for the Kubernetes API (retried, ≤ {})", human(*deadline)));
            out.push(cmd.to_string());
        }
        Op::RolledOut { watch, targets, .. } => {
            let list: Vec<String> = targets.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
            out.push(line(watch, &format!("until {} rolled out", list.join(", "))));
            if !ctx.tolerate {
                out.push(line(&ctx.kube.watch_pods(), "fail fast: every pod's state"));
                out.push(line(&ctx.kube.list_events(), "fail fast: only while a waited-for pod is Pending"));
            }
        }
        Op::RemoveFound { list, remove } => {
            out.push(list.to_string());
            out.push(line(remove, "only those found"));
        }
        Op::Remove { cmd, .. } => out.push(line(cmd, "legacy socat proxies, found above")),
        Op::CreateCluster(cmd) => out.push(cmd.to_string()),
        Op::RestartMesh { restart, status } => {
            out.push(restart.to_string());
            out.push(status.to_string());
        }
        Op::RestartZtunnelOn { watch, deletes, .. } => {
            out.push(line(
                watch,
                &format!("one watch: a new pod of it Ready on each node (≤ {})", human(stack.mesh.timeout)),
            ));
            for cmd in deletes {
                out.push(cmd.to_string());
            }
        }
        Op::Secrets { list, reads, apply, namespaces } => {
            out.push(line(list, "the Secrets that exist are kept"));
            for read in reads {
                out.push(line(read, "only if it exists already: a key of it is copied"));
            }
            let what =
                if *namespaces { "the namespaces and the missing Secrets" } else { "the missing Secrets" };
            out.push(line(apply, &format!("{what}, generated here, on stdin; nothing when none is missing")));
        }
        Op::LoadImages => images::describe_tiers(ctx, out),
        Op::StartNodes => nodes::describe(ctx, out),
        Op::Converge { .. } => out.push(
            "# Then observe again and run what `bookstore up` plans (after a node start every pod \
             restarted in place: ztunnel and the workloads it left stale, the connectors, the smoke test)"
                .into(),
        ),
        Op::Graph(graph) => rollout::describe(ctx, graph, out)?,
        Op::Register(i) => connectors::describe(ctx, &stack.connect.connectors[*i], out)?,
        Op::Smoke => {
            out.push(format!(
                "# Smoke test: every route, retried until all pass (≤ {})",
                human(stack.smoke.timeout)
            ));
            for check in &stack.smoke.checks {
                out.push(crate::observe::routes::request(stack, check)?.to_string());
            }
        }
        Op::Decide(remedy) => converge::describe_decide(ctx, remedy, out),
        Op::Verify { escalate, .. } => converge::describe_verify(ctx, *escalate, out)?,
        Op::Bootstrap(on_graph) => bootstrap::describe_graph(ctx, on_graph, lines, out)?,
    }
    Ok(())
}
