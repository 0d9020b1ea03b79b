//! The kube API's readiness, and ztunnel's restart (Istio ambient root cause 1).

use std::time::Duration;

use serde_json::json;

use crate::error::{Error, Result};
use crate::ui::human;

use super::Ctx;

pub fn wait_api(ctx: &Ctx) -> Result<()> {
    wait_api_within(ctx, ctx.stack.api_timeout, "")
}

/// The wait for `/readyz`, within `deadline`; `why` follows the step's title.
pub fn wait_api_within(ctx: &Ctx, deadline: Duration, why: &str) -> Result<()> {
    let step = ctx.ui.start(&format!("Waiting ≤ {} for the Kubernetes API{why}", human(deadline)));
    let next = "check the node container (`docker ps`); after a Docker restart the API can take a minute";
    crate::observe::wait_api(ctx, deadline, next)?;
    step.done("ready");
    Ok(())
}

/// After a node restart nothing is judged until the mesh has settled there
/// (`judge::mesh::settled`: istio-cni-node and ztunnel Ready, every meshed pod with a running
/// sandbox): wait for it, read-only (`--dry-run` too), re-reading the pods only. Past the
/// deadline the stack is judged as it is: what the mesh has not proven it adopted is restarted.
pub fn settle(ctx: &Ctx, obs: &crate::observe::Observation) -> Result<()> {
    let stack = ctx.stack;
    let deadline = stack.mesh.timeout;
    let step = ctx.ui.start(&format!(
        "Waiting ≤ {} for the mesh to settle (istio-cni-node and ztunnel Ready, every meshed pod's sandbox running)",
        human(deadline)
    ));
    let start = std::time::Instant::now();
    let cmd = ctx.kube.list_deployments_and_pods();
    loop {
        crate::wait::sleep(Duration::from_millis(250))?;
        let out = ctx.kube.run(&cmd)?;
        let (deployments, pods) = crate::cluster::parse_deployments_and_pods(&out.stdout)
            .map_err(|p| Error::step(format!("`{cmd}`: {p}"), "run it by hand"))?;
        let now = crate::observe::Observation { deployments, pods, ..obs.clone() };
        match crate::judge::mesh::settled(stack, &now) {
            Ok(()) => {
                step.done(&format!("settled after {}", human(start.elapsed())));
                return Ok(());
            }
            Err(why) if start.elapsed() >= deadline => {
                drop(step);
                ctx.ui.warn(&format!(
                    "the mesh did not settle within {} ({why}): judging it as it is; what it has not proven it \
                     adopted is restarted",
                    human(deadline)
                ));
                return Ok(());
            }
            Err(_) => {}
        }
    }
}

pub fn restart(ctx: &Ctx, settle: Duration) -> Result<()> {
    let mesh = &ctx.stack.mesh;
    let step = ctx.ui.start(&format!("Restarting {} (waiting ≤ {})", mesh.daemonset, human(mesh.timeout)));
    let sent = std::time::Instant::now();
    let (workload, namespace) = (&mesh.daemonset, &mesh.namespace);
    ctx.ui.emit(
        "task_started",
        json!({"workload": workload, "namespace": namespace, "action": "restart", "after": [], "released_by": null}),
    );
    ctx.kube.restart_all(&[("daemonset", mesh.namespace.as_str(), mesh.daemonset.as_str())])?;
    // The workloads' restarts follow its rollout: their kubectls start during it.
    ctx.kube.warm_restarts(super::rollout::WARM);
    // `rollout status` within the deadline; a transient API failure mid-wait is retried with
    // the time that is left.
    let start = std::time::Instant::now();
    let timed_out = |detail: String| Error::Timeout {
        what: format!("daemonset {}/{} rollout", mesh.namespace, mesh.daemonset),
        after: mesh.timeout,
        detail,
        next: format!(
            "see why: `kubectl --context {} -n {} get pods -l app={} -o wide` and its logs",
            ctx.kube.context(),
            mesh.namespace,
            mesh.daemonset
        ),
    };
    loop {
        let left = mesh.timeout.saturating_sub(start.elapsed());
        let status = ctx.kube.rollout_status("daemonset", &mesh.daemonset, &mesh.namespace, left);
        match status.run() {
            Ok(_) => break,
            Err(Error::Command { stderr_tail, .. }) if stderr_tail.contains("timed out") => {
                let diagnosis = ctx.kube.diagnose(&mesh.namespace, &mesh.daemonset);
                return Err(timed_out(format!("{stderr_tail}\n{diagnosis}")));
            }
            Err(Error::Command { stderr_tail, .. })
                if crate::kube::transient(&stderr_tail) && left > Duration::from_secs(1) =>
            {
                crate::wait::sleep(Duration::from_millis(500))?;
            }
            Err(other) => return Err(ctx.kube.explain(other)),
        }
    }
    ctx.ui.emit(
        "workload_ready",
        json!({"workload": workload, "namespace": namespace, "duration_ms": sent.elapsed().as_millis() as u64}),
    );
    step.done("rolled out");
    if !settle.is_zero() {
        let step = ctx.ui.start(&format!("Letting the mesh settle for {}", human(settle)));
        crate::wait::sleep(settle)?;
        step.done("");
    }
    Ok(())
}

pub fn describe_api(ctx: &Ctx, lines: &mut Vec<String>) {
    lines.push(format!("# Wait for the Kubernetes API (retried, ≤ {})", human(ctx.stack.api_timeout)));
    lines.push(ctx.kube.readyz().to_string());
}

pub fn describe_restart(ctx: &Ctx, settle: Duration, lines: &mut Vec<String>) {
    let mesh = &ctx.stack.mesh;
    lines.push("# Restart ztunnel first, so every workload re-registers with a fresh instance".into());
    lines.push(
        ctx.kube.restart_list(&[("daemonset", mesh.namespace.as_str(), mesh.daemonset.as_str())]).to_string(),
    );
    lines.push(
        ctx.kube.rollout_status("daemonset", &mesh.daemonset, &mesh.namespace, mesh.timeout).to_string(),
    );
    if !settle.is_zero() {
        lines.push(format!("sleep {}", settle.as_secs_f64()));
    }
}
