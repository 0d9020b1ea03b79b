//! The smoke test: every route probed (as `observe::routes` probes it, judged by
//! `judge::routes`), retried within a deadline, every failure reported (not only the first).

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::judge::routes::{self as judge, Route};
use crate::observe::routes::{self, Probe};
use crate::stack::{Check, Stack};
use crate::ui::{Ui, human};
use crate::wait::{Attempt, Poll};

/// Run every check until all pass or the deadline passes; then report each failing one.
/// `Err(Error::Smoke)` carries the failing probes' lines; [`failing`] gives the probes.
pub fn run(stack: &Stack, ui: &Ui, deadline: Duration) -> Result<()> {
    check(stack, ui, deadline).map_err(|failed| failed.error)
}

/// A smoke test that did not pass: the error to report, and the probes that still fail.
pub struct Failed {
    pub error: Error,
    pub probes: Vec<Probe>,
}

/// The smoke test; on failure, the probes that still fail with the error that reports them.
pub fn check(stack: &Stack, ui: &Ui, deadline: Duration) -> std::result::Result<(), Failed> {
    let start = Instant::now();
    let mut pending: Vec<&Check> = stack.smoke.checks.iter().collect();
    // A route without a fixed host port cannot be checked: the cluster config must pin it.
    for check in &pending {
        if let Err(error) = routes::request(stack, check) {
            return Err(Failed { error, probes: Vec::new() });
        }
    }
    // Every route probed, the failing ones again (backing off from 200 ms to 2 s) until all
    // pass or the deadline: the one retry loop.
    let mut failing: Vec<(Probe, Route)> = Vec::new();
    let poll = Poll {
        first: Duration::from_millis(200),
        ceiling: Duration::from_secs(2),
        ..Poll::new("every route to answer", deadline, "")
    };
    let passed = poll.run(|| {
        let probes = routes::probe_all(stack, pending.iter().copied());
        failing.clear();
        for probe in probes {
            match judge::probe(stack, &probe) {
                Route::Works => ui.ok_item(
                    &format!("{} {} ({})", probe.check.name, probe.url, human(start.elapsed())),
                    Event::CheckPassed { check: probe.check.name.clone(), url: probe.url.clone() },
                ),
                failed => failing.push((probe, failed)),
            }
        }
        if failing.is_empty() {
            return Attempt::Done(());
        }
        pending = failing
            .iter()
            .filter_map(|(p, _)| stack.smoke.checks.iter().find(|c| c.name == p.check.name))
            .collect();
        Attempt::Retry(format!("{} route(s) failing", failing.len()))
    });
    match passed {
        Ok(()) => Ok(()),
        Err(Error::Timeout { .. }) => {
            let failures = failing
                .iter()
                .map(|(p, route)| {
                    let why = route.why().unwrap_or_default();
                    let host = p.check.host.as_deref().map(|h| format!(" (Host: {h})")).unwrap_or_default();
                    let serves = p.check.serves.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
                    format!("{}{serves}: GET {}{host}: {why}", p.check.name, p.url)
                })
                .collect();
            for (p, route) in &failing {
                ui.emit(Event::CheckFailed {
                    check: p.check.name.clone(),
                    url: p.url.clone(),
                    reason: route.why().unwrap_or_default(),
                });
            }
            let stale = failing.iter().any(|(_, route)| route.reset().is_some());
            let next = if stale {
                "run `bookstore recover` (restarts ztunnel, then every workload)".to_string()
            } else {
                format!(
                    "check the failing workloads (`kubectl --context {} get pods -A`), or run `bookstore recover`",
                    stack.cluster.context()
                )
            };
            Err(Failed {
                error: Error::Smoke { failures, next },
                probes: failing.into_iter().map(|(p, _)| p).collect(),
            })
        }
        Err(error) => Err(Failed { error, probes: Vec::new() }),
    }
}
