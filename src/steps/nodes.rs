//! A node Docker did not start again. kind creates its nodes with `--restart=on-failure:1`
//! (kind `pkg/cluster/internal/providers/docker/provision.go`), and a starting daemon restarts
//! a container with that policy only after a non-zero exit (moby
//! `daemon/internal/restartmanager/restartmanager.go`, `daemon/daemon.go` `restore`): a node
//! that halted cleanly when Docker Desktop quit, a WSL2 shutdown or an OrbStack restart stays
//! `exited` (kind#3244). `up` starts every stopped node of the cluster, control planes first,
//! then waits for the API as a node that has just booted needs, and converges as after any
//! restart.

use std::time::Duration;

use crate::docker;
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

/// `docker start` each node of the cluster that is not running, control planes first.
pub fn start_stopped(ctx: &Ctx) -> Result<()> {
    let ps = docker::ps_cluster(&ctx.stack.cluster.name);
    let mut stopped = docker::parse_ps(&ps.run()?.stdout)
        .map_err(|p| Error::step(format!("`{ps}`: {p}"), "run it by hand"))?;
    stopped.retain(|n| !n.running());
    docker::start_order(&mut stopped);
    for node in &stopped {
        let step = ctx.ui.start(&format!("Starting the kind node {} ({})", node.name, node.state));
        docker::start(&node.name).run()?;
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
    lines.push(
        "# The kind node is not running: start every stopped node of the cluster, control planes first"
            .into(),
    );
    lines.push(docker::ps_cluster(&ctx.stack.cluster.name).to_string());
    lines.push(format!(
        "{}   # each one not running",
        docker::start(&ctx.stack.cluster.control_plane_container())
    ));
    lines.push(format!("# Wait for the Kubernetes API (retried, ≤ {})", human(boot_budget(ctx))));
    lines.push(ctx.kube.readyz().to_string());
}
