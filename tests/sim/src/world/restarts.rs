//! Docker restarts: the daemon stopping and starting (every node with it), one node container
//! stopped or restarted alone (`docker restart <worker>`), and a node's pods restarted in place
//! when it starts again (same pods, restartCount+1, their mesh registration stale): only the pods
//! on the nodes that restarted.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

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

    /// Docker comes back: containers with a restart policy start; every pod restarts in place
    /// with its HBONE registration stale; Kafka without a volume starts empty.
    pub fn docker_start(&mut self) {
        self.docker_up = true;
        let wall = SystemTime::now();
        for c in &mut self.containers {
            c.running = true;
            c.started = wall;
        }
        self.record(Source::Control, "docker-start", "", "");
        self.daemon_started_events();
        self.restart_pods_in_place(None);
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
            if p.ambient {
                p.registered = false;
            }
            p.log.push((SystemTime::now(), format!("starting {} (node restart)", wl.2)));
            started.insert(wl);
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
