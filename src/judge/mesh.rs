//! Whether a pod's Istio ambient (HBONE) registration is stale, decided for that pod on its node.
//! Each rule is said once here (README "What `up` restarts, and why"):
//!
//! - The time rule. ztunnel on a node is stale when one of its pods there was created before
//!   that node last started (a node restart restarts its pods in place: same pod, same
//!   `creationTimestamp`), or when it is not healthy there (no pod, or a pod not Ready). A meshed
//!   pod is stale when it was created before ztunnel on its own node became Ready: istio-cni and
//!   ztunnel adopt a pod when it is created, and "existing long-lived pods do not trigger
//!   re-registration" (the guide). When ztunnel is restarted on a node, every meshed pod there is
//!   stale.
//! - The evidence rule, for the pods that hold it now: Envoy's upstream reset on a route their
//!   workload serves, once every pod serving it has been Ready [`GATEWAY_GRACE`]; ztunnel's failed
//!   HBONE connections (`deadline has elapsed`, `Connection refused`) to one of the pod's
//!   `<ip>:15008` logged at or after the pod was created (an earlier line is about the IP's
//!   previous holder); istio-cni's failed in-pod reconcile naming the pod (the line itself says to
//!   restart it).
//!
//! Timestamps are whole seconds (Kubernetes writes them so); a tie counts as after.
//!
//! The verdicts are per node: each node's ztunnel is judged against that node's last start, and
//! each meshed pod against the ztunnel of its own node (`spec.nodeName`). A node restarts alone
//! (`docker restart <worker>`, an out-of-memory kill) or with every other (a Docker restart):
//! either way only the pods on the nodes that restarted lost their registration, and the remedy
//! restarts ztunnel on those nodes only (`plan::converge`: its pod there deleted, the DaemonSet
//! recreates it on that node). When ztunnel is restarted on a node, every meshed pod on that
//! node is stale (the new instance never registered them); pods on other nodes are not.
//!
//! When a node last started is [`NodeStart`]: kind's nodes say it by their container's
//! `State.StartedAt`; a cluster without Docker fills the same value from the API (a Node's
//! bootID, the kubelet's `Rebooted`/`Starting` events, its Ready transition), and the rule
//! applies unchanged.

use crate::cluster::{Pod, PodRestart};
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

/// A node of the cluster and when it last started: the per-node input of the time rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStart {
    /// The Kubernetes node name (kind names a node after its container).
    pub name: String,
    /// When it last started (seconds since the epoch); `None` when not known.
    pub started_at: Option<u64>,
    /// What says so, as a reason prints it (`State.StartedAt of its container`).
    pub evidence: String,
}

/// The nodes the observation knows, each with when it last started: every node container of the
/// kind cluster (found by kind's labels) and its `State.StartedAt`.
pub fn nodes(obs: &Observation) -> Vec<NodeStart> {
    obs.nodes
        .iter()
        .map(|n| NodeStart {
            name: n.name.clone(),
            started_at: n.started_at,
            evidence: "State.StartedAt of its container".into(),
        })
        .collect()
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
    /// Its pods there (not going away): deleting them restarts it on this node only (its
    /// DaemonSet recreates a pod on the node whose pod was deleted).
    pub pods: Vec<PodRestart>,
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

    /// The nodes it is restarted on.
    pub fn stale_nodes(&self) -> impl Iterator<Item = &OnNode> {
        self.nodes.iter().filter(|n| n.stale.is_some())
    }

    /// Why it is kept (the first node's reason).
    pub fn kept(&self) -> String {
        self.nodes.first().map(|n| n.kept.clone()).unwrap_or_default()
    }

    /// The same ztunnel, restarted anyway on `node` (every node when `node` is empty, or not
    /// one of its nodes) for `why`: an escalation.
    pub fn restarted_on(mut self, node: &str, why: &str) -> Ztunnel {
        if self.nodes.is_empty() {
            self.nodes.push(OnNode {
                node: String::new(),
                stale: None,
                ready_since: None,
                kept: String::new(),
                pods: Vec::new(),
            });
        }
        let every = node.is_empty() || !self.nodes.iter().any(|n| n.node == node);
        for n in self.nodes.iter_mut().filter(|n| every || n.node == node) {
            n.stale = Some(why.to_string());
            n.ready_since = None;
        }
        self
    }

    /// When the ztunnel that serves `pod` was Ready: ztunnel on the pod's node (for a pod on no
    /// node yet, the latest of the fresh nodes'); `None` when it is restarted there (every pod
    /// existing there now predates its new pod).
    pub fn ready_for(&self, nodes: &[NodeStart], pod: &Pod) -> Option<u64> {
        match node_of(nodes, pod) {
            Some(on) => match self.nodes.iter().find(|n| n.node == on) {
                Some(n) => n.ready_since,
                // ztunnel was not judged on a node it has no pod on and that runs no meshed pod.
                None => self.nodes.iter().filter_map(|n| n.ready_since).max(),
            },
            None => self.nodes.iter().filter_map(|n| n.ready_since).max(),
        }
    }
}

/// ztunnel on each node: stale when one of its pods there was created before the node last
/// started, or when it has no pod or a pod not Ready there. A node is judged when it runs a
/// ztunnel pod or a meshed pod (or it is the cluster's only node).
pub fn ztunnel(stack: &Stack, obs: &Observation) -> Ztunnel {
    let nodes = nodes(obs);
    let pods = daemon_pods(&obs.pods, &stack.mesh.namespace, &stack.mesh.daemonset);
    let meshed: Vec<&Pod> = obs.pods.iter().filter(|p| p.meshed && !p.terminating).collect();
    // The nodes to judge: those its pods or meshed pods run on, the observed nodes first.
    let mut names: Vec<String> = Vec::new();
    let on = |n: &str| pods.iter().chain(&meshed).any(|p| node_of(&nodes, p) == Some(n));
    for n in &nodes {
        if nodes.len() == 1 || on(&n.name) {
            names.push(n.name.clone());
        }
    }
    for p in pods.iter().chain(&meshed) {
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
            let node = nodes.iter().find(|n| &n.name == name);
            let started = node.and_then(|n| n.started_at);
            let restarts = || here.iter().filter_map(|p| PodRestart::of(p).ok()).collect();
            let stale = |why: String| OnNode {
                node: name.clone(),
                stale: Some(why),
                ready_since: None,
                kept: String::new(),
                pods: restarts(),
            };
            if here.is_empty() {
                return stale(if one { "it has no pod".into() } else { format!("it has no pod on node {name}") });
            }
            if let (Some(start), Some(node)) = (started, node)
                && let Some(p) = here.iter().find(|p| p.created.unwrap_or(0) < start)
            {
                return stale(format!(
                    "its pod {} on node {name} was created {}, before the node last started ({}, {}): it came back \
                     with the node and holds no registration for the pods that came back with it",
                    p.name,
                    when(p.created),
                    utc::format(start),
                    node.evidence
                ));
            }
            if let Some(p) = here.iter().find(|p| !p.ready()) {
                return stale(format!(
                    "it is not healthy on node {name}: its pod {} (created {}) is not Ready",
                    p.name,
                    when(p.created)
                ));
            }
            let p = here.iter().max_by_key(|p| p.ready_since).expect("not empty");
            let after = started
                .map(|s| format!(", after node {name} last started ({})", utc::format(s)))
                .unwrap_or_default();
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
                pods: restarts(),
            }
        })
        .collect();
    Ztunnel { nodes: verdicts }
}

/// ztunnel is back on `node` after its pods there (`gone`: their UIDs) were deleted: a pod of its
/// DaemonSet on that node, not one of those, not going away, and Ready.
pub fn back_on<'a>(stack: &Stack, pods: &'a [Pod], node: &str, gone: &[&str]) -> Option<&'a Pod> {
    daemon_pods(pods, &stack.mesh.namespace, &stack.mesh.daemonset)
        .into_iter()
        .find(|p| p.node == node && !gone.contains(&p.uid.as_str()) && p.ready())
}

/// The time rule for a pod of a meshed workload: why it is stale (`None`: created after ztunnel
/// on its node was Ready).
pub fn stale_by_time(ztunnel: &Ztunnel, nodes: &[NodeStart], pod: &Pod) -> Option<String> {
    let on = node_of(nodes, pod).map(|n| format!(" on its node {n}")).unwrap_or_default();
    match ztunnel.ready_for(nodes, pod) {
        None => Some(format!(
            "ztunnel is restarted first{on}, and its pod {} was created before ({})",
            pod.name,
            when(pod.created)
        )),
        Some(t) if pod.created.unwrap_or(0) < t => Some(format!(
            "its pod {} was created {} before ztunnel's pods were Ready{on} ({})",
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

/// Where ztunnel itself is what is broken, and why, node by node: a pod of it not Ready there,
/// or HBONE failures to a pod on that node created after ztunnel there was Ready (a fresh pod it
/// cannot reach). What an escalation restarts.
pub fn ztunnel_blame(stack: &Stack, obs: &Observation) -> Vec<(String, String)> {
    let nodes = nodes(obs);
    let ztunnel = daemon_pods(&obs.pods, &stack.mesh.namespace, &stack.mesh.daemonset);
    let mut blame: Vec<(String, String)> = Vec::new();
    let mut add = |node: &str, why: String| {
        if !blame.iter().any(|(n, _)| n == node) {
            blame.push((node.to_string(), why));
        }
    };
    for p in ztunnel.iter().filter(|p| !p.ready()) {
        let node = node_of(&nodes, p).unwrap_or("");
        add(node, format!("its pod {} on node {node} is not Ready", p.name));
    }
    for pod in &obs.pods {
        let node = node_of(&nodes, pod).unwrap_or("");
        let here = ztunnel.iter().filter(|z| node_of(&nodes, z).unwrap_or("") == node);
        let Some(ready) = here.filter_map(|z| z.ready_since).max() else { continue };
        if pod.created.is_none_or(|c| c < ready) {
            continue;
        }
        if let Some(f) = hbone(obs, pod).into_iter().next() {
            add(
                node,
                format!(
                    "ztunnel: {} to {}:15008 ({}), a pod on node {node} created after ztunnel there was Ready",
                    f.error, f.ip, pod.name
                ),
            );
        }
    }
    blame
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

    /// A node container of the cluster that last started at `started`.
    fn node(name: &str, role: &str, started: u64) -> crate::docker::Node {
        crate::docker::Node {
            name: name.into(),
            role: role.into(),
            running: true,
            started_at: Some(started),
            ..crate::docker::Node::default()
        }
    }

    /// One control-plane node, started at START.
    fn observed(pods: Vec<Pod>) -> Observation {
        let mut obs = Observation::of(Vec::new(), pods);
        obs.at = START + 1000;
        obs.nodes = vec![node("bookstore-control-plane", "control-plane", START)];
        obs
    }

    #[test]
    fn ztunnel_and_the_time_rule_are_judged_on_each_pods_node() {
        let stack = load(Source::Embedded).unwrap();
        let cp = "bookstore-control-plane";
        // ztunnel on the control plane Ready at START + 13; on a worker (its start not observed)
        // Ready at START + 300.
        let obs = observed(vec![
            pod("ztunnel-a", cp, START + 10, Some(START + 13)),
            pod("ztunnel-b", "worker", START + 290, Some(START + 300)),
            pod("app-on-cp", cp, START + 100, Some(START + 105)),
            pod("app-on-worker", "worker", START + 100, Some(START + 105)),
        ]);
        let judged = ztunnel(&stack, &obs);
        assert_eq!(judged.stale(), None, "{judged:?}");
        assert_eq!(judged.nodes.len(), 2);
        let known = nodes(&obs);
        assert_eq!(stale_by_time(&judged, &known, &obs.pods[2]), None);
        let why = stale_by_time(&judged, &known, &obs.pods[3])
            .expect("created before its node's ztunnel was Ready");
        assert!(why.contains("before ztunnel's pods were Ready on its node worker"), "{why}");

        // A ztunnel pod that came back with the node it runs on; a node with meshed pods and no
        // ztunnel pod: stale either way, and then every meshed pod there is.
        let obs = observed(vec![pod("ztunnel-a", cp, START - 3600, Some(START + 5))]);
        let why = ztunnel(&stack, &obs).stale().unwrap().to_string();
        assert!(why.contains("on node bookstore-control-plane was created"), "{why}");
        assert!(
            why.contains(
                "before the node last started (2027-01-15T08:00:00Z, State.StartedAt of its container)"
            ),
            "{why}"
        );
        let obs = observed(vec![
            pod("ztunnel-a", cp, START + 10, Some(START + 13)),
            pod("app-on-worker", "worker", START + 100, Some(START + 105)),
        ]);
        let judged = ztunnel(&stack, &obs);
        assert_eq!(judged.stale(), Some("it has no pod on node worker"));
        let why = stale_by_time(&judged, &known, &obs.pods[1]).unwrap();
        assert!(why.starts_with("ztunnel is restarted first on its node worker"), "{why}");
    }

    #[test]
    fn a_worker_that_restarted_alone_makes_stale_only_its_ztunnel_and_the_pods_on_it() {
        let stack = load(Source::Embedded).unwrap();
        // Three nodes started at START; worker2 restarted alone at START + 500 (its pods came back
        // in place: same creation times).
        let mut obs = observed(vec![
            pod("ztunnel-cp", "bookstore-control-plane", START + 10, Some(START + 13)),
            pod("ztunnel-w1", "bookstore-worker", START + 10, Some(START + 14)),
            pod("ztunnel-w2", "bookstore-worker2", START + 10, Some(START + 515)),
            pod("app-on-w1", "bookstore-worker", START + 100, Some(START + 105)),
            pod("app-on-w2", "bookstore-worker2", START + 100, Some(START + 520)),
        ]);
        obs.nodes.push(node("bookstore-worker", "worker", START));
        obs.nodes.push(node("bookstore-worker2", "worker", START + 500));
        for (p, uid) in obs.pods.iter_mut().zip(["u-cp", "u-w1", "u-w2", "u-a1", "u-a2"]) {
            p.uid = uid.into();
        }
        let judged = ztunnel(&stack, &obs);
        let stale: Vec<&str> = judged.stale_nodes().map(|n| n.node.as_str()).collect();
        assert_eq!(stale, ["bookstore-worker2"], "{judged:?}");
        let w2 = judged.stale_nodes().next().unwrap();
        assert_eq!(w2.pods.iter().map(|p| p.name()).collect::<Vec<_>>(), ["ztunnel-w2"]);
        assert!(
            w2.stale.as_deref().unwrap().contains("its pod ztunnel-w2 on node bookstore-worker2 was created")
        );
        let nodes = nodes(&obs);
        assert_eq!(
            stale_by_time(&judged, &nodes, &obs.pods[3]),
            None,
            "a pod on a node that did not restart"
        );
        let why = stale_by_time(&judged, &nodes, &obs.pods[4]).unwrap();
        assert!(why.starts_with("ztunnel is restarted first on its node bookstore-worker2"), "{why}");

        // The restart is done on worker2 once a pod of ztunnel there that is not the deleted one
        // is Ready; the deleted one, going away or not, never counts.
        let gone = ["u-w2"];
        assert!(back_on(&stack, &obs.pods, "bookstore-worker2", &gone).is_none());
        let mut new = pod("ztunnel-w2b", "bookstore-worker2", START + 600, None);
        new.uid = "u-w2b".into();
        obs.pods.push(new);
        assert!(back_on(&stack, &obs.pods, "bookstore-worker2", &gone).is_none(), "not Ready yet");
        let last = obs.pods.last_mut().unwrap();
        last.ready_since = Some(START + 604);
        last.containers[0].ready = true;
        assert_eq!(
            back_on(&stack, &obs.pods, "bookstore-worker2", &gone).map(|p| p.name.as_str()),
            Some("ztunnel-w2b")
        );
        assert!(back_on(&stack, &obs.pods, "bookstore-worker", &["u-w1"]).is_none());

        // An escalation blames the node whose ztunnel cannot reach a fresh pod there, and
        // restarts it on that node only.
        obs.pods.retain(|p| p.name != "ztunnel-w2b");
        let judged = judged.restarted_on("bookstore-worker", "escalated");
        let stale: Vec<&str> = judged.stale_nodes().map(|n| n.node.as_str()).collect();
        assert_eq!(stale, ["bookstore-worker", "bookstore-worker2"]);
        assert_eq!(judged.clone().restarted_on("", "all").stale_nodes().count(), 3);
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
