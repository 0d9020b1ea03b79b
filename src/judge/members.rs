//! Which pods are a deployment's: those it selects that are not going away, those that serve
//! it, the pods every verdict is about. Below `workloads` and `mesh`, which both read it.

use crate::cluster::{Deployment, Pod};
use crate::observe::Observation;
use crate::stack::Stack;

/// The pods a deployment selects that are not going away: a terminating pod is no longer the
/// workload's (`status` counts its restarts and age from these, `up` and `doctor` judge them).
pub fn pods_of<'a>(obs: &'a Observation, d: &Deployment) -> Vec<&'a Pod> {
    obs.pods.iter().filter(|p| !p.terminating && d.selects(p)).collect()
}

/// The pods that serve a deployment: its newest `replicas` pods (at least one), newest first.
/// While a rollout replaces an old pod, the old one is not the workload's any more.
pub fn serving<'a>(obs: &'a Observation, d: &Deployment) -> Vec<&'a Pod> {
    let mut pods = pods_of(obs, d);
    pods.sort_by_key(|p| std::cmp::Reverse(p.created));
    pods.truncate(d.desired.max(1) as usize);
    pods
}

/// The pods the verdicts are about: every pod not going away, a stack workload's only while it
/// serves it (what an old pod a rollout replaces shows is not evidence against the workload).
pub fn current<'a>(stack: &Stack, obs: &'a Observation) -> Vec<&'a Pod> {
    let serving: Vec<&Pod> = stack
        .workloads
        .iter()
        .filter_map(|w| obs.deployment(&w.namespace, &w.name))
        .flat_map(|d| serving(obs, d))
        .collect();
    obs.pods
        .iter()
        .filter(|p| !p.terminating)
        .filter(|p| match owner(obs, p) {
            Some(d) if stack.index_of(&d.namespace, &d.name).is_some() => {
                serving.iter().any(|s| std::ptr::eq(*s, *p))
            }
            _ => true,
        })
        .collect()
}

/// The deployment a pod belongs to.
pub fn owner<'a>(obs: &'a Observation, pod: &Pod) -> Option<&'a Deployment> {
    obs.deployments.iter().find(|d| d.selects(pod))
}
