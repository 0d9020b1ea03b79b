//! Istio ambient: which namespaces are in the mesh, ztunnel's log, and who reaches whom. Which
//! pods are in the mesh is `capture.rs`'s: istio-cni's capture state machine.

use std::time::SystemTime;

use super::{AMBIENT_LABEL, PodState, WlKey, World};
use crate::store::{Key, Res};

impl World {
    pub(super) fn ns_ambient(&self, ns: &str) -> bool {
        self.store
            .get(&Key::new(Res::Namespaces, "", ns))
            .and_then(|o| o.pointer("/metadata/labels"))
            .and_then(|l| l.get(AMBIENT_LABEL))
            .is_some_and(|v| v == "ambient")
    }

    pub fn is_ztunnel(&self, wl: &WlKey) -> bool {
        wl.0 == Res::DaemonSets
            && wl.1 == self.infra.stack.mesh.namespace
            && wl.2 == self.infra.stack.mesh.daemonset
    }

    /// The ztunnel pod whose log a line on `node` goes to (the newest there, Ready first).
    pub(super) fn ztunnel_pod_name(&self, node: &str) -> Option<(String, String)> {
        self.pods
            .values()
            .filter(|p| self.is_ztunnel(&p.wl) && (p.node == node || node.is_empty()))
            .max_by_key(|p| (p.is_ready(), p.created_wall))
            .map(|p| (p.ns.clone(), p.name.clone()))
    }

    /// Append a line to the log of the ztunnel pod on `node`.
    pub fn ztunnel_log(&mut self, node: &str, line: String) {
        if let Some(k) = self.ztunnel_pod_name(node).or_else(|| self.ztunnel_pod_name(""))
            && let Some(p) = self.pods.get_mut(&k)
        {
            p.log.push((SystemTime::now(), line));
            if p.log.len() > 5000 {
                p.log.drain(..1000);
            }
        }
    }

    /// A failed HBONE connection to a stale pod: ztunnel's log line.
    /// Refused when nothing listens on 15008 in its current netns (no ztunnel proxy there: a pod
    /// outside the mesh, or one that lost its listeners); a timeout when something drops the
    /// connection (a fault's lost registration, a NetworkPolicy).
    pub fn log_hbone_failure(&mut self, from: &str, to: &PodState) {
        let lost_listeners = self.faults.listeners_lost.contains(&(to.ns.clone(), to.name.clone()));
        let error = if lost_listeners || !self.listening(to) {
            "io error: Connection refused (os error 111)"
        } else {
            "connection failed: deadline has elapsed"
        };
        let line = format!(
            "{}\terror\taccess\tconnection complete\tsrc.addr=10.244.0.1:{} src.workload=\"{}\" dst.addr={}:15008 dst.hbone_addr={}:80 dst.workload=\"{}\" direction=\"outbound\" bytes_sent=0 bytes_recv=0 duration=\"10001ms\" error=\"{}\"",
            crate::timefmt::rfc3339_micros(SystemTime::now()),
            40000 + (self.audit.len() % 20000),
            from,
            to.ip,
            to.ip,
            to.name,
            error
        );
        // Logged by the ztunnel of the node the connection left from (the source's pod there).
        let node = self
            .pods
            .values()
            .find(|p| p.wl.2 == from && p.is_ready())
            .map(|p| p.node.clone())
            .unwrap_or_else(|| to.node.clone());
        self.ztunnel_log(&node, line);
    }

    /// A Ready pod of `workload` that `from` can reach, if any.
    pub fn reachable_pod(&self, from: &PodState, workload: &str) -> Option<&PodState> {
        self.pods
            .values()
            .find(|q| q.wl.0 == Res::Deployments && q.wl.2 == workload && q.is_ready() && reachable(from, q))
    }

    /// A Ready pod of a Deployment, registered ones first.
    pub fn ready_pod(&self, workload: &str) -> Option<&PodState> {
        self.pods
            .values()
            .filter(|q| q.wl.0 == Res::Deployments && q.wl.2 == workload && q.is_ready())
            .max_by_key(|q| q.mesh_ok())
    }

    /// The best pod of a workload for traffic.
    pub fn backend(&self, workload: &str) -> Backend {
        let mut stale: Option<PodState> = None;
        for p in self.pods.values() {
            if p.wl.0 != Res::Deployments || p.wl.2 != workload || !p.is_ready() {
                continue;
            }
            if p.mesh_ok() {
                return Backend::Healthy(p.clone());
            }
            stale = Some(p.clone());
        }
        match stale {
            Some(p) => Backend::Stale(p),
            None => Backend::NotReady,
        }
    }
}

/// Pod-to-pod traffic in ambient mode. A registered pod's ztunnel sends HBONE to port 15008 of
/// the destination, which fails when the destination's registration is stale. A stale (or
/// non-mesh) source sends plaintext, which reaches the destination either way.
pub fn reachable(from: &PodState, to: &PodState) -> bool {
    let from_hbone = from.ambient && from.registered;
    to.mesh_ok() || !from_hbone
}

pub enum Backend {
    Healthy(PodState),
    Stale(PodState),
    NotReady,
}
