//! What the watcher runs: the heal (one entry point) and the periodic read-only check. Both are
//! here, and only here, so the convergent `up` and the read-only observation replace them in one
//! line each.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::plan::Order;
use crate::stack::Stack;
use crate::steps::Ctx;
use crate::ui::Ui;

/// How a heal failed: before it ran (the node could not be started, or its API did not answer
/// within the watcher's budget: a node still booting is no finding for the doctor), or the heal
/// itself.
pub enum Failure {
    Before(Error),
    Heal(Error),
}

impl Failure {
    pub fn error(&self) -> &Error {
        match self {
            Failure::Before(e) | Failure::Heal(e) => e,
        }
    }
}

/// Before the heal: the node started when Docker did not start it again (`start`), then the
/// Kubernetes API waited for with the watcher's own budget (minutes: after a node start the
/// kubelet restarts etcd and the apiserver), said once when it does not answer at once.
pub fn prepare(config: &Config, ui: &Ui, start: bool) -> Result<(), Failure> {
    let ctx = Ctx::new(&config.stack, ui);
    if start {
        crate::steps::start_nodes(&ctx).map_err(Failure::Before)?;
    }
    let budget = crate::steps::boot_budget(&ctx);
    crate::steps::wait_booting_api(&ctx, budget).map_err(Failure::Before)
}

/// Heal the stack: what `bookstore up` runs (detection, then the bootstrap's resumption or the
/// recovery, the connectors, the smoke test). The watcher acts on its own only because acting on
/// a healthy stack changes nothing (the convergent `up`).
pub fn converge(config: &Config, ui: &Ui) -> Result<()> {
    crate::steps::up(config, ui, Order::Graph, None, false)
}

/// After a heal that failed: what `bookstore doctor` finds (read-only), each finding with its
/// evidence and fix, for whoever reads the watcher's log.
pub fn diagnose(config: &Config, ui: &Ui) {
    ui.info("what `bookstore doctor` finds now:");
    let _ = crate::doctor::run(&crate::observe::Ctx::new(&config.stack, ui));
}

/// The periodic check, read-only: every smoke route once (no retries), judged as the smoke test
/// judges it (Envoy's reset, the connectors RUNNING). Each failure: (route, url, why).
pub fn check(stack: &Stack) -> Vec<(String, String, String)> {
    crate::observe::routes::probe_all(stack, &stack.smoke.checks)
        .into_iter()
        .filter_map(|p| {
            let why = crate::judge::routes::probe(stack, &p).why()?;
            Some((p.check.name.clone(), p.url.clone(), why))
        })
        .collect()
}
