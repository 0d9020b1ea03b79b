//! Docker restarts: the daemon stopping and starting (every node with it), one node container
//! stopped or restarted alone (`docker restart <worker>`), and a node's pods restarted in place
//! when it starts again (same pods, restartCount+1, new sandboxes: the mesh's restart timeline
//! on that node, `capture.rs`): only the pods on the nodes that restarted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use super::{PodPhase, WlKey, World};
use crate::audit::Source;

impl World {
    /// Docker daemon (and so the kind node) stops: pods freeze, listeners close.
    pub fn docker_stop(&mut self) {
        self.daemon_stopping_events();
        self.docker_up = false;
        for c in &mut self.containers {
            c.running = false;
        }
        self.record(Source::Control, "docker-stop", "", "");
    }

    /// Docker comes back: the containers its restart policy restarts start (`restart_policy.rs`;
    /// the node unless it halted cleanly); if the node is among them every pod restarts in place
    /// in a new sandbox (what the mesh adopts again is `capture.rs`'s), and Kafka without a
    /// volume starts empty.
    pub fn docker_start(&mut self) {
        self.docker_up = true;
        let wall = SystemTime::now();
        let mut restarted = Vec::new();
        for (i, c) in self.containers.iter_mut().enumerate() {
            if !c.running && crate::restart_policy::restarts_with_daemon(c) {
                c.running = true;
                c.started = wall;
                restarted.push(i);
            }
        }
        self.record(Source::Control, "docker-start", "", "");
        self.daemon_started_events(&restarted);
        if self.node_running() {
            let nodes = self.nodes();
            let started: Vec<String> = restarted
                .iter()
                .map(|i| self.containers[*i].name.clone())
                .filter(|n| nodes.contains(n))
                .collect();
            if started.len() == nodes.len() {
                self.restart_pods_in_place(None);
            } else {
                for n in started {
                    self.restart_pods_in_place(Some(&n));
                }
            }
        } else if self.cluster.is_some() {
            let node = self.node_name();
            self.event("node-left-exited", &node, "");
        }
    }

    /// A host time on Docker's clock (`SimOptions::docker_clock_offset_ms`).
    pub fn docker_time(&self, t: SystemTime) -> SystemTime {
        let offset = self.opts.docker_clock_offset_ms;
        let shift = Duration::from_millis(offset.unsigned_abs());
        if offset < 0 { t.checked_sub(shift).unwrap_or(t) } else { t + shift }
    }

    /// Now on Docker's clock, nanoseconds since the epoch (an event's `timeNano`).
    pub fn docker_nanos(&self) -> u128 {
        crate::docker_events::offset_nanos(
            crate::docker_events::now_nanos(),
            self.opts.docker_clock_offset_ms,
        )
    }

    pub fn docker_restart(&mut self) {
        self.record(Source::Control, "docker-restart", "", "");
        self.docker_stop();
        self.docker_start();
    }

    /// A node container stopped (`docker stop`, its kubelet gone): its pods stop serving and
    /// stay as they are until it starts again.
    pub fn node_stopped(&mut self, node: &str) {
        let keys: Vec<(String, String)> =
            self.pods.iter().filter(|(_, p)| p.node == node).map(|(k, _)| k.clone()).collect();
        for k in &keys {
            if let Some(p) = self.pods.get_mut(k) {
                p.phase = PodPhase::Starting { due: None };
                p.ready_since = None;
            }
            self.write_pod(k);
        }
        self.event("node-stopped", node, "");
    }

    /// A shared cluster's node reboots (issue 19; no Docker in the picture): what its kubelet
    /// leaves in the API, as kubernetes `pkg/kubelet` writes it. The Node's
    /// `status.nodeInfo.bootID` is the new kernel's (cAdvisor reads `boot_id`); the kubelet's
    /// `BirthCry` records Normal `Starting` "Starting kubelet.", its first status update Warning
    /// `Rebooted` "Node N has been rebooted, boot id: B" (`nodestatus/setters.go` `MachineInfo`),
    /// and the `Ready` condition moves to True again (NotReady while it was down:
    /// `lastTransitionTime` now, with its `NodeReady` event); every pod restarts in place
    /// (`restartCount`+1, a new `startedAt`, a new sandbox: `SandboxChanged`), and the mesh on
    /// the node starts again as after a Docker restart. The API server stays up (the control
    /// plane is elsewhere).
    pub fn node_reboot(&mut self) {
        let node = self.node_name();
        self.record(Source::Control, "node-reboot", &node, "");
        let boot = self.next_boot_id(&node);
        self.node_booted(&node, Some(&boot), SystemTime::now());
        self.put_node_event("Normal", "Starting", "Starting kubelet.".into());
        self.put_node_event("Warning", "Rebooted", format!("Node {node} has been rebooted, boot id: {boot}"));
        self.put_node_event("Normal", "NodeReady", format!("Node {node} status is now: NodeReady"));
        let pods: Vec<(String, String)> = self.pods.keys().cloned().collect();
        for (ns, name) in &pods {
            self.put_event(crate::troubles::EventSpec {
                ns,
                pod: name,
                container: None,
                typ: "Normal",
                reason: "SandboxChanged",
                message: "Pod sandbox changed, it will be killed and re-created.".into(),
                component: "kubelet",
                count: None,
            });
        }
        self.restart_pods_in_place(Some(&node));
    }

    /// The events on Nodes expire (kube-apiserver `--event-ttl`, 1 h by default): what a cluster
    /// shows an hour after a reboot, its bootID and Ready transition alone.
    pub fn expire_node_events(&mut self) {
        let keys: Vec<crate::store::Key> = self
            .store
            .keys(crate::store::Res::Events)
            .into_iter()
            .filter(|k| {
                self.store.get(k).is_some_and(|e| crate::store::str_at(e, "/involvedObject/kind") == "Node")
            })
            .collect();
        for k in &keys {
            self.store.delete(k);
        }
        self.record(Source::Control, "node-events-expired", "", &keys.len().to_string());
    }

    /// One event of the kubelet on its Node (namespace `default`, as the kubelet records them).
    fn put_node_event(&mut self, typ: &str, reason: &str, message: String) {
        let node = self.node_name();
        let now = crate::timefmt::rfc3339(SystemTime::now());
        let name = format!("{node}.{:016x}", self.t_ms() ^ crate::troubles::fnv(reason));
        self.store.put(
            crate::store::Res::Events,
            serde_json::json!({"metadata":{"name": name,"namespace":"default"},
                   "involvedObject":{"kind":"Node","name": node,"uid": node,"apiVersion":"v1"},
                   "reason": reason,"message": message,"source":{"component":"kubelet","host": node},
                   "firstTimestamp": now,"lastTimestamp": now,"count": 1,"type": typ,"eventTime": null,
                   "reportingComponent":"kubelet","reportingInstance": node}),
        );
    }

    /// A node container started again (`node`; every node: `None`): the kubelet restarts its
    /// pods in place, and the mesh has lost every one of them.
    pub fn restart_pods_in_place(&mut self, node: Option<&str>) {
        if self.cluster.is_none() {
            return;
        }
        let now = Instant::now();
        let keys: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| node.is_none_or(|n| p.node == n))
            .map(|(k, _)| k.clone())
            .collect();
        let mut started: BTreeSet<WlKey> = BTreeSet::new();
        for k in &keys {
            let Some(p) = self.pods.get(k) else { continue };
            let lat = self.workloads.get(&p.wl).map(|w| w.latency).unwrap_or(3.0);
            let wl = p.wl.clone();
            let d = self.start_due(&wl, now + self.scaled(lat));
            let p = self.pods.get_mut(k).expect("listed");
            p.phase = PodPhase::Starting { due: d };
            p.restart_count += 1;
            p.started_wall = SystemTime::now();
            p.ready_since = None;
            p.log.push((SystemTime::now(), format!("starting {} (node restart)", wl.2)));
            started.insert(wl);
        }
        // On each node that started, every sandbox, istio-cni's agent and ztunnel start again
        // (`capture.rs`); a container starts in its sandbox.
        let restarted: Vec<String> = match node {
            Some(n) => vec![n.to_string()],
            None => self.nodes(),
        };
        let mut sandboxes: Vec<((String, String), Instant)> = Vec::new();
        for n in &restarted {
            self.mesh_node_started(n, now);
            if let Some(m) = self.mesh.get(n) {
                sandboxes.extend(m.timeline.iter().filter_map(|(t, s)| match s {
                    crate::capture::Step::Sandbox(ns, p) => Some(((ns.clone(), p.clone()), *t)),
                    _ => None,
                }));
            }
        }
        let bump = self.scaled(0.1);
        for (k, t) in sandboxes {
            if let Some(p) = self.pods.get_mut(&k)
                && let PodPhase::Starting { due: Some(d) } = p.phase
                && d <= t
            {
                p.phase = PodPhase::Starting { due: Some(t + bump) };
            }
        }
        for k in &keys {
            self.write_pod(k);
        }
        for wl in started {
            self.container_started(&wl);
        }
        match node {
            None => self.event("docker-restart", "", ""),
            Some(n) => self.event("node-restart", n, ""),
        }
    }
}
