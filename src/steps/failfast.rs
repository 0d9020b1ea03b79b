//! Fail fast during the readiness waits: a pod in CrashLoopBackOff or ImagePullBackOff, or one
//! whose sandbox cannot be created (a `FailedCreatePodSandBox` event), does not get better by
//! waiting, so the wait stops with the pod's status, last log lines and events instead of sitting
//! out its deadline (`--tolerate` restores waiting; skaffold's `tolerateFailuresUntilDeadline`).
//!
//! No poller per workload: once some workload has waited [`GRACE`], one `kubectl get pods -A`
//! every [`INTERVAL`] covers all of them; events are read only when a pod of a waiting workload
//! is still Pending.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::{self, Pod};
use crate::error::{Error, Result};
use crate::troubles;

use super::Ctx;

/// How long a workload waits before its pods are looked at.
pub const GRACE: Duration = Duration::from_secs(2);
/// At most one look this often.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Clock slack between this machine and the node when telling new pods from old ones.
const SLACK: u64 = 2;

/// A workload being waited for.
pub struct Waiting<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub since: Instant,
    /// Only pods created at or after this (seconds since the epoch) belong to the rollout being
    /// waited for (a restart's new pods); `None`: every pod of the workload.
    pub newer_than: Option<u64>,
}

pub struct FailFast {
    enabled: bool,
    last: Option<Instant>,
    /// (namespace, deployment) → its selector's matchLabels (from the watch).
    selectors: BTreeMap<(String, String), BTreeMap<String, String>>,
}

impl FailFast {
    pub fn new(ctx: &Ctx) -> FailFast {
        FailFast { enabled: !ctx.tolerate, last: None, selectors: BTreeMap::new() }
    }

    pub fn learn(&mut self, namespace: &str, name: &str, selector: BTreeMap<String, String>) {
        if !selector.is_empty() {
            self.selectors.insert((namespace.to_string(), name.to_string()), selector);
        }
    }

    /// The pods of a waiting workload.
    fn pods_of<'p>(&self, w: &Waiting, pods: &'p [Pod]) -> Vec<&'p Pod> {
        let Some(selector) = self.selectors.get(&(w.namespace.to_string(), w.name.to_string())) else {
            return Vec::new();
        };
        pods.iter()
            .filter(|p| {
                p.namespace == w.namespace && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .filter(|p| match (w.newer_than, p.created) {
                (Some(t), Some(c)) => c + SLACK >= t,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .collect()
    }

    /// Look at the pods of the workloads waited for, at most once per [`INTERVAL`]; `Err` when one
    /// of them cannot become ready by waiting.
    pub fn check(&mut self, ctx: &Ctx, waiting: &[Waiting]) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let due: Vec<&Waiting> = waiting.iter().filter(|w| w.since.elapsed() >= GRACE).collect();
        if due.is_empty() || self.last.is_some_and(|t| t.elapsed() < INTERVAL) {
            return Ok(());
        }
        self.last = Some(Instant::now());
        // A failed look is not a failed recovery: the wait and its deadline go on.
        let Ok(out) = ctx.kube.list_pods().run() else { return Ok(()) };
        let Ok(pods) = cluster::parse_pods(&out.stdout) else { return Ok(()) };
        let now = crate::doctor::now();
        let mine: Vec<(&Waiting, &Pod)> =
            due.iter().flat_map(|w| self.pods_of(w, &pods).into_iter().map(move |p| (*w, p))).collect();
        let mut events = Vec::new();
        let mut found = mine.iter().find_map(|(w, p)| fatal(p, &events, now).map(|t| (*w, *p, t)));
        if found.is_none() && mine.iter().any(|(_, p)| p.phase == "Pending") {
            events = read_events(ctx);
            found = mine.iter().find_map(|(w, p)| fatal(p, &events, now).map(|t| (*w, *p, t)));
        }
        let Some((w, pod, trouble)) = found else { return Ok(()) };
        if events.is_empty() {
            events = read_events(ctx);
        }
        let evidence = troubles::evidence(&ctx.kube, pod, &trouble, &events);
        let (fix, note) = match trouble.kind {
            // `bookstore recover` is what is running: the log says what to fix first.
            cluster::TroubleKind::CrashLoop => (
                "the log lines above say why it exits: fix that, then rerun (recovery is safe to rerun)"
                    .to_string(),
                None,
            ),
            _ => troubles::advice(ctx.stack, pod, Some(w.name), &trouble),
        };
        let note = note.map(|n| format!(" ({n})")).unwrap_or_default();
        Err(Error::Step {
            problem: format!(
                "deployment {}/{} cannot become ready by waiting: {}\n  {}",
                w.namespace,
                w.name,
                troubles::headline(pod, Some(w.name), &trouble),
                evidence.join("\n  ")
            ),
            next: format!("{fix}{note}; or rerun with --tolerate to wait until the deadline"),
        })
    }
}

fn fatal(pod: &Pod, events: &[cluster::Event], now: u64) -> Option<cluster::Trouble> {
    cluster::trouble(pod, events, now).filter(|t| t.kind.fatal())
}

fn read_events(ctx: &Ctx) -> Vec<cluster::Event> {
    ctx.kube.list_events().run().ok().and_then(|o| cluster::parse_events(&o.stdout).ok()).unwrap_or_default()
}
