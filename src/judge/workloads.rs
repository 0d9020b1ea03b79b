//! A stack workload against the cluster: whether its deployment exists, which pods are its, and
//! its verdict ([`health`]): missing, stale in the mesh (why), stuck past its deadline, starting,
//! or healthy. What `up` restarts, waits for or keeps, and what `doctor` reports.

use crate::cluster::{Pod, PodRestart};
use crate::observe::Observation;
use crate::stack::Stack;

pub use super::members::{current, owner, pods_of, serving};
use super::mesh::{self, Ztunnel, when};

/// The stack workloads the cluster lacks (`exists(namespace, name)` says whether it has a
/// deployment), as `namespace/name`: a bootstrap that stopped halfway.
pub fn missing(stack: &Stack, exists: impl Fn(&str, &str) -> bool) -> Vec<String> {
    stack
        .workloads
        .iter()
        .filter(|w| !exists(&w.namespace, &w.name))
        .map(|w| format!("{}/{}", w.namespace, w.name))
        .collect()
}

/// Every workload that workload `i` needs is Ready now.
pub fn needs_ready(stack: &Stack, obs: &Observation, i: usize) -> bool {
    stack.workloads[i].needs.iter().all(|need| {
        stack
            .workload(need)
            .and_then(|w| obs.deployment(&w.namespace, &w.name))
            .is_some_and(|d| d.desired > 0 && d.ready >= d.desired)
    })
}

/// Why a workload's mesh registration is stale.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stale {
    /// The evidence rule: Envoy's resets, ztunnel's failed HBONE connections, istio-cni's failed
    /// reconciles, one a line.
    pub evidence: Vec<String>,
    /// The time rule: a serving pod created before ztunnel was Ready, or ztunnel restarted.
    pub time: Option<String>,
}

impl Stale {
    /// Every reason, the evidence first.
    pub fn reasons(&self) -> Vec<String> {
        self.evidence.iter().cloned().chain(self.time.clone()).collect()
    }
}

/// One workload's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Its deployment is not in the cluster.
    Missing,
    /// Its pods' mesh registration is stale: restart it.
    Stale(Stale),
    /// A pod serving it is in the kubelet's crash-loop back-off (why): once what it needs is
    /// Ready, delete these pods (each a restart: its ReplicaSet recreates it) so that the new ones
    /// start at once instead of waiting out the back-off (10 s doubling to 5 min, kept per pod
    /// UID in the kubelet's memory: a new pod has none).
    BackOff { why: String, pods: Vec<PodRestart> },
    /// Its newest pod has not become Ready within the workload's own deadline (why): restart it.
    Stuck(String),
    /// Rolling out, or its pod is not Ready yet (why): wait for it.
    Starting(String),
    /// Healthy (why): keep it.
    Healthy(String),
}

/// ztunnel judged, then every workload (index-aligned with `stack.workloads`).
pub fn judge(stack: &Stack, obs: &Observation) -> (Ztunnel, Vec<Health>) {
    let ztunnel = mesh::ztunnel(stack, obs);
    let health = (0..stack.workloads.len()).map(|i| health(stack, obs, i, &ztunnel)).collect();
    (ztunnel, health)
}

/// The serving pods in the kubelet's crash-loop back-off, as [`Health::BackOff`] (none, or one
/// its controller would not recreate: `None`).
fn back_off(obs: &Observation, serving: &[&Pod]) -> Option<Health> {
    use crate::judge::pods::{TroubleKind, trouble};
    let looping: Vec<(&Pod, String)> = serving
        .iter()
        .filter_map(|p| {
            let t = trouble(p, &[], obs.at).filter(|t| t.kind == TroubleKind::CrashLoop)?;
            Some((*p, t.message))
        })
        .collect();
    let (first, message) = looping.first()?;
    let pods: Vec<PodRestart> =
        looping.iter().map(|(p, _)| PodRestart::of(p)).collect::<Result<_, _>>().ok()?;
    let message = if message.is_empty() { String::new() } else { format!(": {message}") };
    Some(Health::BackOff {
        why: format!(
            "its pod {} is in the kubelet's crash-loop back-off ({} restarts{message}): deleted once what it needs \
             is Ready, its replacement starts at once (a new pod has no back-off)",
            first.name,
            first.restarts()
        ),
        pods,
    })
}

/// Workload `i`'s verdict, with ztunnel judged as `ztunnel` (restarted: every meshed pod is stale).
pub fn health(stack: &Stack, obs: &Observation, i: usize, ztunnel: &Ztunnel) -> Health {
    let w = &stack.workloads[i];
    let Some(d) = obs.deployment(&w.namespace, &w.name) else {
        return Health::Missing;
    };
    let nodes = mesh::nodes(stack, obs);
    let serving = serving(obs, d);
    let pods = pods_of(obs, d);
    let newest = serving.first().copied();
    let meshed = pods.iter().any(|p| p.meshed);
    // A restart just sent: the controller has not created the new pods the rules would judge.
    let rollout_starting = d.generation > d.observed_generation;
    // The pods the time rule looks at: every serving pod, each against ztunnel on its own node
    // (oldest first: the first reason is the oldest pod's). Those kept say why: fresh, or
    // adopted on evidence.
    let judged: Vec<mesh::InMesh> = match meshed && !rollout_starting {
        false => Vec::new(),
        true => serving.iter().rev().map(|p| mesh::in_mesh(obs, ztunnel, &nodes, p)).collect(),
    };
    let time = judged.iter().find_map(|v| match v {
        mesh::InMesh::Stale(why) => Some(why.clone()),
        _ => None,
    });
    let stale = Stale { evidence: mesh::evidence(stack, obs, &w.name, &serving), time };
    if !stale.reasons().is_empty() {
        return Health::Stale(stale);
    }
    if d.desired == 0 {
        return Health::Healthy("scaled to 0".into());
    }
    if !rollout_starting && let Some(health) = back_off(obs, &serving) {
        return health;
    }
    // A pod that has not become Ready within the workload's own deadline is not waited for again.
    if let Some(p) = newest
        && !p.ready()
        && p.created.is_some_and(|c| obs.at.saturating_sub(c) > w.timeout.as_secs())
    {
        return Health::Stuck(format!(
            "its pod {} has not become Ready since it was created {} (its deadline is {})",
            p.name,
            when(p.created),
            crate::ui::human(w.timeout)
        ));
    }
    let serving_ready = serving.iter().all(|p| p.ready());
    if rollout_starting || d.ready < d.desired || d.updated < d.desired || pods.is_empty() || !serving_ready {
        let what = match newest {
            Some(p) => format!("its pod {} (created {}) is not Ready yet", p.name, when(p.created)),
            None => "its new pod is being created".to_string(),
        };
        return Health::Starting(format!("{what}: wait for it"));
    }
    let p = newest.expect("desired > 0 and ready");
    let adopted: Vec<&str> = judged
        .iter()
        .filter_map(|v| match v {
            mesh::InMesh::Adopted(evidence) => Some(evidence.as_str()),
            _ => None,
        })
        .collect();
    Health::Healthy(match (meshed, ztunnel.ready_for(&nodes, p)) {
        (false, _) => format!("not in the ambient mesh; Ready since {}", when(p.ready_since)),
        (true, _) if !adopted.is_empty() => adopted.join("; "),
        (true, Some(t)) => format!(
            "its pod {} was created {}, after ztunnel was Ready ({})",
            p.name,
            when(p.created),
            crate::utc::format(t)
        ),
        (true, None) => format!("its pod {} is rolling out", p.name),
    })
}
