//! The cluster's nodes: one kind node container each (a control plane, and the workers a config
//! declares), each with its own `State.StartedAt`, and the Node objects the API serves; where a
//! pod goes (a deterministic scheduler); whether a node is Ready.
//!
//! As kind makes them (kubernetes-sigs/kind): containers named `<cluster>-control-plane`,
//! `<cluster>-worker`, `<cluster>-worker2`, … (`providers/common/namer.go`), labelled
//! `io.x-k8s.kind.cluster` and `io.x-k8s.kind.role` (`providers/docker/constants.go`); the
//! control plane keeps its `NoSchedule` taint unless it is the only node (`create/actions/
//! kubeadminit/init.go` removes it for a single node), so with workers only DaemonSet pods that
//! tolerate it (ztunnel, istio-cni) run there; `kind create --wait` waits for the control plane
//! only (`create/actions/waitforready/waitforready.go`), and a worker's kubelet turns its Node
//! Ready a while later. A node restart restarts the pods on it in place (`restarts.rs`).

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde_json::json;

use super::{Container, World, container_id};
use crate::store::{Key, Res, str_at};
use crate::timefmt::rfc3339;

pub const CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
pub const ROLE_LABEL: &str = "io.x-k8s.kind.role";

/// How long after `kind create` a worker's Node turns Ready (its kubelet joins and the CNI
/// starts on it), unscaled seconds.
pub const WORKER_JOIN: f64 = 8.0;

/// kind's node container names: the first of a role without a suffix, then 2, 3, …
pub fn node_names(cluster: &str, workers: usize) -> Vec<(String, &'static str)> {
    let mut out = vec![(format!("{cluster}-control-plane"), "control-plane")];
    for i in 0..workers {
        let suffix = if i == 0 { String::new() } else { (i + 1).to_string() };
        out.push((format!("{cluster}-worker{suffix}"), "worker"));
    }
    out
}

impl World {
    /// The cluster's node containers (by kind's label), the control plane first, then by name; a
    /// shared cluster's one node ([`World::node_name`]), a machine of the team's.
    pub fn nodes(&self) -> Vec<String> {
        let Some(cluster) = &self.cluster else { return Vec::new() };
        if self.shared() {
            return vec![self.node_name()];
        }
        let mut nodes: Vec<(&str, &str)> = self
            .containers
            .iter()
            .filter(|c| c.labels.get(CLUSTER_LABEL) == Some(&cluster.name))
            .map(|c| (c.labels.get(ROLE_LABEL).map(String::as_str).unwrap_or(""), c.name.as_str()))
            .collect();
        nodes.sort_by_key(|(role, name)| (*role != "control-plane", *name));
        nodes.into_iter().map(|(_, n)| n.to_string()).collect()
    }

    pub fn node_container(&self, node: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == node)
    }

    /// The node's container runs (a shared cluster's node: while the cluster exists).
    pub fn node_up(&self, node: &str) -> bool {
        if self.shared() {
            return self.cluster.is_some() && node == self.node_name();
        }
        self.docker_up && self.node_container(node).is_some_and(|c| c.running)
    }

    /// When the node's container last started.
    pub fn node_started(&self, node: &str) -> Option<SystemTime> {
        self.node_container(node).map(|c| c.started)
    }

    /// The node's kubelet is up and its Node Ready (joined).
    pub fn node_ready(&self, node: &str, now: Instant) -> bool {
        self.node_up(node) && self.node_ready_at.get(node).is_none_or(|t| now >= *t)
    }

    /// Where a new pod of a Deployment goes: kube-scheduler's spreading, made deterministic: the
    /// Ready schedulable node with the fewest pods, then by name. With workers the control
    /// plane is tainted; the only node otherwise.
    pub(super) fn schedule(&self, now: Instant) -> String {
        let nodes = self.nodes();
        let role = |n: &str| {
            self.node_container(n).and_then(|c| c.labels.get(ROLE_LABEL).cloned()).unwrap_or_default()
        };
        let workers: Vec<&String> = nodes.iter().filter(|n| role(n) == "worker").collect();
        let eligible: Vec<&String> =
            if workers.is_empty() { nodes.iter().take(1).collect() } else { workers };
        let load = |n: &str| self.pods.values().filter(|p| p.node == n).count();
        let ready: Vec<&String> = eligible.iter().copied().filter(|n| self.node_ready(n, now)).collect();
        let pick = if ready.is_empty() {
            eligible.first().copied()
        } else {
            ready.into_iter().min_by_key(|n| (load(n), n.as_str()))
        };
        pick.cloned().unwrap_or_else(|| self.node_name())
    }

    /// The kind node containers of a new cluster (control plane first, each with its port
    /// mappings) and their Node objects; a worker's Node Ready only after it joins.
    pub(super) fn create_nodes(&mut self, name: &str, nodes: &[crate::config::NodeSpec]) {
        let now = SystemTime::now();
        self.containers.retain(|c| c.labels.get(CLUSTER_LABEL).map(String::as_str) != Some(name));
        self.node_ready_at.clear();
        let join = Instant::now() + self.scaled(WORKER_JOIN);
        for (node, role, ports) in nodes {
            self.containers.push(Container {
                id: container_id(node, self.t_ms()),
                name: node.clone(),
                image: "kindest/node:v1.32.2".into(),
                labels: BTreeMap::from([
                    (CLUSTER_LABEL.into(), name.to_string()),
                    (ROLE_LABEL.into(), role.to_string()),
                ]),
                ports: ports.clone(),
                running: true,
                created: now,
                started: now,
                finished: now,
                exit_code: 0,
                stopped_by_user: false,
                cmd: vec![],
            });
            self.container_created_events(node);
            if *role != "control-plane" && !self.bootstrapping {
                self.node_ready_at.insert(node.clone(), join);
            }
        }
    }

    /// The Node objects, as the kubelets post them: Ready once joined; the provider ID kind's
    /// kubelet is started with (`kind://docker/<cluster>/<node>`).
    pub(super) fn write_nodes(&mut self, now: Instant) {
        let cluster = self.cluster_name();
        for (i, node) in self.nodes().into_iter().enumerate() {
            let role = self
                .node_container(&node)
                .and_then(|c| c.labels.get(ROLE_LABEL).cloned())
                .unwrap_or_default();
            let ready = self.node_ready(&node, now);
            let (status, reason, message) = if ready {
                ("True", "KubeletReady", "kubelet is posting ready status")
            } else {
                (
                    "False",
                    "KubeletNotReady",
                    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
                )
            };
            let mut labels = json!({"kubernetes.io/hostname": node, "kubernetes.io/os": "linux"});
            let mut taints = json!([]);
            // A shared cluster's node is a worker of the team's (a k3s machine here).
            let provider = match self.shared() {
                true => format!("k3s://{node}"),
                false => format!("kind://{}/{cluster}/{node}", self.opts.node_provider),
            };
            if self.shared() {
                labels["node-role.kubernetes.io/worker"] = json!("");
            }
            if role == "control-plane" {
                labels["node-role.kubernetes.io/control-plane"] = json!("");
                if self.nodes().len() > 1 {
                    // kind keeps the control plane's taint unless it is the only node.
                    taints = json!([{"key":"node-role.kubernetes.io/control-plane","effect":"NoSchedule"}]);
                }
            }
            let key = Key::new(Res::Nodes, "", &node);
            // The kernel's boot ID (cAdvisor's read): kept while the node runs; a new Node's is new.
            let boot = match self.store.get(&key).map(|o| str_at(o, "/status/nodeInfo/bootID")) {
                Some(b) if !b.is_empty() => b.to_string(),
                _ => self.next_boot_id(&node),
            };
            // The Ready condition's transition: kept while it holds; a new Node's is its start.
            let transition = match self.store.get(&key).and_then(|o| o.pointer("/status/conditions/0")) {
                Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
                Some(_) => json!(rfc3339(SystemTime::now())),
                None => json!(rfc3339(self.node_started(&node).unwrap_or(SystemTime::now()))),
            };
            let obj = json!({"metadata":{"name": node, "labels": labels},
                   "spec":{"podCIDR": format!("10.244.{i}.0/24"), "providerID": provider, "taints": taints},
                   "status":{"conditions":[{"type":"Ready","status": status,"reason": reason,"message": message,
                                            "lastTransitionTime": transition}],
                             "addresses":[{"type":"InternalIP","address": format!("172.18.0.{}", i + 2)},{"type":"Hostname","address": node}],
                             "nodeInfo":{"kubeletVersion":"v1.32.2","containerRuntimeVersion":"containerd://2.0.2",
                                         "bootID": boot,"machineID": container_id(&node, 0)[..32].to_string()}}});
            if self.store.get(&key).map(|o| (o.get("spec"), o.get("status")))
                != Some((obj.get("spec"), obj.get("status")))
            {
                self.store.put(Res::Nodes, obj);
            }
        }
    }

    /// The node (re)booted (`boot`: the new kernel's boot ID; `None`: the same) and its Node turned
    /// Ready at `ready_since` (its `lastTransitionTime`), as its kubelet writes it.
    pub(super) fn node_booted(&mut self, node: &str, boot: Option<&str>, ready_since: SystemTime) {
        self.write_nodes(Instant::now());
        let key = Key::new(Res::Nodes, "", node);
        let Some(mut obj) = self.store.get(&key).cloned() else { return };
        if let Some(boot) = boot {
            obj["status"]["nodeInfo"]["bootID"] = json!(boot);
        }
        obj["status"]["conditions"][0]["lastTransitionTime"] = json!(rfc3339(ready_since));
        self.store.put(Res::Nodes, obj);
    }

    /// The node's address (`status.hostIP` of its pods).
    pub fn host_ip(&self, node: &str) -> String {
        let i = self.nodes().iter().position(|n| n == node).unwrap_or(0);
        format!("172.18.0.{}", i + 2)
    }
}
