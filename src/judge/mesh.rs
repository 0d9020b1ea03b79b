//! Whether a pod's Istio ambient (HBONE) registration is stale, decided for that pod on its node.
//! Each rule is said once here (README "What `up` restarts, and why"):
//!
//! - The time rule. ztunnel on a node is stale when one of its pods there was created before the
//!   node container last started (a Docker restart restarts pods in place: same pod, same
//!   `creationTimestamp`), or when it is not healthy there (no pod, or a pod not Ready). A meshed
//!   pod is stale when it was created before ztunnel on its node became Ready: istio-cni and
//!   ztunnel adopt a pod when it is created, and "existing long-lived pods do not trigger
//!   re-registration" (the guide). When ztunnel is restarted, every meshed pod is stale.
//! - The evidence rule, for the pods that hold it now: Envoy's upstream reset on a route their
//!   workload serves, once every pod serving it has been Ready [`GATEWAY_GRACE`]; ztunnel's failed
//!   HBONE connections (`deadline has elapsed`, `Connection refused`) to one of the pod's
//!   `<ip>:15008` logged at or after the pod was created (an earlier line is about the IP's
//!   previous holder); istio-cni's failed in-pod reconcile naming the pod (the line itself says to
//!   restart it).
//!
//! Timestamps are whole seconds (Kubernetes writes them so); a tie counts as after.
//!
//! The verdicts are per node: kind's single node today. ztunnel is restarted as a whole (one
//! DaemonSet rollout), so a stale ztunnel on one node restarts it, and makes stale every meshed
//! pod, on all of them; several nodes and a shared cluster extend exactly [`ztunnel`] and
//! [`Ztunnel::ready_for`].

use crate::cluster::Pod;
use crate::observe::evidence::HboneFailure;
use crate::observe::{CNI_DAEMONSET, Observation};
use crate::stack::Stack;
use crate::utc;

/// How long a pod must have been Ready before what the gateway answers for its route counts as
/// evidence against it: the gateway learns a new endpoint a moment after it is Ready, and answers
/// from the pod it replaces until then.
pub const GATEWAY_GRACE: u64 = 2;

/// `2026-11-26T11:30:39Z`, or "at an unknown time".
pub fn when(t: Option<u64>) -> String {
    t.map(utc::format).unwrap_or_else(|| "at an unknown time".into())
}

/// A node of the cluster and when its container last started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStart {
    /// The Kubernetes node name (kind names a node after its container).
    pub name: String,
    /// `State.StartedAt` of its container; `None` when not known.
    pub started_at: Option<u64>,
    /// The evidence for `started_at`, when it is not the node container's `State.StartedAt`: on a
    /// shared cluster, what the API shows ([`super::boots`]).
    pub source: Option<String>,
}

/// The nodes the observation knows: the control-plane node container on kind; on a shared
/// cluster every Node, each started when the API's evidence says ([`super::boots`]).
pub fn nodes(stack: &Stack, obs: &Observation) -> Vec<NodeStart> {
    if stack.cluster.shared() {
        let events = obs.node_events.as_deref().unwrap_or_default();
        return super::boots::last_started(&obs.api_nodes, events, &obs.pods);
    }
    vec![NodeStart {
        name: stack.cluster.control_plane_container(),
        started_at: obs.node.started_at,
        source: None,
    }]
}

/// The node a pod runs on (`spec.nodeName`); a pod not scheduled yet counts as on the only node
/// when there is one.
pub fn node_of<'a>(nodes: &'a [NodeStart], pod: &'a Pod) -> Option<&'a str> {
    match (pod.node.as_str(), nodes) {
        ("", [only]) => Some(only.name.as_str()),
        ("", _) => None,
        (node, _) => Some(node),
    }
}

/// The pods of a DaemonSet (by their controller reference) that are not going away.
pub fn daemon_pods<'a>(pods: &'a [Pod], namespace: &str, name: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| !p.terminating && p.namespace == namespace)
        .filter(|p| p.owner.as_ref().is_some_and(|(kind, n)| kind == "DaemonSet" && n == name))
        .collect()
}

/// Since when every pod of each of these DaemonSets (in `namespace`) has been Ready: the latest of
/// their `Ready` transitions; `None` when one of them has no pod or a pod not Ready.
pub fn ready_since(pods: &[Pod], namespace: &str, daemonsets: &[&str]) -> Option<u64> {
    let mut since = 0;
    for ds in daemonsets {
        let mine = daemon_pods(pods, namespace, ds);
        if mine.is_empty() || !mine.iter().all(|p| p.ready()) {
            return None;
        }
        since = mine.iter().filter_map(|p| p.ready_since).fold(since, u64::max);
    }
    Some(since)
}

/// Since when ztunnel and istio-cni have both been Ready (what a sandbox failure is judged against).
pub fn mesh_ready_since(stack: &Stack, pods: &[Pod]) -> Option<u64> {
    let mesh = &stack.mesh;
    ready_since(pods, &mesh.namespace, &[&mesh.daemonset, CNI_DAEMONSET])
}

/// ztunnel on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnNode {
    pub node: String,
    /// Why it is stale there (`None`: fresh).
    pub stale: Option<String>,
    /// When its pods there were all Ready (the latest of their Ready times), when fresh.
    pub ready_since: Option<u64>,
    /// Why it is kept, when fresh.
    pub kept: String,
}

/// ztunnel's verdict, node by node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ztunnel {
    pub nodes: Vec<OnNode>,
}

impl Ztunnel {
    /// Why ztunnel is restarted: the first stale node's reason.
    pub fn stale(&self) -> Option<&str> {
        self.nodes.iter().find_map(|n| n.stale.as_deref())
    }

    /// Why it is kept (the first node's reason).
    pub fn kept(&self) -> String {
        self.nodes.first().map(|n| n.kept.clone()).unwrap_or_default()
    }

    /// The same ztunnel, restarted anyway for `why` (an escalation): stale on every node.
    pub fn restarted(mut self, why: &str) -> Ztunnel {
        if self.nodes.is_empty() {
            self.nodes.push(OnNode {
                node: String::new(),
                stale: None,
                ready_since: None,
                kept: String::new(),
            });
        }
        for n in &mut self.nodes {
            n.stale = Some(why.to_string());
            n.ready_since = None;
        }
        self
    }

    /// When the ztunnel that serves `pod` was Ready: ztunnel on the pod's node (the latest of
    /// every node's for a pod on none); `None` when ztunnel is restarted (every pod existing now
    /// predates its new pods).
    pub fn ready_for(&self, nodes: &[NodeStart], pod: &Pod) -> Option<u64> {
        if self.stale().is_some() {
            return None;
        }
        let on = node_of(nodes, pod);
        match self.nodes.iter().find(|n| Some(n.node.as_str()) == on) {
            Some(n) => n.ready_since,
            None => self.nodes.iter().filter_map(|n| n.ready_since).max(),
        }
    }
}

/// ztunnel on each node: stale when one of its pods there was created before the node container
/// last started, or when it has no pod or a pod not Ready there.
pub fn ztunnel(stack: &Stack, obs: &Observation) -> Ztunnel {
    let nodes = nodes(stack, obs);
    let pods = daemon_pods(&obs.pods, &stack.mesh.namespace, &stack.mesh.daemonset);
    // Every node known: the observed node containers, and those ztunnel's or meshed pods run on.
    let mut names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    for p in pods.iter().copied().chain(obs.pods.iter().filter(|p| p.meshed && !p.terminating)) {
        if let Some(n) = node_of(&nodes, p)
            && !names.iter().any(|x| x == n)
        {
            names.push(n.to_string());
        }
    }
    let one = names.len() == 1;
    let verdicts = names
        .iter()
        .map(|name| {
            let here: Vec<&Pod> = pods.iter().copied().filter(|p| node_of(&nodes, p) == Some(name)).collect();
            let start = nodes.iter().find(|n| &n.name == name);
            let started = start.and_then(|n| n.started_at);
            let evidence = start.and_then(|n| n.source.clone());
            let stale = |why: String| OnNode {
                node: name.clone(),
                stale: Some(why),
                ready_since: None,
                kept: String::new(),
            };
            if here.is_empty() {
                return stale(if one {
                    "it has no pod".into()
                } else {
                    format!("it has no pod on node {name}")
                });
            }
            if let Some(start) = started
                && let Some(p) = here.iter().find(|p| p.created.unwrap_or(0) < start)
            {
                let started = match &evidence {
                    Some(evidence) => format!("before {evidence}"),
                    None => format!("before the node container last started ({})", utc::format(start)),
                };
                return stale(format!(
                    "its pod {} was created {}, {started}: it came back with the node and holds no \
                     registration for the pods that came back with it",
                    p.name,
                    when(p.created),
                ));
            }
            if let Some(p) = here.iter().find(|p| !p.ready()) {
                return stale(format!(
                    "it is not healthy: its pod {} (created {}) is not Ready",
                    p.name,
                    when(p.created)
                ));
            }
            let p = here.iter().max_by_key(|p| p.ready_since).expect("not empty");
            let after = match (started, &evidence) {
                (Some(s), None) => format!(", after the node container started ({})", utc::format(s)),
                (Some(s), Some(_)) => format!(", after node {name} last started ({})", utc::format(s)),
                (None, _) => String::new(),
            };
            OnNode {
                node: name.clone(),
                stale: None,
                ready_since: here.iter().filter_map(|p| p.ready_since).max(),
                kept: format!(
                    "its pod {} was created {}{after}, Ready since {}",
                    p.name,
                    when(p.created),
                    when(p.ready_since)
                ),
            }
        })
        .collect();
    Ztunnel { nodes: verdicts }
}

/// The time rule for a pod of a meshed workload: why it is stale (`None`: created after ztunnel
/// on its node was Ready).
pub fn stale_by_time(ztunnel: &Ztunnel, nodes: &[NodeStart], pod: &Pod) -> Option<String> {
    match ztunnel.ready_for(nodes, pod) {
        None => Some(format!(
            "ztunnel is restarted first, and its pod {} was created before ({})",
            pod.name,
            when(pod.created)
        )),
        Some(t) if pod.created.unwrap_or(0) < t => Some(format!(
            "its pod {} was created {} before ztunnel's pods were Ready ({})",
            pod.name,
            when(pod.created),
            utc::format(t)
        )),
        Some(_) => None,
    }
}

/// ztunnel's failed HBONE connections to this pod: to one of its IPs, logged when it existed (a
/// line from before it was created is about the IP's previous holder).
pub fn hbone<'a>(obs: &'a Observation, pod: &Pod) -> Vec<&'a HboneFailure> {
    obs.hbone.iter().flatten().filter(|f| pod.ips.contains(&f.ip) && !before(f, pod)).collect()
}

fn before(f: &HboneFailure, pod: &Pod) -> bool {
    f.at.is_some_and(|at| at < pod.created.unwrap_or(0))
}

/// istio-cni's failed in-pod reconciles of this pod (the log lines).
pub fn cni<'a>(obs: &'a Observation, pod: &Pod) -> Vec<&'a str> {
    obs.cni
        .iter()
        .flatten()
        .filter(|(ns, name, _)| *ns == pod.namespace && *name == pod.name)
        .map(|(_, _, line)| line.as_str())
        .collect()
}

/// The gateway has these pods as its endpoints: each Ready for [`GATEWAY_GRACE`]. Before that it
/// answers from the pods they replace (or has no endpoint), so its answer is not about them.
pub fn routed(obs: &Observation, pods: &[&Pod]) -> bool {
    pods.iter().all(|p| p.ready() && p.ready_since.is_some_and(|r| r + GATEWAY_GRACE <= obs.at))
}

/// The evidence against the pods that serve a workload (its newest `replicas` pods: while a
/// rollout replaces an old pod, what the old one answers is not evidence against the new), one
/// reason a line: Envoy's resets on its routes, ztunnel's failed HBONE connections, istio-cni's
/// failed reconciles.
pub fn evidence(stack: &Stack, obs: &Observation, workload: &str, pods: &[&Pod]) -> Vec<String> {
    let mut why = Vec::new();
    if routed(obs, pods) {
        for probe in obs.routes.iter().filter(|p| p.check.serves.as_deref() == Some(workload)) {
            if super::routes::probe(stack, probe).reset().is_some() {
                let summary = probe.answer.as_ref().map(|r| r.summary()).unwrap_or_default();
                let host = probe.check.host.as_deref().map(|h| format!(" (Host: {h})")).unwrap_or_default();
                why.push(format!("gateway {}{host} answers \"{summary}\"", probe.check.path));
            }
        }
    }
    for f in obs.hbone.iter().flatten() {
        let Some(pod) = pods.iter().find(|p| p.ips.contains(&f.ip) && !before(f, p)) else { continue };
        let line = format!("ztunnel: {} to {}:15008 ({})", f.error, f.ip, pod.name);
        if !why.contains(&line) {
            why.push(line);
        }
    }
    for pod in pods {
        if !cni(obs, pod).is_empty() {
            why.push(format!("istio-cni: failed to reconcile inpod rules for pod {}", pod.name));
        }
    }
    why
}

/// Whether ztunnel itself is what is broken, and why: a pod of it not Ready, or HBONE failures
/// to a pod created after it was Ready (a fresh pod it cannot reach). What an escalation restarts.
pub fn ztunnel_blame(stack: &Stack, obs: &Observation) -> Option<String> {
    let ztunnel = daemon_pods(&obs.pods, &stack.mesh.namespace, &stack.mesh.daemonset);
    if let Some(p) = ztunnel.iter().find(|p| !p.ready()) {
        return Some(format!("its pod {} is not Ready", p.name));
    }
    let ready = ztunnel.iter().filter_map(|p| p.ready_since).max()?;
    obs.pods.iter().filter(|p| p.created.is_some_and(|c| c >= ready)).find_map(|pod| {
        let f = hbone(obs, pod).into_iter().next()?;
        Some(format!(
            "ztunnel: {} to {}:15008 ({}), a pod created after ztunnel was Ready",
            f.error, f.ip, pod.name
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Container;
    use crate::stack::{Source, load};

    const START: u64 = 1_800_000_000;

    fn pod(name: &str, node: &str, created: u64, ready: Option<u64>) -> Pod {
        let ztunnel = name.starts_with("ztunnel");
        Pod {
            namespace: if ztunnel { "istio-system".into() } else { "ecom".into() },
            name: name.into(),
            node: node.into(),
            phase: "Running".into(),
            ips: vec![format!("10.244.0.{}", created % 200)],
            created: Some(created),
            ready_since: ready,
            meshed: !ztunnel,
            owner: ztunnel.then(|| ("DaemonSet".to_string(), "ztunnel".to_string())),
            containers: vec![Container { ready: ready.is_some(), ..Container::default() }],
            ..Pod::default()
        }
    }

    fn observed(pods: Vec<Pod>) -> Observation {
        let mut obs = Observation::of(Vec::new(), pods);
        obs.at = START + 1000;
        obs.node.started_at = Some(START);
        obs
    }

    #[test]
    fn ztunnel_and_the_time_rule_are_judged_on_each_pods_node() {
        let stack = load(Source::Embedded).unwrap();
        let cp = stack.cluster.control_plane_container();
        // ztunnel on the control plane Ready at START + 13; on a worker (its start not observed)
        // Ready at START + 300.
        let obs = observed(vec![
            pod("ztunnel-a", &cp, START + 10, Some(START + 13)),
            pod("ztunnel-b", "worker", START + 290, Some(START + 300)),
            pod("app-on-cp", &cp, START + 100, Some(START + 105)),
            pod("app-on-worker", "worker", START + 100, Some(START + 105)),
        ]);
        let judged = ztunnel(&stack, &obs);
        assert_eq!(judged.stale(), None, "{judged:?}");
        assert_eq!(judged.nodes.len(), 2);
        let nodes = nodes(&stack, &obs);
        assert_eq!(stale_by_time(&judged, &nodes, &obs.pods[2]), None);
        let why = stale_by_time(&judged, &nodes, &obs.pods[3])
            .expect("created before its node's ztunnel was Ready");
        assert!(why.contains("before ztunnel's pods were Ready"), "{why}");

        // A ztunnel pod that came back with the node it runs on; a node with meshed pods and no
        // ztunnel pod: stale either way, and then every meshed pod is.
        let obs = observed(vec![pod("ztunnel-a", &cp, START - 3600, Some(START + 5))]);
        assert!(ztunnel(&stack, &obs).stale().unwrap().contains("before the node container last started"));
        let obs = observed(vec![
            pod("ztunnel-a", &cp, START + 10, Some(START + 13)),
            pod("app-on-worker", "worker", START + 100, Some(START + 105)),
        ]);
        let judged = ztunnel(&stack, &obs);
        assert_eq!(judged.stale(), Some("it has no pod on node worker"));
        let why = stale_by_time(&judged, &nodes, &obs.pods[1]).unwrap();
        assert!(why.starts_with("ztunnel is restarted first"), "{why}");
    }

    #[test]
    fn only_a_line_logged_while_the_pod_existed_is_evidence_against_it() {
        let mut obs = observed(vec![pod("app", "", START + 100, Some(START + 105))]);
        let ip = obs.pods[0].ips[0].clone();
        let line = |at: u64| HboneFailure {
            at: Some(at),
            ip: ip.clone(),
            error: "connection failed: deadline has elapsed".into(),
            line: "…".into(),
        };
        obs.hbone = Ok(vec![line(START + 99)]);
        assert!(hbone(&obs, &obs.pods[0]).is_empty(), "about the IP's previous holder");
        obs.hbone = Ok(vec![line(START + 99), line(START + 100)]);
        assert_eq!(hbone(&obs, &obs.pods[0]).len(), 1, "a tie counts as after");
    }
}
