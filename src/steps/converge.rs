//! The convergent `up`'s own steps: report the remedy's decisions, and verify it with the smoke
//! test, escalating once when a route still fails (observe again, restart what backs the failing
//! routes, ztunnel first if its evidence points there), then stop with the findings (exit 4).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::event::{Decided, DecisionAction, Event};
use crate::observe;
use crate::plan::converge::{self, Act, Decision, Remedy};
use crate::plan::{Order, Step};

use super::Ctx;

/// Print what is restarted, waited for and registered, and why; one `decision` event for every
/// workload, ztunnel and connector.
pub fn decide(ctx: &Ctx, remedy: &Remedy) {
    let stack = ctx.stack;
    let mesh = &stack.mesh;
    let mut all = vec![(mesh.daemonset.as_str(), mesh.namespace.as_str(), &remedy.ztunnel, false)];
    all.extend(
        stack
            .workloads
            .iter()
            .zip(&remedy.workloads)
            .map(|(w, d)| (w.name.as_str(), w.namespace.as_str(), d, false)),
    );
    all.extend(
        stack
            .connect
            .connectors
            .iter()
            .zip(&remedy.connectors)
            .map(|(c, d)| (c.name.as_str(), stack.connect.secret_namespace.as_str(), d, true)),
    );
    for (name, namespace, d, connector) in &all {
        let action = match (d.act, connector) {
            (Act::Restart | Act::Replace, false) => DecisionAction::Restart,
            (Act::Restart | Act::Replace, true) => DecisionAction::Register,
            (Act::Await, _) => DecisionAction::Wait,
            (Act::Keep, _) => DecisionAction::Keep,
        };
        let subject = if *connector {
            Decided::Connector { connector: name.to_string() }
        } else {
            Decided::Workload { workload: name.to_string(), namespace: namespace.to_string() }
        };
        ctx.ui.emit(Event::Decision { subject, action, reason: d.why.join("; ") });
    }
    if remedy.nothing_to_do() {
        ctx.ui.ok_line("Stack healthy: nothing to restart");
        return;
    }
    // One line each, with its first reason (all of them: `--dry-run`, and the `decision` events).
    for (name, _, d, connector) in &all {
        if d.act != Act::Keep {
            let first = Decision { act: d.act, why: d.why.iter().take(1).cloned().collect() };
            let more = if d.why.len() > 1 { format!(" (+{} more)", d.why.len() - 1) } else { String::new() };
            ctx.ui.info(&format!("{}{more}", first.line(name, *connector)));
        }
    }
    let kept = remedy.workloads.iter().filter(|d| d.act == Act::Keep).count();
    if kept > 0 {
        ctx.ui.info(&format!("keep {kept} healthy workload(s) (`--dry-run` says why for each)"));
    }
}

pub fn describe_decide(ctx: &Ctx, remedy: &Remedy, lines: &mut Vec<String>) {
    if remedy.nothing_to_do() {
        lines.push("# Stack healthy: nothing to restart".into());
    } else {
        lines.push("# What is restarted, waited for, registered and kept, and why".into());
    }
    lines.extend(remedy.lines(ctx.stack).into_iter().map(|l| format!("#   {l}")));
}

/// The smoke test; when it fails and `escalate` is set, one escalation and one more check.
pub fn verify(ctx: &Ctx, escalate: bool, order: Order, settle: Duration) -> Result<()> {
    let stack = ctx.stack;
    let step = ctx.ui.start("Smoke-testing every route");
    let failed = match crate::smoke::check(stack, ctx.ui, stack.smoke.timeout) {
        Ok(()) => {
            step.done(&format!("{} checks pass", stack.smoke.checks.len()));
            return Ok(());
        }
        Err(failed) => failed,
    };
    drop(step);
    if !escalate || failed.probes.is_empty() {
        return Err(with_findings(ctx, failed.error));
    }
    ctx.ui.warn(&format!("{} route(s) still fail after the remedy: escalating once", failed.probes.len()));
    let step = ctx.ui.start("Observing the stack again");
    let nodes = observe::nodes(ctx).map_err(|e| {
        Error::step(
            e,
            format!("check the node containers (`{} ps -a`), then run again", ctx.engine().program),
        )
    })?;
    let obs = observe::cluster(ctx, nodes)?;
    let force = converge::escalate(stack, &obs, &failed.probes);
    let remedy = converge::converge(stack, &obs, &force);
    step.done(&format!(
        "{} to restart",
        remedy.restarts().len() + usize::from(remedy.ztunnel.act == Act::Restart)
    ));
    ctx.seed(&obs);
    let mut steps = crate::plan::converge_steps(stack, remedy, Vec::new(), order, Some(settle));
    if let Some(Step::Verify { escalate, .. }) = steps.last_mut() {
        *escalate = false;
    }
    super::run(ctx, &steps)
}

/// A failed smoke test, with the doctor's findings for what is left printed first.
fn with_findings(ctx: &Ctx, error: Error) -> Error {
    if let Ok(nodes) = observe::nodes(ctx)
        && let Ok(obs) = observe::cluster(ctx, nodes)
    {
        crate::doctor::report_cluster(ctx, &obs);
    }
    error
}

pub fn describe_verify(ctx: &Ctx, escalate: bool, lines: &mut Vec<String>) -> Result<()> {
    lines.push(format!(
        "# Smoke test: every route, retried until all pass (≤ {})",
        crate::ui::human(ctx.stack.smoke.timeout)
    ));
    for check in &ctx.stack.smoke.checks {
        lines.push(observe::routes::request(ctx.stack, check)?.to_string());
    }
    if escalate {
        lines.push(
            "# if a route still fails: observe again (the reads above), restart what backs the failing routes \
             (ztunnel first if its log points there), smoke-test once more; then stop with the findings (exit 4)"
                .into(),
        );
    }
    Ok(())
}
