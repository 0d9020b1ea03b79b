//! A node its engine did not start again. kind creates its Docker and nerdctl nodes with
//! `--restart=on-failure:1` (kind `pkg/cluster/internal/providers/docker/provision.go`,
//! `nerdctl/provision.go`), and a starting daemon restarts a container with that policy only
//! after a non-zero exit (moby `daemon/internal/restartmanager/restartmanager.go`,
//! `daemon/daemon.go` `restore`): a node that halted cleanly when Docker Desktop quit, a WSL2
//! shutdown or an OrbStack restart stays `exited` (kind#3244). Its podman nodes have no restart
//! policy at all (`providers/podman/provision.go`): after a reboot or a `podman machine`
//! restart they are `created` (podman's refresh) or `exited` until something runs `podman
//! start` (kind#2272, #3190, #3473). `up` starts every stopped node of the cluster, whatever the
//! engine, found by kind's labels, control planes first, then waits for the API as a node that
//! has just booted needs, and converges as after any restart.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ui::human;

use super::Ctx;

/// How long a node that has just (re)started may take until its kube API answers: the kubelet
/// restarts etcd and the apiserver as static pods, which takes minutes on some laptops.
pub const BOOT: Duration = Duration::from_secs(300);

/// The API wait after a node start: [`BOOT`], or the stack's own `api_timeout` if longer.
pub fn boot_budget(ctx: &Ctx) -> Duration {
    BOOT.max(ctx.stack.api_timeout)
}

pub fn start(ctx: &Ctx) -> Result<()> {
    start_stopped(ctx)?;
    wait_booting_api(ctx, boot_budget(ctx))
}

/// `<engine> start` each node of the cluster that is not running (found by kind's labels),
/// control planes first.
pub fn start_stopped(ctx: &Ctx) -> Result<()> {
    let engine = ctx.engine();
    let mut stopped =
        engine.nodes(&ctx.stack.cluster.name).map_err(|p| Error::step(p, "run the command above by hand"))?;
    stopped.retain(|n| !n.running);
    for node in &stopped {
        let step = ctx.ui.start(&format!("Starting the kind node {} ({})", node.name, node.status));
        ctx.engine_write.start(&node.name).run()?;
        step.done("started: its kubelet restarts every pod in place");
    }
    Ok(())
}

/// `/readyz` once; if it does not answer, the wait within `budget`, said once.
pub fn wait_booting_api(ctx: &Ctx, budget: Duration) -> Result<()> {
    match ctx.kube.readyz().run() {
        Ok(_) => Ok(()),
        Err(Error::Interrupted) => Err(Error::Interrupted),
        Err(_) => super::mesh::wait_api_within(ctx, budget, " (after a node start it can take minutes)"),
    }
}

pub fn describe(ctx: &Ctx, lines: &mut Vec<String>) {
    let engine = ctx.engine();
    let cluster = &ctx.stack.cluster.name;
    lines.push(
        "# The kind node is not running: start every stopped node of the cluster, control planes first"
            .into(),
    );
    lines.push(engine.ps_cluster(cluster).to_string());
    lines.push(crate::observe::describe_inspect(engine, cluster));
    let stopped: Vec<String> = engine
        .nodes(cluster)
        .map(|nodes| nodes.into_iter().filter(|n| !n.running).map(|n| n.name).collect())
        .unwrap_or_default();
    if stopped.is_empty() {
        lines.push(format!("{}   # each one not running", ctx.engine_write.start("<node>")));
    }
    for name in stopped {
        lines.push(ctx.engine_write.start(&name).to_string());
    }
    lines.push(format!("# Wait for the Kubernetes API (retried, ≤ {})", human(boot_budget(ctx))));
    lines.push(ctx.kube.readyz().to_string());
}
