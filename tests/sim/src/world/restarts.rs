//! Docker restarts: the daemon stopping and starting, and the node's pods restarted in place
//! (same pods, restartCount+1, new sandboxes: the mesh's restart timeline, `capture.rs`).

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
            self.restart_pods_in_place();
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

    /// The node container restarted: every container restarts, the mesh loses every pod.
    pub fn restart_pods_in_place(&mut self) {
        if self.cluster.is_none() {
            return;
        }
        let now = Instant::now();
        let keys: Vec<(String, String)> = self.pods.keys().cloned().collect();
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
        // Every sandbox, istio-cni's agent and ztunnel start again (`capture.rs`); a container
        // starts in its sandbox.
        let node = self.node_name();
        self.mesh_node_started(&node, now);
        let sandboxes: Vec<((String, String), Instant)> = self
            .mesh
            .get(&node)
            .map(|m| {
                m.timeline
                    .iter()
                    .filter_map(|(t, s)| match s {
                        crate::capture::Step::Sandbox(ns, n) => Some(((ns.clone(), n.clone()), *t)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
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
        self.event("docker-restart", "", "");
    }
}
