//! The kube API's readiness, and ztunnel's restart (Istio ambient root cause 1): the guide's
//! `rollout restart` of its DaemonSet (`recover`), or on the nodes that need it only (`up`).

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::{Event, Subject, TaskAction};
use crate::exec::Cmd;
use crate::plan::converge::NodeRestart;
use crate::ui::human;
use crate::wait::{Attempt, Poll};

use super::Ctx;
use super::op::{Op, Part};

/// Wait for the API: `/readyz` retried until it answers or the deadline.
pub fn api_part(ctx: &Ctx) -> Part {
    let deadline = ctx.stack.api_timeout;
    Part::new(
        format!("Waiting ≤ {} for the Kubernetes API", human(deadline)),
        vec![Op::Api { cmd: ctx.kube.readyz(), deadline }],
        "ready",
    )
}

/// The wait for `/readyz`, within `deadline`; `why` follows the step's title.
pub fn wait_api_within(ctx: &Ctx, deadline: Duration, why: &str) -> Result<()> {
    let step = ctx.ui.start(&format!("Waiting ≤ {} for the Kubernetes API{why}", human(deadline)));
    let next = "check the node container (`docker ps`); after a Docker restart the API can take a minute";
    crate::observe::wait_api(ctx, deadline, next)?;
    step.done("ready");
    Ok(())
}

/// The one `/readyz` wait ([`crate::observe::wait_api`]: `cmd` is its command).
pub fn wait_api(ctx: &Ctx, _cmd: &Cmd, deadline: Duration) -> Result<()> {
    let next = "check the node container (`docker ps`); after a Docker restart the API can take a minute";
    crate::observe::wait_api(ctx, deadline, next)
}

/// After a node restart nothing is judged until the mesh has settled there
/// (`judge::mesh::settled`: istio-cni-node and ztunnel Ready, every meshed pod with a running
/// sandbox): wait for it, read-only (`--dry-run` too), re-reading the pods only (through the one
/// retry loop, [`Poll`]). Past the deadline the stack is judged as it is: what the mesh has not
/// proven it adopted is restarted.
pub fn settle(ctx: &Ctx, obs: &crate::observe::Observation) -> Result<()> {
    let stack = ctx.stack;
    let deadline = stack.mesh.timeout;
    let step = ctx.ui.start(&format!(
        "Waiting ≤ {} for the mesh to settle (istio-cni-node and ztunnel Ready, every meshed pod's sandbox running)",
        human(deadline)
    ));
    let start = std::time::Instant::now();
    let cmd = ctx.kube.list_deployments_and_pods();
    let poll = Poll {
        first: Duration::from_millis(250),
        ceiling: Duration::from_millis(250),
        ..Poll::new("the mesh to settle", deadline, "")
    };
    let settled = poll.run(|| {
        let out = match ctx.kube.run(&cmd) {
            Ok(out) => out,
            Err(e) => return Attempt::Fail(e),
        };
        let (deployments, pods) = match crate::cluster::parse_deployments_and_pods(&out.stdout) {
            Ok(read) => read,
            Err(p) => return Attempt::Fail(Error::step(format!("`{cmd}`: {p}"), "run it by hand")),
        };
        let now = crate::observe::Observation { deployments, pods, ..obs.clone() };
        match crate::judge::mesh::settled(stack, &now) {
            Ok(()) => Attempt::Done(()),
            Err(why) => Attempt::Retry(why),
        }
    });
    match settled {
        Ok(()) => {
            step.done(&format!("settled after {}", human(start.elapsed())));
            Ok(())
        }
        Err(Error::Timeout { detail, .. }) => {
            drop(step);
            let why = detail.trim_start_matches("last answer: ");
            ctx.ui.warn(&format!(
                "the mesh did not settle within {} ({why}): judging it as it is; what it has not proven it \
                 adopted is restarted",
                human(deadline)
            ));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// ztunnel restarted and rolled out, then the settle (when not zero).
pub fn restart_parts(ctx: &Ctx, settle: Duration) -> Vec<Part> {
    let mesh = &ctx.stack.mesh;
    let mut parts = vec![Part::new(
        format!("Restarting {} (waiting ≤ {})", mesh.daemonset, human(mesh.timeout)),
        vec![
            Op::Note("Restart ztunnel first, so every workload re-registers with a fresh instance".into()),
            Op::RestartMesh {
                restart: ctx.write.restart_list(&ztunnel(ctx)),
                status: ctx.kube.rollout_status("daemonset", &mesh.daemonset, &mesh.namespace, mesh.timeout),
            },
        ],
        "rolled out",
    )];
    parts.extend(settle_part(settle));
    parts
}

/// The mesh's settle after ztunnel's restart, unless it is zero.
fn settle_part(settle: Duration) -> Option<Part> {
    (!settle.is_zero()).then(|| {
        Part::new(format!("Letting the mesh settle for {}", human(settle)), vec![Op::Pause(settle)], "")
    })
}

/// ztunnel as a restart target (kind, namespace, name).
fn ztunnel<'a>(ctx: &'a Ctx) -> [(&'a str, &'a str, &'a str); 1] {
    let mesh = &ctx.stack.mesh;
    [("daemonset", mesh.namespace.as_str(), mesh.daemonset.as_str())]
}

/// ztunnel's restart as a task of the run's timeline: started (`TaskStarted`), or Ready again
/// (`WorkloadReady`, `sent` ago), whichever way it was restarted.
fn announce(ctx: &Ctx, started: bool, sent: Instant) {
    let mesh = &ctx.stack.mesh;
    let (workload, namespace) = (mesh.daemonset.clone(), mesh.namespace.clone());
    ctx.ui.emit(if started {
        Event::TaskStarted {
            subject: Subject::Workload { workload, namespace },
            action: TaskAction::Restart,
            after: Vec::new(),
            released_by: None,
        }
    } else {
        Event::WorkloadReady {
            workload,
            namespace,
            duration_ms: sent.elapsed().as_millis() as u64,
            deployment: None,
            after: None,
        }
    });
}

/// Restart ztunnel (`restart_all` runs the restart command of [`restart_parts`], retried on a
/// transient API failure), then its `rollout status` (`status`) within the deadline; a
/// transient API failure mid-wait is retried with the time that is left.
pub fn restart(ctx: &Ctx, status: &Cmd) -> Result<()> {
    let mesh = &ctx.stack.mesh;
    let sent = Instant::now();
    announce(ctx, true, sent);
    ctx.write.restart_all(&ztunnel(ctx))?;
    // The workloads' restarts follow its rollout: their kubectls start during it.
    ctx.write.warm_restarts(super::rollout::WARM);
    let start = Instant::now();
    let what = format!("daemonset {}/{} rollout", mesh.namespace, mesh.daemonset);
    let next = format!(
        "see why: `kubectl --context {} -n {} get pods -l app={} -o wide` and its logs",
        ctx.kube.context(),
        mesh.namespace,
        mesh.daemonset
    );
    let timed_out = |detail: String| Error::Timeout {
        what: what.clone(),
        after: mesh.timeout,
        detail,
        next: next.clone(),
    };
    let mut status = status.clone();
    Poll::new(&what, mesh.timeout, &next).run(|| {
        let ran = status.run();
        let left = mesh.timeout.saturating_sub(start.elapsed());
        match ran {
            Ok(_) => Attempt::Done(()),
            Err(Error::Command { stderr_tail, .. }) if stderr_tail.contains("timed out") => {
                let diagnosis = ctx.kube.diagnose(&mesh.namespace, &mesh.daemonset);
                Attempt::Fail(timed_out(format!("{stderr_tail}\n{diagnosis}")))
            }
            Err(Error::Command { stderr_tail, .. })
                if crate::kube::transient(&stderr_tail) && left > Duration::from_secs(1) =>
            {
                // Again, with the time that is left.
                status = ctx.kube.rollout_status("daemonset", &mesh.daemonset, &mesh.namespace, left);
                Attempt::Retry(stderr_tail.lines().last().unwrap_or("").to_string())
            }
            Err(other) => Attempt::Fail(ctx.kube.explain(other)),
        }
    })?;
    announce(ctx, false, sent);
    Ok(())
}

/// ztunnel restarted on these nodes only, then the settle (when not zero): its pods there
/// deleted ([`PodRestart`](crate::cluster::PodRestart)s: its DaemonSet recreates a pod on each
/// node whose pod was deleted; a `rollout restart` would restart it on every node), then one pod
/// watch until each of those nodes has a new pod of it Ready.
pub fn restart_on_parts(ctx: &Ctx, nodes: &[NodeRestart], settle: Duration) -> Vec<Part> {
    let mesh = &ctx.stack.mesh;
    let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
    let deletes: Vec<Cmd> = nodes.iter().flat_map(|n| &n.pods).map(|p| ctx.write.delete_pod(p)).collect();
    let mut parts = vec![Part::new(
        format!("Restarting {} on {} (waiting ≤ {})", mesh.daemonset, names.join(", "), human(mesh.timeout)),
        vec![
            Op::Note(format!(
                "Restart ztunnel first on {} only, so the workloads restarted next register with a fresh \
                 instance: its pods there deleted, its DaemonSet recreates them on their nodes",
                names.join(", ")
            )),
            Op::RestartZtunnelOn { nodes: nodes.to_vec(), watch: ctx.kube.watch_pods(), deletes },
        ],
        format!("a new pod Ready on each of {}", names.len()),
    )];
    parts.extend(settle_part(settle));
    parts
}

/// Restart ztunnel on `nodes`: the pod watch first (its snapshot then holds every pod the
/// deletes lead to), the `deletes` sent at once, then the watch until each node has a pod of it
/// that is not a deleted one (by UID), Ready, within the mesh's deadline. kubectl's `rollout
/// status` cannot wait for this: the DaemonSet's status counts a node's oldest pod (the DaemonSet
/// controller's `updateDaemonSetStatus`) and may still show the deleted one available.
pub fn restart_on(ctx: &Ctx, nodes: &[NodeRestart], deletes: &[Cmd]) -> Result<()> {
    let mesh = &ctx.stack.mesh;
    let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
    let sent = Instant::now();
    let (workload, namespace) = (&mesh.daemonset, &mesh.namespace);
    announce(ctx, true, sent);
    let mut watch = crate::observe::PodWatch::start(ctx)?;
    // One pod a node, deleted at once.
    std::thread::scope(|s| {
        let sent: Vec<_> = deletes.iter().map(|cmd| s.spawn(|| ctx.kube.run(cmd).map(|_| ()))).collect();
        sent.into_iter().try_for_each(|h| h.join().unwrap_or(Err(Error::Interrupted)))
    })?;
    // The workloads' restarts follow: their kubectls start during the wait.
    ctx.write.warm_restarts(super::rollout::WARM);
    let gone: Vec<&str> = nodes.iter().flat_map(|n| &n.pods).map(|p| p.uid()).collect();
    let what = format!("{namespace}/{workload} on {} to be Ready again", names.join(", "));
    let next = format!(
        "see why: `kubectl --context {} -n {namespace} get pods -l app={workload} -o wide` (its pods on {}) and their logs",
        ctx.kube.context(),
        names.join(", ")
    );
    let poll = Poll {
        first: Duration::from_millis(20),
        ceiling: Duration::from_millis(20),
        ..Poll::new(&what, mesh.timeout, &next)
    };
    let waited = poll.run(|| {
        if watch.ended() {
            match crate::observe::PodWatch::start(ctx) {
                Ok(w) => watch = w,
                Err(e) => return Attempt::Retry(e.headline()),
            }
        }
        let now = watch.snapshot();
        let waiting: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| crate::judge::mesh::back_on(ctx.stack, &now, n, &gone).is_none())
            .collect();
        if waiting.is_empty() {
            Attempt::Done(())
        } else {
            Attempt::Retry(format!("no new pod of it Ready yet on {}", waiting.join(", ")))
        }
    });
    if let Err(Error::Timeout { what, after, detail, next }) = waited {
        let diagnosis = ctx.kube.diagnose(namespace, workload);
        return Err(Error::Timeout { what, after, detail: format!("{detail}\n{diagnosis}"), next });
    }
    waited?;
    announce(ctx, false, sent);
    Ok(())
}
