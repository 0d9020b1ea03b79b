//! The critical path (pure): a graph of tasks with their durations, each started the moment
//! what it waits for is done; the recovery as such a graph under the simulator's latencies.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use crate::config::Infra;
use crate::latency::{delays, latency_secs};

/// One task of a recovery as the simulator times it.
#[derive(Debug, Clone, PartialEq)]
pub struct PathNode {
    pub name: String,
    /// Seconds from the moment it may start to done.
    pub secs: f64,
    /// How `secs` is made up, for the derivation.
    pub how: String,
    /// What must be done before it may start.
    pub after: Vec<String>,
}

impl PathNode {
    pub fn new(name: &str, secs: f64, how: &str, after: &[&str]) -> PathNode {
        PathNode {
            name: name.to_string(),
            secs,
            how: how.to_string(),
            after: after.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// Earliest finish of every node when each starts the moment what it waits for is done.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub(super) nodes: Vec<PathNode>,
    done: BTreeMap<String, f64>,
    /// The predecessor that finishes last (the one that decides the start).
    via: BTreeMap<String, Option<String>>,
}

impl Schedule {
    /// Err on an unknown name in `after` or a cycle.
    pub fn new(nodes: Vec<PathNode>) -> Result<Schedule> {
        for n in &nodes {
            for a in &n.after {
                if !nodes.iter().any(|m| &m.name == a) {
                    bail!("{} waits for {a}, which is not in the graph", n.name);
                }
            }
        }
        let mut done: BTreeMap<String, f64> = BTreeMap::new();
        let mut via: BTreeMap<String, Option<String>> = BTreeMap::new();
        while done.len() < nodes.len() {
            let before = done.len();
            for n in &nodes {
                if done.contains_key(&n.name) {
                    continue;
                }
                let known: Option<Vec<(f64, &String)>> =
                    n.after.iter().map(|a| done.get(a).map(|t| (*t, a))).collect();
                let Some(known) = known else { continue };
                let mut start: Option<(f64, &String)> = None;
                for (t, a) in known {
                    if start.is_none_or(|(s, _)| t > s) {
                        start = Some((t, a));
                    }
                }
                done.insert(n.name.clone(), start.map_or(0.0, |(t, _)| t) + n.secs);
                via.insert(n.name.clone(), start.map(|(_, a)| a.clone()));
            }
            if done.len() == before {
                let stuck: Vec<&str> =
                    nodes.iter().filter(|n| !done.contains_key(&n.name)).map(|n| n.name.as_str()).collect();
                bail!("dependency cycle among {}", stuck.join(", "));
            }
        }
        Ok(Schedule { nodes, done, via })
    }

    pub fn done_at(&self, name: &str) -> Option<f64> {
        self.done.get(name).copied()
    }

    /// The chain of nodes that ends at `end`, first to last.
    pub fn chain(&self, end: &str) -> Vec<&PathNode> {
        let mut out = Vec::new();
        let mut at = Some(end.to_string());
        while let Some(name) = at {
            let Some(n) = self.nodes.iter().find(|n| n.name == name) else { break };
            out.push(n);
            at = self.via.get(&name).cloned().flatten();
        }
        out.reverse();
        out
    }

    /// The critical path: the chain to the node that finishes last (first listed on a tie).
    pub fn critical(&self) -> (Vec<&PathNode>, f64) {
        let mut end: Option<(&str, f64)> = None;
        for n in &self.nodes {
            let t = self.done[&n.name];
            if end.is_none_or(|(_, e)| t > e) {
                end = Some((&n.name, t));
            }
        }
        match end {
            Some((name, t)) => (self.chain(name), t),
            None => (Vec::new(), 0.0),
        }
    }
}

/// The same graph backwards: each node after what waits for it. Its schedule's `done_at(name)` is
/// then the node's tail (itself and the longest chain of what waits for it), and its `chain(name)`
/// that chain, last first: the bootstrap's bound orders its downloads by these tails.
pub fn reversed(nodes: &[PathNode]) -> Vec<PathNode> {
    nodes
        .iter()
        .map(|n| PathNode {
            after: nodes.iter().filter(|m| m.after.contains(&n.name)).map(|m| m.name.clone()).collect(),
            ..n.clone()
        })
        .collect()
}

/// The Connect REST API node's name in [`recovery_graph`].
fn connect_api(workload: &str) -> String {
    format!("{workload} REST API")
}

/// The recovery as a graph under the simulator's latencies, × `scale`: ztunnel's rollout, then
/// every workload after ztunnel and what it `needs` (stack file); then Connect's REST API after
/// its worker has joined, and each connector after the API and its databases until its status
/// shows. With `controller`, each rollout also pays the Deployment/DaemonSet controller's delay
/// to observe the restart (as the simulator does); without, the arithmetic (latencies).
pub fn recovery_graph(infra: &Infra, scale: f64, controller: bool) -> Vec<PathNode> {
    let observe = if controller { delays::OBSERVE } else { 0.0 };
    let rollout = |name: &str, after: &[&str]| {
        let ready = latency_secs(name);
        let how = if controller {
            format!("observe {observe:.1} + ready {ready:.1}")
        } else {
            format!("ready {ready:.1}")
        };
        PathNode::new(name, (observe + ready) * scale, &how, after)
    };
    let mesh = infra.stack.mesh.daemonset.as_str();
    let mut nodes = vec![rollout(mesh, &[])];
    for w in &infra.stack.workloads {
        let after: Vec<&str> = std::iter::once(mesh).chain(w.needs.iter().map(String::as_str)).collect();
        nodes.push(rollout(&w.name, &after));
    }
    let connect = &infra.stack.connect;
    if !infra.connectors().is_empty() {
        let api = connect_api(&connect.workload);
        nodes.push(PathNode::new(
            &api,
            delays::CONNECT_JOIN * scale,
            &format!("worker joins the group {:.1}", delays::CONNECT_JOIN),
            &[connect.workload.as_str()],
        ));
        let status =
            (delays::CONNECT_NO_STATUS * scale).max(delays::CONNECT_NO_STATUS_MIN_MS as f64 / 1000.0);
        for c in infra.connectors() {
            let after: Vec<&str> =
                std::iter::once(api.as_str()).chain(c.needs.iter().map(String::as_str)).collect();
            nodes.push(PathNode::new(
                &c.name,
                status,
                &format!(
                    "PUT, then no status for {:.1}, ≥ {} ms",
                    delays::CONNECT_NO_STATUS,
                    delays::CONNECT_NO_STATUS_MIN_MS
                ),
                &after,
            ));
        }
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimOptions;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_critical_path_is_the_longest_chain_of_waits() {
        let nodes = vec![
            PathNode::new("ztunnel", 4.0, "", &[]),
            PathNode::new("keycloak-db", 6.0, "", &["ztunnel"]),
            PathNode::new("keycloak", 40.0, "", &["ztunnel", "keycloak-db"]),
            PathNode::new("kafka", 15.0, "", &["ztunnel"]),
            PathNode::new("debezium", 20.0, "", &["ztunnel", "kafka"]),
            PathNode::new("connector", 5.0, "", &["debezium", "keycloak-db"]),
        ];
        let s = Schedule::new(nodes).unwrap();
        let (chain, total) = s.critical();
        assert!(close(total, 50.0), "{total}");
        let names: Vec<&str> = chain.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["ztunnel", "keycloak-db", "keycloak"]);
        assert!(close(s.done_at("connector").unwrap(), 44.0));
        let to_connector: Vec<&str> = s.chain("connector").iter().map(|n| n.name.as_str()).collect();
        assert_eq!(to_connector, ["ztunnel", "kafka", "debezium", "connector"]);
    }

    #[test]
    fn backwards_a_nodes_finish_is_its_tail() {
        let nodes = vec![
            PathNode::new("ztunnel", 4.0, "", &[]),
            PathNode::new("kafka", 15.0, "", &["ztunnel"]),
            PathNode::new("debezium", 20.0, "", &["ztunnel", "kafka"]),
            PathNode::new("connector", 5.0, "", &["debezium"]),
        ];
        let back = Schedule::new(reversed(&nodes)).unwrap();
        assert!(close(back.done_at("kafka").unwrap(), 40.0));
        assert!(close(back.done_at("ztunnel").unwrap(), 44.0));
        let from_kafka: Vec<&str> = back.chain("kafka").iter().rev().map(|n| n.name.as_str()).collect();
        assert_eq!(from_kafka, ["kafka", "debezium", "connector"]);
    }

    #[test]
    fn cycles_and_unknown_names_are_errors() {
        let cycle = vec![PathNode::new("a", 1.0, "", &["b"]), PathNode::new("b", 1.0, "", &["a"])];
        assert!(Schedule::new(cycle).unwrap_err().to_string().contains("cycle"));
        let unknown = vec![PathNode::new("a", 1.0, "", &["nope"])];
        assert!(Schedule::new(unknown).unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn the_stacks_critical_path_under_the_latency_table() {
        let infra = Infra::load(&SimOptions::default().infra_dir).unwrap();
        // The arithmetic: ztunnel 4 + keycloak-db 6 + keycloak 40.
        let bare_schedule = Schedule::new(recovery_graph(&infra, 1.0, false)).unwrap();
        let (chain, bare) = bare_schedule.critical();
        assert!(close(bare, 50.0), "{bare}");
        assert_eq!(chain.last().unwrap().name, "keycloak");
        // As the simulator times it: the controller's 0.5 s on each of the three rollouts.
        let s = Schedule::new(recovery_graph(&infra, 1.0, true)).unwrap();
        assert!(close(s.critical().1, 51.5));
        // Connectors: ztunnel 4.5 + kafka 15.5 + debezium 20.5 + join 3 + status 2.
        assert!(close(s.done_at("ecom-connector").unwrap(), 45.5));
        let fast = Schedule::new(recovery_graph(&infra, 0.1, true)).unwrap();
        assert!(close(fast.critical().1, 5.15));
    }
}
