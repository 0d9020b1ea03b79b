//! The kube API's readiness, and ztunnel's restart (Istio ambient root cause 1).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::event::{Event, Subject, TaskAction};
use crate::ui::human;
use crate::wait::{Attempt, Poll};

use super::Ctx;

pub fn wait_api(ctx: &Ctx) -> Result<()> {
    let deadline = ctx.stack.api_timeout;
    let step = ctx.ui.start(&format!("Waiting ≤ {} for the Kubernetes API", human(deadline)));
    let cmd = ctx.kube.readyz();
    let what = format!("the Kubernetes API of context {} to answer /readyz", ctx.kube.context());
    let next = "check the node container (`docker ps`); after a Docker restart the API can take a minute";
    Poll::new(&what, deadline, next).run(|| match cmd.run() {
        Ok(_) => Attempt::Done(()),
        Err(err) => {
            let explained = ctx.kube.explain(err);
            match explained {
                Error::Prerequisite { .. } => Attempt::Fail(explained),
                Error::Command { stderr_tail, .. } => {
                    Attempt::Retry(stderr_tail.lines().last().unwrap_or("").to_string())
                }
                other => Attempt::Retry(other.to_string()),
            }
        }
    })?;
    step.done("ready");
    Ok(())
}

pub fn restart(ctx: &Ctx, settle: Duration) -> Result<()> {
    let mesh = &ctx.stack.mesh;
    let step = ctx.ui.start(&format!("Restarting {} (waiting ≤ {})", mesh.daemonset, human(mesh.timeout)));
    let sent = std::time::Instant::now();
    let (workload, namespace) = (&mesh.daemonset, &mesh.namespace);
    ctx.ui.emit(Event::TaskStarted {
        subject: Subject::Workload { workload: workload.clone(), namespace: namespace.clone() },
        action: TaskAction::Restart,
        after: Vec::new(),
        released_by: None,
    });
    ctx.write.restart_all(&[("daemonset", mesh.namespace.as_str(), mesh.daemonset.as_str())])?;
    // The workloads' restarts follow its rollout: their kubectls start during it.
    ctx.write.warm_restarts(super::rollout::WARM);
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
    ctx.ui.emit(Event::WorkloadReady {
        workload: workload.clone(),
        namespace: namespace.clone(),
        duration_ms: sent.elapsed().as_millis() as u64,
        deployment: None,
        after: None,
    });
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
        ctx.write
            .restart_list(&[("daemonset", mesh.namespace.as_str(), mesh.daemonset.as_str())])
            .to_string(),
    );
    lines.push(
        ctx.kube.rollout_status("daemonset", &mesh.daemonset, &mesh.namespace, mesh.timeout).to_string(),
    );
    if !settle.is_zero() {
        lines.push(format!("sleep {}", settle.as_secs_f64()));
    }
}
