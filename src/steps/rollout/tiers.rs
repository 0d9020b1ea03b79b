//! The bootstrap's tier waits (`up --tiers`): each deployment of a tier rolled out, no restart.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::kube::Rollout;
use crate::ui::human;

use super::super::Ctx;
use super::super::failfast::{FailFast, Needs, Waiting};
use super::describe_hint;
use super::watch::{Msg, Watch};

/// Wait until each deployment (namespace, name) has finished its current rollout (no restart):
/// the bootstrap's tier waits. One watch for all of them.
pub fn await_ready(ctx: &Ctx, targets: &[(String, String)], timeout: Duration) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut watch = Watch::start(ctx, &tx)?;
    let mut last: BTreeMap<(String, String), String> =
        targets.iter().map(|t| (t.clone(), "not created yet".to_string())).collect();
    let mut failfast = FailFast::new(ctx);
    while !last.is_empty() {
        if crate::wait::interrupted() {
            return Err(Error::Interrupted);
        }
        // A workload of the tier that needs another of it crash-loops until that one is Ready
        // (flink-taskmanager, flink-jobmanager): the kubelet's back-off ends it, so it waits.
        let needs = |ns: &str, name: &str| -> Needs {
            let stack = ctx.stack;
            let Some(w) = stack.index_of(ns, name).map(|i| &stack.workloads[i]) else {
                return Needs::ReadyAtStart;
            };
            let in_tier: Vec<(String, String)> = w
                .needs
                .iter()
                .filter_map(|n| stack.workload(n))
                .map(|x| (x.namespace.clone(), x.name.clone()))
                .filter(|k| targets.contains(k))
                .collect();
            if in_tier.iter().any(|k| last.contains_key(k)) {
                Needs::Pending
            } else if in_tier.is_empty() {
                Needs::ReadyAtStart
            } else {
                Needs::ReadySince
            }
        };
        let waiting: Vec<Waiting> = last
            .keys()
            .map(|(ns, name)| Waiting {
                namespace: ns,
                name,
                since: start,
                deadline: timeout,
                newer_than: None,
                needs: needs(ns, name),
            })
            .collect();
        failfast.check(ctx, &waiting)?;
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            let detail: Vec<String> = last.iter().map(|((ns, n), why)| format!("{ns}/{n}: {why}")).collect();
            let (ns, name) = last.keys().next().cloned().unwrap_or_default();
            return Err(Error::Timeout {
                what: format!("{} deployment(s) to roll out", last.len()),
                after: timeout,
                detail: detail.join("\n"),
                next: describe_hint(ctx, &ns, &name),
            });
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(Msg::Event { namespace, name, rollout, selector, .. }) => {
                failfast.learn(&namespace, &name, selector);
                let key = (namespace, name);
                if let Some(why) = last.get_mut(&key) {
                    match rollout {
                        Rollout::Done => {
                            ctx.ui.ok_item(
                                &format!("{} ready ({})", key.1, human(start.elapsed())),
                                Event::WorkloadReady {
                                    workload: key.1.clone(),
                                    namespace: key.0.clone(),
                                    duration_ms: start.elapsed().as_millis() as u64,
                                    deployment: None,
                                    after: None,
                                },
                            );
                            last.remove(&key);
                        }
                        Rollout::Waiting(w) => *why = w,
                        Rollout::Failed(f) => {
                            return Err(Error::step(
                                format!("deployment {}/{}: {f}", key.0, key.1),
                                describe_hint(ctx, &key.0, &key.1),
                            ));
                        }
                    }
                }
            }
            Ok(Msg::WatchEnded) => watch.ended(ctx, &tx)?,
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("this function holds a sender"),
        }
    }
    drop(watch);
    Ok(())
}
