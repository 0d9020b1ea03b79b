//! When each node of a shared cluster last started, read from the Kubernetes API alone (no Docker
//! to ask): the per-node "last started" the mesh rule ([`super::mesh`]) takes, with its evidence.
//!
//! What the API shows after a node restarts (kubernetes `pkg/kubelet`):
//! - The kubelet records **Normal `Starting`** "Starting kubelet." on its Node when it starts
//!   (`kubelet.go` `BirthCry`; `events.StartingKubelet`).
//! - On its first status update it compares the Node's stored `status.nodeInfo.bootID` with the
//!   kernel's: when they differ it records **Warning `Rebooted`** "Node N has been rebooted, boot id:
//!   …" and stores the new one (`nodestatus/setters.go` `MachineInfo`; `events.NodeRebooted`).
//! - The `Ready` condition's `lastTransitionTime` moves only when its status changes
//!   (`setters.go` `ReadyCondition`): after an outage longer than the controller's grace period
//!   (Unknown), or a kubelet that first reports NotReady (its network not ready yet); a short
//!   restart can leave it as it was, and a network blip moves it with no restart.
//! - Pods come back **in place**: same pod and `creationTimestamp`, `restartCount`+1, a new
//!   container `state.running.startedAt`.
//! - Events expire (kube-apiserver `--event-ttl`, 1 h by default), and a bootID alone says
//!   nothing without the value before it.
//!
//! The rule, from one observation: a node last started at the latest of
//! 1. its kubelet's `Starting` event, and its `Rebooted` event (while they last: 1 h);
//! 2. its `Ready` transition to True, when a container on that node restarted in place at or
//!    after it (`restartCount` > 0, `startedAt` ≥ the transition): the pods came back with the
//!    node, which a network blip does not do. This outlives the events.
//!
//! In one second (timestamps are whole seconds) the verdict cites the strongest: `Rebooted`, then
//! `Starting`, then the transition.
//!
//! None of them: not known (`None`): the time rule says nothing about that node, the evidence
//! rule still does. Erring late is the safe side: a pod created between the real start and the
//! evidence counts as older than the node, so it is restarted. `watch` adds what it saw live (a
//! new bootID, a Ready transition) by observing again: its heal is `up`, read while the events
//! are fresh.

use crate::cluster::{Event, Node, Pod};
use crate::utc;

/// A node of the cluster and when it last started: the per-node input of the mesh's time rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStart {
    /// The Kubernetes node name (kind names a node after its container).
    pub name: String,
    /// When it last started (seconds since the epoch): on kind `State.StartedAt` of its
    /// container, on a shared cluster the API's evidence; `None` when not known.
    pub started_at: Option<u64>,
    /// The evidence for `started_at`, when it is not the node container's `State.StartedAt`: on a
    /// shared cluster, what the API shows.
    pub source: Option<String>,
}

impl NodeStart {
    /// How its last start is known, for a verdict: "the node last started (…, State.StartedAt of
    /// its container)" on kind, or the API's evidence on a shared cluster.
    pub(super) fn started(&self, start: u64) -> String {
        match &self.source {
            Some(evidence) => evidence.clone(),
            None => {
                format!("the node last started ({}, State.StartedAt of its container)", utc::format(start))
            }
        }
    }
}

/// The kubelet's event when it starts (`pkg/kubelet/events`: `StartingKubelet`).
pub const STARTING: &str = "Starting";
/// The kubelet's event when the bootID changed (`NodeRebooted`).
pub const REBOOTED: &str = "Rebooted";

/// Each node's last start from the API, with the evidence it rests on.
pub fn last_started(nodes: &[Node], events: &[Event], pods: &[Pod]) -> Vec<NodeStart> {
    nodes.iter().map(|n| last_start(n, events, pods)).collect()
}

fn last_start(node: &Node, events: &[Event], pods: &[Pod]) -> NodeStart {
    // (when, weight on a tie, why): in one second, the kubelet's Rebooted event says most.
    let mut found: Vec<(u64, u8, String)> = Vec::new();
    for e in events.iter().filter(|e| e.kind == "Node" && e.object == node.name) {
        let Some(at) = e.last else { continue };
        match e.reason.as_str() {
            REBOOTED => found.push((at, 2, format!("the kubelet's {REBOOTED} event: \"{}\"", e.message))),
            STARTING if e.source == "kubelet" || e.source.is_empty() => {
                found.push((at, 1, format!("the kubelet's {STARTING} event (\"{}\")", e.message)))
            }
            _ => {}
        }
    }
    if node.ready == Some(true)
        && let Some(t) = node.ready_changed
    {
        let in_place = pods.iter().filter(|p| p.node == node.name && !p.terminating).find_map(|p| {
            let c = p.containers.iter().find(|c| c.restarts > 0 && c.started.is_some_and(|s| s >= t))?;
            Some((p, c))
        });
        if let Some((p, c)) = in_place {
            found.push((
                t,
                0,
                format!(
                    "its Ready transition, with pod {} restarted in place on it ({} restart(s), started {})",
                    p.name,
                    c.restarts,
                    c.started.map(utc::format).unwrap_or_else(|| "at an unknown time".into())
                ),
            ));
        }
    }
    let latest = found.iter().max_by_key(|(at, weight, _)| (*at, *weight));
    NodeStart {
        name: node.name.clone(),
        started_at: latest.map(|(at, _, _)| *at),
        source: Some(match latest {
            Some((at, _, why)) => format!("node {} last started {}: {why}", node.name, utc::format(*at)),
            None => format!(
                "node {}: no restart evidence in the API (no kubelet Starting/Rebooted event in the \
                 last hour, no pod restarted in place since its Ready transition)",
                node.name
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Container;

    const T: u64 = 1_800_000_000;

    fn node(name: &str, ready_changed: u64) -> Node {
        Node {
            name: name.into(),
            boot_id: "b1".into(),
            ready: Some(true),
            ready_changed: Some(ready_changed),
            ..Node::default()
        }
    }

    fn event(node: &str, reason: &str, at: u64, source: &str) -> Event {
        Event {
            namespace: "default".into(),
            kind: "Node".into(),
            object: node.into(),
            typ: if reason == REBOOTED { "Warning" } else { "Normal" }.into(),
            reason: reason.into(),
            message: if reason == REBOOTED {
                format!("Node {node} has been rebooted, boot id: b2")
            } else {
                "Starting kubelet.".into()
            },
            count: 1,
            last: Some(at),
            source: source.into(),
        }
    }

    fn pod(name: &str, node: &str, restarts: u64, started: u64) -> Pod {
        Pod {
            name: name.into(),
            node: node.into(),
            created: Some(T - 7200),
            containers: vec![Container { restarts, started: Some(started), ..Container::default() }],
            ..Pod::default()
        }
    }

    #[test]
    fn the_kubelets_events_date_a_restart_while_they_last() {
        let nodes = [node("k3s-a", T - 7200), node("k3s-b", T - 7200)];
        let events = [
            event("k3s-b", STARTING, T, "kubelet"),
            event("k3s-b", REBOOTED, T + 3, "kubelet"),
            // kube-proxy says Starting too: not the kubelet.
            event("k3s-a", STARTING, T + 5, "kube-proxy"),
        ];
        let starts = last_started(&nodes, &events, &[]);
        assert_eq!(starts[0].started_at, None, "{:?}", starts[0]);
        assert_eq!(starts[1].started_at, Some(T + 3));
        assert!(starts[1].source.as_deref().unwrap().contains("Rebooted event"), "{:?}", starts[1]);
    }

    #[test]
    fn a_ready_transition_counts_once_pods_came_back_in_place_after_it() {
        // The events expired: the Ready transition at T and a pod on the node restarted in place
        // after it say the node came back then.
        let nodes = [node("k3s-b", T)];
        let back = [pod("ecom-db-x", "k3s-b", 1, T + 4)];
        let start = &last_started(&nodes, &[], &back)[0];
        assert_eq!(start.started_at, Some(T));
        assert!(start.source.as_deref().unwrap().contains("ecom-db-x restarted in place"), "{start:?}");
        // In the same second as the kubelet's Rebooted event, the event is what is cited.
        let rebooted = [event("k3s-b", REBOOTED, T, "kubelet")];
        let start = &last_started(&nodes, &rebooted, &back)[0];
        assert_eq!(start.started_at, Some(T));
        assert!(start.source.as_deref().unwrap().contains("Rebooted event"), "{start:?}");
        // A network blip: the transition moved, no container restarted after it.
        let blip = [pod("ecom-db-x", "k3s-b", 1, T - 600), pod("fresh", "k3s-b", 0, T + 4)];
        assert_eq!(last_started(&nodes, &[], &blip)[0].started_at, None);
        // A pod on another node says nothing about this one.
        let elsewhere = [pod("ecom-db-x", "k3s-a", 1, T + 4)];
        assert_eq!(last_started(&nodes, &[], &elsewhere)[0].started_at, None);
        // Not Ready: its transition is not a start (yet).
        let down = [Node { ready: Some(false), ..node("k3s-b", T) }];
        assert_eq!(last_started(&down, &[], &back)[0].started_at, None);
    }

    #[test]
    fn the_latest_evidence_wins() {
        let nodes = [node("k3s-b", T + 20)];
        let events = [event("k3s-b", STARTING, T, "kubelet")];
        let back = [pod("p", "k3s-b", 2, T + 25)];
        assert_eq!(last_started(&nodes, &events, &back)[0].started_at, Some(T + 20));
    }
}
