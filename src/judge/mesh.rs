//! Whether a pod's Istio ambient (HBONE) registration is stale, decided for that pod on its node.
//! Each rule is said once here (README "What `up` restarts, and why"):
//!
//! - Settled first. After a node restart nothing is judged until the mesh has settled there:
//!   istio-cni-node and ztunnel Ready, and every meshed pod with a running sandbox
//!   ([`settled`]); `up` waits for it, `doctor` says it is settling.
//! - Adoption, on positive evidence only ([`adoption`]). A meshed pod created before ztunnel on
//!   its node became Ready (every pod a node restart restarted in place is) is kept only when the
//!   mesh adopted it since its sandbox started: its UID `Up` in ztunnel's `workloadState` on its
//!   node AND a capture line for it in istio-cni's log since then (its CNI ADD, or the start-up
//!   snapshot with the in-pod rules reconciled), with no later failure for it. istio-cni
//!   re-captures a restarted pod only on those two paths; a sandbox that came up while kindnet's
//!   rewrite had dropped istio-cni from the CNI chain, or through the plugin's fail-open path,
//!   stays outside the mesh, and restarting ztunnel does nothing for it (ztunnel writes no
//!   iptables; on a restart istio-cni resends its cached snapshot). The
//!   `ambient.istio.io/redirection: enabled` annotation survives a node restart and proves
//!   nothing, nor does ztunnel's `PROTOCOL HBONE`, derived from it. Without that evidence the pod
//!   is stale (the guide's model: "existing long-lived pods do not trigger re-registration").
//!   A pod created after ztunnel was Ready got its sandbox through the CNI ADD: kept.
//! - ztunnel itself, per node ([`ztunnel`]): restarted when it is unhealthy there (no pod, or not
//!   Ready), not because it came back with the node: a ztunnel pod that came back with its node
//!   is kept on evidence that it works (Ready, istio-cni's snapshot received since the node
//!   started, and pods adopted since); when unsure (it adopted none, or its state cannot be
//!   read), the safe remedy: restart it. When ztunnel is restarted, every meshed pod is
//!   restarted after it, as the guide does.
//! - The evidence rule, for the pods that hold it now: Envoy's upstream reset on a route their
//!   workload serves, once every pod serving it has been Ready [`GATEWAY_GRACE`]; ztunnel's failed
//!   HBONE connections (`deadline has elapsed`, `Connection refused`) to one of the pod's
//!   `<ip>:15008` logged at or after the pod was created, or was adopted (an earlier line is about
//!   the IP's previous holder, or the pod's previous sandbox); istio-cni's failures naming the pod
//!   since its sandbox started (a failed in-pod reconcile says to restart it).
//!
//! Timestamps are whole seconds (Kubernetes writes them so); a tie counts as after.
//!
//! The verdicts are per node: each node's ztunnel is judged against that node's last start, and
//! each meshed pod against the ztunnel of its own node (`spec.nodeName`). A node restarts alone
//! (`docker restart <worker>`, an out-of-memory kill) or with every other (a Docker restart):
//! either way only the pods on the nodes that restarted lost their registration, and the remedy
//! restarts ztunnel on those nodes only (`plan::converge`: its pod there deleted, the DaemonSet
//! recreates it on that node). When ztunnel is restarted on a node, every meshed pod on that
//! node is restarted after it, as the guide does; pods on other nodes are not.
//!
//! When a node last started is [`NodeStart`]: kind's nodes say it by their container's
//! `State.StartedAt`; a cluster without Docker fills the same value from the API (a Node's
//! bootID, the kubelet's `Rebooted`/`Starting` events, its Ready transition), and the rule
//! applies unchanged.
//!
//! Size: the mesh's four rules (settled, adoption, ztunnel per node, evidence) share their types
//! and facts, and are tested here as data (the last ~300 lines).

use crate::cluster::{Pod, PodRestart};
use crate::observe::evidence::{CniLine, CniSays, HboneFailure, ZtunnelSays};
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

pub use super::boots::NodeStart;

/// The nodes the observation knows, each with when it last started: on kind every node container
/// of the cluster (found by kind's labels) and its `State.StartedAt`; on a shared cluster every
/// Node, started when the API's evidence says ([`super::boots`]). One rule judges both.
pub fn nodes(stack: &Stack, obs: &Observation) -> Vec<NodeStart> {
    if stack.cluster.shared() {
        let events = obs.node_events.as_deref().unwrap_or_default();
        return super::boots::last_started(&obs.api_nodes, events, &obs.pods);
    }
    obs.nodes
        .iter()
        .map(|n| NodeStart { name: n.name.clone(), started_at: n.started_at, source: None })
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

/// When the node `pod` runs on last started, when known.
fn node_start(nodes: &[NodeStart], pod: &Pod) -> Option<u64> {
    let on = node_of(nodes, pod)?;
    nodes.iter().find(|n| n.name == on).and_then(|n| n.started_at)
}

/// A pod that is coming up: not Ready, not going away, and no container in a state waiting
/// cannot fix (a crash loop's back-off, an image that cannot be pulled, a config error).
fn coming_up(p: &Pod) -> bool {
    !p.ready()
        && !p.terminating
        && p.containers.iter().all(|c| {
            c.waiting
                .as_ref()
                .is_none_or(|(reason, _)| reason == "ContainerCreating" || reason == "PodInitializing")
        })
}

/// A pod whose sandbox is not running yet (`PodReadyToStartContainers` not True; without that
/// condition, Pending with its containers being created).
fn no_sandbox(p: &Pod) -> bool {
    match p.sandbox {
        Some(running) => !running,
        None => p.phase == "Pending" && p.unscheduled.is_none(),
    }
}

/// Whether the mesh has settled after its node started (within the mesh's deadline of it), so
/// that what it adopted can be judged: on every node that runs meshed pods, istio-cni-node and
/// ztunnel Ready, and every meshed pod scheduled there with a running sandbox. `Err(why)` while a pod of those is still coming up: wait, act on nothing. A
/// pod that cannot come up by waiting (a crash loop, an image pull) is not waited for: it is
/// judged as it is.
pub fn settled(stack: &Stack, obs: &Observation) -> Result<(), String> {
    let mesh = &stack.mesh;
    // Only right after a node started, on that node: later, what is not Ready is judged as it is.
    let nodes = nodes(stack, obs);
    let recent: Vec<String> = nodes
        .iter()
        .filter(|n| n.started_at.is_some_and(|s| obs.at < s + mesh.timeout.as_secs()))
        .map(|n| n.name.clone())
        .collect();
    if recent.is_empty() {
        return Ok(());
    }
    let on_recent = |p: &&Pod| recent.contains(&p.node) || (p.node.is_empty() && recent.len() == nodes.len());
    let meshed: Vec<&Pod> = obs
        .pods
        .iter()
        .filter(|p| p.meshed && !p.terminating && !p.node.is_empty())
        .filter(on_recent)
        .collect();
    if meshed.is_empty() {
        return Ok(());
    }
    for ds in [CNI_DAEMONSET, mesh.daemonset.as_str()] {
        if let Some(p) =
            daemon_pods(&obs.pods, &mesh.namespace, ds).into_iter().filter(on_recent).find(|p| coming_up(p))
        {
            return Err(format!("{ds}'s pod {} on node {} is not Ready yet", p.name, p.node));
        }
    }
    let waiting: Vec<&str> =
        meshed.iter().filter(|p| no_sandbox(p) && coming_up(p)).map(|p| p.name.as_str()).collect();
    match waiting.as_slice() {
        [] => Ok(()),
        [one] => Err(format!("the pod {one} has no running sandbox yet")),
        [first, ..] => Err(format!("{} meshed pods have no running sandbox yet ({first}, …)", waiting.len())),
    }
}

/// Whether the mesh adopted a pod since its sandbox started, and the evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Both sides say so: ztunnel runs its proxy, istio-cni captured it (the capture line's time).
    Adopted { evidence: String, at: Option<u64> },
    /// What is missing, or what says otherwise.
    Not(String),
}

/// Whether the mesh adopted `pod` since its sandbox started (and its node last started): its UID
/// `Up` in ztunnel's `workloadState` on its node, and istio-cni's capture line for it since then
/// (`sending pod add to ztunnel`: its CNI ADD; or `sending pod to ztunnel as part of snapshot`
/// from an agent that logged `inpod reconcile mode enabled`, so its scan rewrote the pod's
/// in-pod rules), with no failure for it after that capture (nor, for the snapshot, a failed
/// reconcile since the sandbox started).
pub fn adoption(obs: &Observation, nodes: &[NodeStart], pod: &Pod) -> Adoption {
    let on = node_of(nodes, pod).unwrap_or("");
    let since = [pod.sandbox_since, node_start(nodes, pod), pod.created].into_iter().flatten().max();
    let since_text = when(since);
    // ztunnel's state on the pod's own node (the only one read, with a single node).
    let only = if obs.workload_state.len() == 1 { obs.workload_state.first() } else { None };
    let state = match obs.workload_state.iter().find(|(n, _)| n == on).or(only) {
        None => return Adoption::Not("ztunnel's workloadState was not read".into()),
        Some((_, Err(e))) => {
            return Adoption::Not(format!("ztunnel's workloadState could not be read ({e})"));
        }
        Some((_, Ok(state))) => state,
    };
    match state.get(&pod.uid) {
        None => {
            return Adoption::Not(format!(
                "ztunnel runs no proxy for its UID {} (its workloadState on node {on} lacks it)",
                pod.uid
            ));
        }
        Some(p) if p.state != "Up" => {
            return Adoption::Not(format!(
                "ztunnel's proxy for its UID {} is {}, not Up",
                pod.uid,
                if p.state.is_empty() { "in no state" } else { &p.state }
            ));
        }
        Some(_) => {}
    }
    let lines = match &obs.cni {
        Ok(lines) => lines,
        Err(e) => return Adoption::Not(format!("istio-cni's log could not be read ({e})")),
    };
    let mine: Vec<&CniLine> = lines
        .iter()
        .filter(|l| l.about(&pod.uid, &pod.namespace, &pod.name))
        .filter(|l| l.at.is_some_and(|t| since.is_none_or(|s| t >= s)))
        .collect();
    // Lines are in the order istio-cni wrote them: "later" is by that order (whole seconds tie).
    let at = mine.iter().rposition(|l| matches!(l.says, CniSays::Snapshot | CniSays::Added));
    let Some(capture) = at.map(|i| mine[i]) else {
        let but = match mine.iter().rev().find(|l| matches!(l.says, CniSays::Failed(_))) {
            Some(f) => format!("; it logged `{}` at {}", f.what(), when(f.at)),
            None => String::new(),
        };
        return Adoption::Not(format!(
            "istio-cni logged no capture of it since its sandbox started ({since_text}){but}"
        ));
    };
    if let Some(f) = mine[at.unwrap_or(0)..].iter().find(|l| matches!(l.says, CniSays::Failed(_))) {
        return Adoption::Not(format!(
            "istio-cni logged `{}` at {}, after it {} at {}",
            f.what(),
            when(f.at),
            capture.what(),
            when(capture.at)
        ));
    }
    if capture.says == CniSays::Snapshot {
        // The reconcile mode of the agent that sent the snapshot (the one on the pod's node).
        let reconciled = lines
            .iter()
            .take_while(|l| !std::ptr::eq(*l, capture))
            .any(|l| l.says == CniSays::ReconcileMode && l.source == capture.source);
        if !reconciled {
            return Adoption::Not(format!(
                "istio-cni {} at {}, but logged no `inpod reconcile mode enabled`: its start-up scan then \
                 writes no in-pod rules (reconcileIptablesOnStartup off)",
                capture.what(),
                when(capture.at)
            ));
        }
        if let Some(f) = mine.iter().find(|l| l.says == CniSays::Failed(RECONCILE_FAILED.into())) {
            return Adoption::Not(format!("istio-cni logged `{}` at {}", f.what(), when(f.at)));
        }
    }
    let received = obs
        .proxies
        .iter()
        .flatten()
        .filter(|l| matches!(&l.says, ZtunnelSays::Received { uid } if *uid == pod.uid))
        .filter_map(|l| l.at)
        .filter(|t| since.is_none_or(|s| *t >= s))
        .max();
    let at = received.map(|t| format!(" at {}", utc::format(t))).unwrap_or_default();
    Adoption::Adopted {
        evidence: format!(
            "ztunnel adopted {} (uid {}){at}: Up in its workloadState; istio-cni: {} at {}",
            pod.name,
            pod.uid,
            capture.what(),
            when(capture.at)
        ),
        at: capture.at,
    }
}

/// istio-cni's words for a failed in-pod reconcile ([`CniSays::Failed`]).
const RECONCILE_FAILED: &str = "failed to reconcile inpod rules for pod";

/// ztunnel on each node: stale when it has no pod there or a pod not Ready; when its pod came
/// back with the node (created before the node container last started), kept only on evidence
/// that it works: istio-cni's snapshot received since the node started, and pods adopted since.
pub fn ztunnel(stack: &Stack, obs: &Observation) -> Ztunnel {
    let nodes = nodes(stack, obs);
    let pods = daemon_pods(&obs.pods, &stack.mesh.namespace, &stack.mesh.daemonset);
    let meshed: Vec<&Pod> = obs.pods.iter().filter(|p| p.meshed && !p.terminating).collect();
    // The nodes to judge: those its pods or meshed pods run on (every observed node when there
    // is one), the observed nodes first.
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
            let start = nodes.iter().find(|n| &n.name == name);
            let started = start.and_then(|n| n.started_at);
            let last = |s: u64| start.map(|n| n.started(s)).unwrap_or_default();
            let restarts = || here.iter().filter_map(|p| PodRestart::of(p).ok()).collect();
            let stale = |why: String| OnNode {
                node: name.clone(),
                stale: Some(why),
                ready_since: None,
                kept: String::new(),
                pods: restarts(),
            };
            if here.is_empty() {
                return stale(if one {
                    "it has no pod".into()
                } else {
                    format!("it has no pod on node {name}")
                });
            }
            if let Some(p) = here.iter().find(|p| !p.ready()) {
                return stale(format!(
                    "it is not healthy on node {name}: its pod {} (created {}) is not Ready",
                    p.name,
                    when(p.created)
                ));
            }
            let p = here.iter().max_by_key(|p| p.ready_since).expect("not empty");
            let ready_since = here.iter().filter_map(|p| p.ready_since).max();
            let came_back = started.and_then(|start| {
                here.iter().find(|p| p.created.unwrap_or(0) < start).map(|p| (p, start))
            });
            let kept = match came_back {
                None => {
                    let after = started.map(|s| format!(", after {}", last(s))).unwrap_or_default();
                    format!("its pod {} was created {}{after}, Ready since {}", p.name, when(p.created), when(p.ready_since))
                }
                Some((back, start)) => match works(stack, obs, &nodes, name, start) {
                    Ok(evidence) => format!(
                        "its pod {} on node {name} came back with the node (created {}, before {}) and works: \
                         Ready since {}; {evidence}",
                        back.name,
                        when(back.created),
                        last(start),
                        when(ready_since)
                    ),
                    Err(why) => {
                        return stale(format!(
                            "its pod {} on node {name} came back with the node (created {}, before {}) and \
                             nothing shows it works: {why}; restarting it is the safe remedy",
                            back.name,
                            when(back.created),
                            last(start)
                        ));
                    }
                },
            };
            OnNode { node: name.clone(), stale: None, ready_since, kept, pods: restarts() }
        })
        .collect();
    Ztunnel { nodes: verdicts }
}

/// The evidence that ztunnel on `node` works since the node started at `start`: istio-cni's
/// snapshot received since (`received snapshot sent`), and at least one meshed pod there it adopted.
fn works(
    stack: &Stack,
    obs: &Observation,
    nodes: &[NodeStart],
    node: &str,
    start: u64,
) -> Result<String, String> {
    let proxies = obs.proxies.as_ref().map_err(|e| format!("its log could not be read ({e})"))?;
    // Its own pods' lines (`kubectl logs --all-pods` names each line's pod).
    let mine: Vec<&str> = daemon_pods(&obs.pods, &stack.mesh.namespace, &stack.mesh.daemonset)
        .into_iter()
        .filter(|p| node_of(nodes, p) == Some(node))
        .map(|p| p.name.as_str())
        .collect();
    let snapshot = proxies
        .iter()
        .filter(|l| l.source.as_deref().is_none_or(|s| mine.contains(&s)))
        .filter(|l| l.says == ZtunnelSays::SnapshotDone)
        .filter_map(|l| l.at)
        .filter(|t| *t >= start)
        .max()
        .ok_or_else(|| {
            format!(
                "its log shows no snapshot from istio-cni (`received snapshot sent`) since {}",
                utc::format(start)
            )
        })?;
    let meshed: Vec<&Pod> = super::members::current(stack, obs)
        .into_iter()
        .filter(|p| p.meshed && node_of(nodes, p) == Some(node))
        .collect();
    let adopted =
        meshed.iter().filter(|p| matches!(adoption(obs, nodes, p), Adoption::Adopted { .. })).count();
    // No meshed pod there (a tainted control plane): nothing shows it works; the safe remedy.
    if meshed.is_empty() {
        return Err("no meshed pod runs on the node, so none shows it works".into());
    }
    if adopted == 0 {
        let why = match adoption(obs, nodes, meshed[0]) {
            Adoption::Not(why) => why,
            Adoption::Adopted { .. } => unreachable!("counted"),
        };
        return Err(format!(
            "it adopted none of the {} meshed pod(s) on the node since (e.g. {}: {why})",
            meshed.len(),
            meshed[0].name
        ));
    }
    Ok(format!(
        "istio-cni's snapshot received at {}; it adopted {adopted} of the {} meshed pod(s) on the node",
        utc::format(snapshot),
        meshed.len()
    ))
}

/// A meshed pod's verdict, on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InMesh {
    /// Created after ztunnel on its node was Ready: its sandbox got its CNI ADD (why).
    Fresh(String),
    /// Adopted since its sandbox started, on evidence (which).
    Adopted(String),
    /// Stale (why).
    Stale(String),
}

/// A pod of a meshed workload: fresh (created after ztunnel on its node was Ready), adopted on
/// evidence ([`adoption`]), or stale (ztunnel is restarted, or nothing shows it was adopted).
pub fn in_mesh(obs: &Observation, ztunnel: &Ztunnel, nodes: &[NodeStart], pod: &Pod) -> InMesh {
    let on = node_of(nodes, pod).map(|n| format!(" on its node {n}")).unwrap_or_default();
    match ztunnel.ready_for(nodes, pod) {
        None => InMesh::Stale(format!(
            "ztunnel is restarted first{on}, and its pod {} was created before ({})",
            pod.name,
            when(pod.created)
        )),
        Some(t) if pod.created.unwrap_or(0) >= t => InMesh::Fresh(format!(
            "its pod {} was created {}, after ztunnel was Ready ({})",
            pod.name,
            when(pod.created),
            utc::format(t)
        )),
        Some(t) => match adoption(obs, nodes, pod) {
            Adoption::Adopted { evidence, .. } => InMesh::Adopted(evidence),
            Adoption::Not(why) => InMesh::Stale(format!(
                "its pod {} was created {} before ztunnel's pods were Ready{on} ({}), and nothing shows the mesh \
                 adopted it since its sandbox started: {why}",
                pod.name,
                when(pod.created),
                utc::format(t)
            )),
        },
    }
}

/// Since when a line is about this pod: its creation, or its capture when the mesh adopted it
/// (a line from before is about the IP's previous holder, or the pod's previous sandbox).
fn evidence_since(obs: &Observation, nodes: &[NodeStart], pod: &Pod) -> u64 {
    let created = pod.created.unwrap_or(0);
    match adoption(obs, nodes, pod) {
        Adoption::Adopted { at: Some(at), .. } => at.max(created),
        _ => created,
    }
}

/// ztunnel's failed HBONE connections to this pod: to one of its IPs, logged when it existed and,
/// when the mesh adopted it, since then.
pub fn hbone<'a>(obs: &'a Observation, nodes: &[NodeStart], pod: &Pod) -> Vec<&'a HboneFailure> {
    let since = evidence_since(obs, nodes, pod);
    obs.hbone
        .iter()
        .flatten()
        .filter(|f| pod.ips.contains(&f.ip) && f.at.is_none_or(|at| at >= since))
        .collect()
}

/// istio-cni's failures naming this pod since its sandbox started (a line without a time counts),
/// not followed by a capture by the CNI ADD (the lines).
pub fn cni<'a>(obs: &'a Observation, pod: &Pod) -> Vec<&'a str> {
    let Ok(lines) = &obs.cni else { return Vec::new() };
    let since = pod.sandbox_since.or(pod.created).unwrap_or(0);
    let mine: Vec<&CniLine> = lines
        .iter()
        .filter(|l| l.about(&pod.uid, &pod.namespace, &pod.name) && l.at.is_none_or(|t| t >= since))
        .collect();
    mine.iter()
        .enumerate()
        .filter(|(i, l)| {
            matches!(l.says, CniSays::Failed(_))
                && !mine[i + 1..].iter().any(|later| later.says == CniSays::Added)
        })
        .map(|(_, l)| l.line.as_str())
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
    let nodes = nodes(stack, obs);
    for pod in pods {
        for f in hbone(obs, &nodes, pod) {
            let line = format!("ztunnel: {} to {}:15008 ({})", f.error, f.ip, pod.name);
            if !why.contains(&line) {
                why.push(line);
            }
        }
    }
    for pod in pods {
        if let Some(line) = cni(obs, pod).first() {
            let what = obs
                .cni
                .iter()
                .flatten()
                .find(|l| l.line == *line)
                .map(|l| l.what().to_string())
                .unwrap_or_else(|| RECONCILE_FAILED.to_string());
            why.push(format!("istio-cni: {what} {}", pod.name));
        }
    }
    why
}

/// Where ztunnel itself is what is broken, and why, node by node: a pod of it not Ready there,
/// or HBONE failures to a pod on that node created after ztunnel there was Ready (a fresh pod it
/// cannot reach). What an escalation restarts.
pub fn ztunnel_blame(stack: &Stack, obs: &Observation) -> Vec<(String, String)> {
    let nodes = nodes(stack, obs);
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
        if let Some(f) = hbone(obs, &nodes, pod).into_iter().next() {
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

/// ztunnel is back on `node` after its pods there (`gone`: their UIDs) were deleted: a pod of its
/// DaemonSet on that node, not one of those, not going away, and Ready.
pub fn back_on<'a>(stack: &Stack, pods: &'a [Pod], node: &str, gone: &[&str]) -> Option<&'a Pod> {
    daemon_pods(pods, &stack.mesh.namespace, &stack.mesh.daemonset)
        .into_iter()
        .find(|p| p.node == node && !gone.contains(&p.uid.as_str()) && p.ready())
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
    fn node(name: &str, role: &str, started: u64) -> crate::engine::Node {
        crate::engine::Node {
            name: name.into(),
            role: role.into(),
            running: true,
            started_at: Some(started),
            ..crate::engine::Node::default()
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
        assert!(matches!(in_mesh(&obs, &judged, &nodes, &obs.pods[2]), InMesh::Fresh(_)));
        let InMesh::Stale(why) = in_mesh(&obs, &judged, &nodes, &obs.pods[3]) else {
            panic!("created before its node's ztunnel was Ready, and not shown adopted");
        };
        assert!(why.contains("before ztunnel's pods were Ready"), "{why}");

        // A ztunnel pod that came back with the node it runs on; a node with meshed pods and no
        // ztunnel pod: stale either way, and then every meshed pod is.
        let obs = observed(vec![pod("ztunnel-a", &cp, START - 3600, Some(START + 5))]);
        assert!(ztunnel(&stack, &obs).stale().unwrap().contains("before the node last started"));
        let obs = observed(vec![
            pod("ztunnel-a", &cp, START + 10, Some(START + 13)),
            pod("app-on-worker", "worker", START + 100, Some(START + 105)),
        ]);
        let judged = ztunnel(&stack, &obs);
        assert_eq!(judged.stale(), Some("it has no pod on node worker"));
        let InMesh::Stale(why) = in_mesh(&obs, &judged, &nodes, &obs.pods[1]) else { panic!("stale") };
        assert!(why.starts_with("ztunnel is restarted first"), "{why}");
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
        let why = w2.stale.as_deref().unwrap();
        assert!(
            why.contains("its pod ztunnel-w2 on node bookstore-worker2 came back with the node")
                && why.contains("State.StartedAt of its container"),
            "{why}"
        );
        let nodes = nodes(&stack, &obs);
        assert!(
            matches!(in_mesh(&obs, &judged, &nodes, &obs.pods[3]), InMesh::Fresh(_)),
            "a pod on a node that did not restart"
        );
        let InMesh::Stale(why) = in_mesh(&obs, &judged, &nodes, &obs.pods[4]) else { panic!("stale") };
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
        let nodes = [NodeStart { name: String::new(), started_at: Some(START), source: None }];
        obs.hbone = Ok(vec![line(START + 99)]);
        assert!(hbone(&obs, &nodes, &obs.pods[0]).is_empty(), "about the IP's previous holder");
        obs.hbone = Ok(vec![line(START + 99), line(START + 100)]);
        assert_eq!(hbone(&obs, &nodes, &obs.pods[0]).len(), 1, "a tie counts as after");
    }

    /// A node restart at START restarted ztunnel and the app in place (created an hour before);
    /// ztunnel took istio-cni's snapshot at START + 3 and was Ready at START + 4.
    fn restarted(app_state: &str, cni: &str) -> (Stack, Observation) {
        let stack = load(Source::Embedded).unwrap();
        let cp = stack.cluster.control_plane_container();
        let mut app = pod("redis-6b5-abcde", &cp, START - 3600, Some(START + 5));
        app.uid = "u-redis".into();
        app.sandbox = Some(true);
        app.sandbox_since = Some(START + 1);
        let mut obs = observed(vec![pod("ztunnel-a", &cp, START - 3600, Some(START + 4)), app]);
        let zlog = "2027-01-15T08:00:03.100000Z\tinfo\tinpod::statemanager\tpod received, starting proxy\tuid=\"u-redis\" name=\"redis-6b5-abcde\" namespace=\"ecom\"\n\
             2027-01-15T08:00:03.200000Z\tinfo\tinpod::statemanager\treceived snapshot sent\t\n";
        assert_eq!(utc::format(START), "2027-01-15T08:00:00Z", "the lines below are written for START");
        obs.proxies = Ok(crate::observe::evidence::parse_ztunnel_proxies(zlog));
        obs.cni = Ok(crate::observe::evidence::parse_cni(cni));
        let state = format!(
            r#"{{"workloadState": {{"u-redis": {{"info": {{"name": "redis-6b5-abcde", "namespace": "ecom"}}, "state": "{app_state}"}}}}}}"#
        );
        obs.workload_state = vec![(cp, crate::observe::evidence::parse_workload_state(&state))];
        (stack, obs)
    }

    const RECONCILE: &str = "2027-01-15T08:00:00.500000Z\tinfo\tcni-agent\tinpod reconcile mode enabled\n";
    const SNAPSHOT: &str = "2027-01-15T08:00:03.000000Z\tinfo\tcni-agent\tsending pod to ztunnel as part of snapshot\tuid=u-redis name=redis-6b5-abcde namespace=ecom serviceAccount=default\n";
    const ADDED: &str = "2027-01-15T08:00:06.000000Z\tinfo\tcni-agent\tsending pod add to ztunnel\tuid=u-redis name=redis-6b5-abcde namespace=ecom serviceAccount=default conn_uuid=1\n";

    #[test]
    fn a_pod_restarted_in_place_is_kept_only_on_both_sides_evidence_since_its_sandbox_started() {
        let adopted = |state: &str, cni: &str| {
            let (stack, obs) = restarted(state, cni);
            let nodes = nodes(&stack, &obs);
            (
                adoption(&obs, &nodes, &obs.pods[1]),
                in_mesh(&obs, &ztunnel(&stack, &obs), &nodes, &obs.pods[1]),
            )
        };
        // The start-up snapshot, with the in-pod rules reconciled; or its CNI ADD.
        let (a, verdict) = adopted("Up", &format!("{RECONCILE}{SNAPSHOT}"));
        let Adoption::Adopted { evidence, .. } = a else { panic!("{a:?}") };
        assert_eq!(
            evidence,
            "ztunnel adopted redis-6b5-abcde (uid u-redis) at 2027-01-15T08:00:03Z: Up in its workloadState; \
             istio-cni: sent in the start-up snapshot at 2027-01-15T08:00:03Z"
        );
        assert_eq!(verdict, InMesh::Adopted(evidence));
        assert!(matches!(adopted("Up", ADDED).0, Adoption::Adopted { .. }));
        // What proves nothing: the snapshot without the reconcile (no in-pod rules), ztunnel's
        // entry alone, a capture from before its sandbox started, an entry not Up.
        // (Its only pod not adopted, ztunnel is not shown to work either: restarted first.)
        let not = |state: &str, cni: &str| match adopted(state, cni) {
            (Adoption::Not(why), InMesh::Stale(stale)) => {
                assert!(stale.starts_with("ztunnel is restarted first"), "{stale}");
                why
            }
            other => panic!("{other:?}"),
        };
        assert!(not("Up", SNAPSHOT).contains("inpod reconcile mode enabled"));
        assert!(not("Up", "").contains("istio-cni logged no capture of it since its sandbox started"));
        let before = SNAPSHOT.replace("08:00:03", "07:59:59");
        assert!(not("Up", &format!("{RECONCILE}{before}")).contains("no capture"));
        assert!(not("Pending", ADDED).contains("is Pending, not Up"));
        assert!(not("Up", "").contains("no capture"));
        let (stack, mut obs) = restarted("Up", ADDED);
        obs.workload_state.clear();
        assert!(
            matches!(adoption(&obs, &nodes(&stack, &obs), &obs.pods[1]), Adoption::Not(w) if w.contains("not read"))
        );
        // A failure after the capture, or a failed reconcile with the snapshot.
        let failed = "2027-01-15T08:00:07.000000Z\terror\tcni-agent\tfailed to handle add event: no ztunnel connection\tns=ecom name=redis-6b5-abcde\n";
        assert!(not("Up", &format!("{ADDED}{failed}")).contains("failed to handle add event"));
        let reconcile_failed = "2027-01-15T08:00:01.500000Z\terror\tcni-agent\tfailed to reconcile inpod rules for pod, try restarting the pod, or removing and re-adding it to the mesh: exit status 1\tns=ecom name=redis-6b5-abcde\n";
        assert!(
            not("Up", &format!("{RECONCILE}{reconcile_failed}{SNAPSHOT}")).contains("failed to reconcile")
        );
        // A refused HBONE connection logged before it was adopted is about its previous sandbox.
        let (stack, mut obs) = restarted("Up", &format!("{RECONCILE}{SNAPSHOT}"));
        let ip = obs.pods[1].ips[0].clone();
        let refused = |at| HboneFailure {
            at: Some(at),
            ip: ip.clone(),
            error: "io error: Connection refused (os error 111)".into(),
            line: String::new(),
        };
        obs.hbone = Ok(vec![refused(START + 2)]);
        let nodes = nodes(&stack, &obs);
        assert!(hbone(&obs, &nodes, &obs.pods[1]).is_empty());
        obs.hbone = Ok(vec![refused(START + 2), refused(START + 9)]);
        assert_eq!(hbone(&obs, &nodes, &obs.pods[1]).len(), 1);
    }

    #[test]
    fn ztunnel_that_came_back_with_its_node_is_kept_only_when_it_is_shown_to_work() {
        let (stack, obs) = restarted("Up", &format!("{RECONCILE}{SNAPSHOT}"));
        let judged = ztunnel(&stack, &obs);
        assert_eq!(judged.stale(), None, "{judged:?}");
        assert!(
            judged
                .kept()
                .contains("istio-cni's snapshot received at 2027-01-15T08:00:03Z; it adopted 1 of the 1"),
            "{}",
            judged.kept()
        );
        // It adopted none of the pods (the guide's world): not shown to work, restarted.
        let (stack, obs) = restarted("Up", "");
        let why = ztunnel(&stack, &obs).stale().unwrap().to_string();
        assert!(
            why.contains("came back with the node") && why.contains("adopted none of the 1 meshed pod(s)"),
            "{why}"
        );
        // No snapshot since the node started.
        let (stack, mut obs) = restarted("Up", &format!("{RECONCILE}{SNAPSHOT}"));
        obs.proxies = Ok(Vec::new());
        assert!(ztunnel(&stack, &obs).stale().unwrap().contains("no snapshot from istio-cni"));
    }

    #[test]
    fn nothing_is_judged_until_the_mesh_has_settled() {
        let (stack, mut obs) = restarted("Up", ADDED);
        obs.at = START + 10;
        assert_eq!(settled(&stack, &obs), Ok(()));
        obs.pods[1].sandbox = Some(false);
        obs.pods[1].ready_since = None;
        obs.pods[1].containers[0].ready = false;
        obs.pods[1].containers[0].waiting = Some(("ContainerCreating".into(), String::new()));
        assert!(settled(&stack, &obs).unwrap_err().contains("has no running sandbox yet"));
        // A pod waiting cannot fix is judged as it is.
        obs.pods[1].containers[0].waiting = Some(("CrashLoopBackOff".into(), "back-off 10s".into()));
        assert_eq!(settled(&stack, &obs), Ok(()));
        let zt = &mut obs.pods[0];
        zt.ready_since = None;
        zt.containers[0].ready = false;
        assert!(
            settled(&stack, &obs)
                .unwrap_err()
                .contains("ztunnel's pod ztunnel-a on node bookstore-control-plane is not Ready yet")
        );
        // Long after the node started, a pod not Ready is judged as it is.
        obs.at = START + 3600;
        assert_eq!(settled(&stack, &obs), Ok(()));
        obs.at = START + 10;
        obs.pods[0].containers[0].waiting = Some(("CrashLoopBackOff".into(), "back-off 40s".into()));
        assert_eq!(settled(&stack, &obs), Ok(()));
    }
}
