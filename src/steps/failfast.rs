//! Fail fast during the readiness waits: a pod that waiting cannot fix (judged by
//! [`judge::outlook`], the judgement `doctor` uses too) stops the wait with the pod's status,
//! last log lines and events instead of sitting out its deadline: a crash loop with everything it
//! needs Ready, an image that does not exist, is denied or is ours and not in the node, a sandbox
//! that still fails with ztunnel and istio-cni Ready. What the kubelet retries and clears by
//! itself (a rate-limited or timed-out pull, `no ztunnel connection` while ztunnel reconnects) is
//! waited out, and the progress says what is being waited out. `--tolerate` waits out everything
//! (skaffold's `tolerateFailuresUntilDeadline`).
//!
//! No poller per workload, and no poll at all: once some workload has waited [`GRACE`], one
//! `kubectl get pods -A --watch` keeps every pod's latest state for all of them (one process for
//! the whole wait); events are read only when a pod of a waiting workload is still Pending, at
//! most once per [`INTERVAL`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::cluster::{self, Pod};
use crate::error::{Error, Result};
use crate::judge::pods::{self as judge, Outlook};
use crate::observe::PodWatch;
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
    /// Its deadline, counted from `since` (said when a trouble is waited out).
    pub deadline: Duration,
    /// Only pods created at or after this (seconds since the epoch) belong to the rollout being
    /// waited for (a restart's new pods); `None`: every pod of the workload.
    pub newer_than: Option<u64>,
    /// Whether what the workload `needs` is Ready.
    pub needs: Needs,
}

/// A crash loop while a dependency is not Ready yet is the dependency's (the guide's phases
/// restart flink-taskmanager together with flink-jobmanager): the kubelet's back-off ends it once
/// the dependency is up, so it is waited out. It is fatal only when the pod crashed with every
/// dependency Ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Ready before the workload was restarted: every crash counts.
    ReadyAtStart,
    /// Ready now, not at the restart: only crashes after this was first seen count.
    ReadySince,
    /// Not all Ready yet: crashes do not count.
    Pending,
}

pub struct FailFast {
    enabled: bool,
    /// A pod's restart count when its workload's needs were first seen Ready (`Needs::ReadySince`).
    baselines: BTreeMap<(String, String), u64>,
    pods: Option<PodWatch>,
    /// When events were last read, and what they were.
    last: Option<Instant>,
    events: Vec<cluster::Event>,
    /// (namespace, pod, what) already said to be waited out.
    said: BTreeSet<(String, String, String)>,
    /// (namespace, deployment) → its selector's matchLabels (from the watch).
    selectors: BTreeMap<(String, String), BTreeMap<String, String>>,
}

impl FailFast {
    pub fn new(ctx: &Ctx) -> FailFast {
        FailFast {
            enabled: !ctx.tolerate,
            baselines: BTreeMap::new(),
            pods: None,
            last: None,
            events: Vec::new(),
            said: BTreeSet::new(),
            selectors: BTreeMap::new(),
        }
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
        if due.is_empty() {
            return Ok(());
        }
        // Start the pod watch once (again if the API ended it); a failed start is not a failed
        // recovery: the wait and its deadline go on.
        if self.pods.as_ref().is_none_or(|p| p.ended()) {
            self.pods = PodWatch::start(ctx).ok();
        }
        let Some(watch) = &self.pods else { return Ok(()) };
        let pods = watch.snapshot();
        let now = crate::observe::now();
        let mine: Vec<(&Waiting, &Pod)> =
            due.iter().flat_map(|w| self.pods_of(w, &pods).into_iter().map(move |p| (*w, p))).collect();
        // Crashes that count: see `Needs`.
        let mut counted: BTreeMap<(String, String), bool> = BTreeMap::new();
        for (w, p) in &mine {
            let key = (p.namespace.clone(), p.name.clone());
            let counts = match w.needs {
                Needs::ReadyAtStart => true,
                Needs::Pending => false,
                Needs::ReadySince => {
                    p.restarts() > *self.baselines.entry(key.clone()).or_insert(p.restarts())
                }
            };
            counted.insert(key, counts);
        }
        let crash_counts =
            |p: &Pod| counted.get(&(p.namespace.clone(), p.name.clone())).copied().unwrap_or(true);
        // Image pulls, sandboxes and scheduling are told in events, read only while a pod of a
        // waiting workload is Pending, at most once per INTERVAL.
        let pending = mine.iter().any(|(_, p)| p.phase == "Pending" || p.phase.is_empty());
        if pending && self.last.is_none_or(|t| t.elapsed() >= INTERVAL) {
            self.last = Some(Instant::now());
            self.events = crate::observe::events(ctx).unwrap_or_default();
        }
        let ours = judge::ours(ctx.stack);
        let mut found = None;
        for (w, p) in &mine {
            let Some(trouble) = judge::trouble(p, &self.events, now) else { continue };
            let around = judge::around(ctx.stack, &pods, &ours, Some(w.name), crash_counts(p));
            match judge::outlook(p, &trouble, &self.events, &around) {
                Outlook::Fatal(why) => {
                    found = Some((*w, *p, trouble, why));
                    break;
                }
                Outlook::Retried(what) | Outlook::Blocked(what) => {
                    if self.said.insert((p.namespace.clone(), p.name.clone(), what.clone())) {
                        ctx.ui.warn(&format!(
                            "waiting it out: {}: {what} (waiting up to {})",
                            troubles::headline(p, Some(w.name), &trouble),
                            crate::ui::human(w.deadline)
                        ));
                    }
                }
            }
        }
        let Some((w, pod, trouble, why)) = found else { return Ok(()) };
        if self.events.is_empty() {
            self.events = crate::observe::events(ctx).unwrap_or_default();
        }
        let evidence = troubles::evidence(&ctx.kube, pod, &trouble, &self.events);
        let (fix, note) = match trouble.kind {
            // `bookstore recover` is what is running: the log says what to fix first.
            judge::TroubleKind::CrashLoop => (
                "the log lines above say why it exits: fix that, then rerun (recovery is safe to rerun)"
                    .to_string(),
                None,
            ),
            _ => troubles::advice(ctx.stack, pod, Some(w.name), &trouble),
        };
        let note = note.map(|n| format!(" ({n})")).unwrap_or_default();
        Err(Error::Step {
            problem: format!(
                "deployment {}/{} cannot become ready by waiting: {}: {why}\n  {}",
                w.namespace,
                w.name,
                troubles::headline(pod, Some(w.name), &trouble),
                evidence.join("\n  ")
            ),
            next: format!("{fix}{note}; or rerun with --tolerate to wait until the deadline"),
        })
    }
}
