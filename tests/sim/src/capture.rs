//! Istio ambient's capture of pods, per node, as istio-cni and ztunnel do it (istio/istio
//! 1.26-1.29 `cni/pkg/nodeagent/`, `cni/pkg/plugin/plugin.go`; istio/ztunnel
//! `src/inpod/statemanager.rs`, `src/inpod/admin.rs`; kind's kindnetd `cmd/kindnetd/cni.go`;
//! `shared/reference/ambient-readoption.md`). A pod is in the mesh (`PodState::registered`) when
//! its current sandbox's network namespace has istio-cni's in-pod rules AND ztunnel runs a proxy
//! in it; nothing else decides it.
//!
//! The paths into the mesh:
//! - the CNI ADD of a new sandbox: with istio-cni in the node's CNI chain, the agent running and
//!   the API answering the plugin, the agent writes the rules in the new netns and hands it to
//!   ztunnel (`adding pod to the mesh`, `sending pod add to ztunnel`; ztunnel `pod received,
//!   starting proxy`); with no ztunnel connected it is `pending` and handed over on its connection;
//! - the agent's start-up scan: every enrolled pod whose netns it finds goes into its cache, and
//!   with `reconcileIptablesOnStartup` its rules are rewritten there (`inpod reconcile mode
//!   enabled`; a pod without a netns: `failed to reconcile inpod rules for pod … can't find netns`);
//! - ztunnel's (re)connection: the agent sends its cached snapshot (`sending pod to ztunnel as
//!   part of snapshot`, or `sending 'keep'` for a pod with no netns), ztunnel starts a proxy per
//!   netns and drains the rest (`received snapshot sent`). It rescans nothing: restarting ztunnel
//!   repairs no pod.
//!
//! The ways out, after a node restart (every sandbox, the agent and ztunnel start again):
//! kindnetd rewrites its CNI config list on start and drops istio-cni from the chain until the
//! agent's installer re-adds it, so a sandbox made after the agent's scan and before that is
//! never seen; and the plugin's fail-open path (the pod lookup fails while the API does not
//! answer: `istio-cni cmdAdd failed to check if pod is ambient`) lets a sandbox through
//! uncaptured. Its annotation `ambient.istio.io/redirection: enabled` stays: it proves nothing.
//!
//! [`MeshReturn`] sets a restart's timeline: the guide's world (every meshed sandbox in kindnet's
//! window: nothing adopted), or one where the mesh re-adopts every pod but a few drawn with a seed.

use crate::draw::Draw;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::store::Res;
use crate::timefmt::rfc3339_micros;
use crate::world::{PodState, WlKey, World};

/// How the mesh comes back after a node restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MeshReturn {
    /// The guide's world: the agent's scan runs before any meshed pod has a sandbox, and every
    /// meshed sandbox comes up in kindnet's window, before the installer has re-added istio-cni:
    /// no pod is adopted (the scan finds none of them; ztunnel is sent `keep` for each).
    #[default]
    Guide,
    /// The mesh re-adopts every meshed pod (most by the scan, some by their CNI ADD) but
    /// `outside` of them, drawn with `seed` among the pods of `among` (workload names; empty: any
    /// meshed Deployment): each of those has its sandbox in kindnet's window or through the
    /// plugin's fail-open path (drawn too).
    Readopted { seed: u64, outside: usize, among: Vec<String> },
}

/// One thing that happens on a node, at its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// kindnetd's first reconcile after its start rewrites its conflist: istio-cni is dropped.
    KindnetRewrite,
    /// istio-cni's agent starts: its procfs scan, the reconcile, its ztunnel server listening.
    AgentStart,
    /// istio-cni's installer writes its kubeconfig and puts istio-cni back in the chain.
    Install,
    /// The kube API answers the plugin's pod lookups again.
    ApiAnswers,
    /// ztunnel connects to the agent and takes its snapshot.
    ZtunnelConnect,
    /// A pod (namespace, name) gets its new sandbox.
    Sandbox(String, String),
}

/// The agent's cache: pod UID → the netns it holds for it (`None`: none found; ztunnel is sent
/// `keep`).
#[derive(Clone, Debug, Default)]
pub struct Agent {
    pub reconcile: bool,
    pub cache: BTreeMap<String, Option<u64>>,
}

/// The mesh on one node.
#[derive(Clone, Debug, Default)]
pub struct NodeMesh {
    /// istio-cni is in the node's CNI config list (`/etc/cni/net.d`).
    pub chained: bool,
    /// The API answers the plugin's lookups.
    pub api: bool,
    pub agent: Option<Agent>,
    /// ztunnel connected to the agent: pod UID → the netns of its proxy (every one `Up`).
    pub ztunnel: Option<BTreeMap<String, u64>>,
    /// The ztunnel pod whose connection that is (`None`: the healthy world's, from before): a
    /// surge's new pod connects while the old one still runs, and the old one's deletion then
    /// takes nothing (the agent serves every connected ztunnel).
    pub ztunnel_pod: Option<String>,
    /// What happens next, in order of time.
    pub timeline: Vec<(Instant, Step)>,
    /// Connections the agent has accepted (its `conn_uuid`s).
    pub conns: u64,
}

impl NodeMesh {
    /// A node whose mesh runs: istio-cni chained, the agent up, ztunnel connected.
    pub fn running(reconcile: bool) -> NodeMesh {
        NodeMesh {
            chained: true,
            api: true,
            agent: Some(Agent { reconcile, cache: BTreeMap::new() }),
            ztunnel: Some(BTreeMap::new()),
            ztunnel_pod: None,
            timeline: Vec::new(),
            conns: 1,
        }
    }
}

/// Seconds after a node's start (time scale 1) of each step of a restart's timeline.
mod at {
    /// kindnetd rewrites its conflist as it starts.
    pub const KINDNET: f64 = 0.0;
    /// The guide's world: the agent scans before any meshed sandbox exists; they come up while
    /// istio-cni is out of the chain; istio-cni-node is Ready (installed) at its latency, 2 s.
    pub const GUIDE_AGENT: f64 = 0.2;
    pub const GUIDE_SANDBOX: f64 = 0.5;
    pub const INSTALL: f64 = 2.0;
    pub const API: f64 = 2.2;
    /// The re-adopted world: most sandboxes come up before the scan (the snapshot path);
    /// a few after the installer (the ADD path); the outside ones in the window or fail-open.
    pub const EARLY_SANDBOX: f64 = 0.5;
    pub const READOPT_AGENT: f64 = 1.4;
    pub const WINDOW_SANDBOX: f64 = 1.7;
    pub const FAIL_OPEN_SANDBOX: f64 = 2.1;
    pub const LATE_SANDBOX: f64 = 2.4;
    /// ztunnel connects a moment after the agent listens.
    pub const ZTUNNEL_AFTER_AGENT: f64 = 0.1;
    /// Sandboxes of pods outside the mesh (istio-system, kube-system).
    pub const OTHER_SANDBOX: f64 = 0.1;
}

/// ztunnel's `pod received, starting proxy` fields.
fn zt_fields(p: &PodState) -> String {
    format!("uid=\"{}\" name=\"{}\" namespace=\"{}\"", p.uid, p.name, p.ns)
}

/// istio-cni's labels for a pod handed to ztunnel.
fn cni_fields(p: &PodState) -> String {
    format!("uid={} name={} namespace={} serviceAccount=default", p.uid, p.name, p.ns)
}

impl World {
    fn daemon_pod(&self, node: &str, daemonset: &str) -> Option<(String, String)> {
        let ns = &self.infra.stack.mesh.namespace;
        self.pods
            .values()
            .filter(|p| p.wl.0 == Res::DaemonSets && &p.wl.1 == ns && p.wl.2 == daemonset && p.node == node)
            .max_by_key(|p| p.created_wall)
            .map(|p| (p.ns.clone(), p.name.clone()))
    }

    /// A line in a pod's log, at `at` (nothing while the healthy world is being built: its
    /// history is written afterwards, with its own times).
    fn log_to(&mut self, pod: Option<(String, String)>, at: SystemTime, line: String) {
        if self.bootstrapping {
            return;
        }
        if let Some(k) = pod
            && let Some(p) = self.pods.get_mut(&k)
        {
            p.log.push((at, line));
            if p.log.len() > 5000 {
                p.log.drain(..1000);
            }
        }
    }

    /// istio-cni's log on `node`, in Istio's text format: time, level, scope, message, labels.
    pub fn cni_log(&mut self, node: &str, level: &str, scope: &str, msg: &str, labels: &str) {
        let at = SystemTime::now();
        let tab = if labels.is_empty() { String::new() } else { format!("\t{labels}") };
        let line = format!("{}\t{level}\t{scope}\t{msg}{tab}", rfc3339_micros(at));
        let pod = self.daemon_pod(node, crate::world::CNI_DAEMONSET);
        self.log_to(pod, at, line);
    }

    /// ztunnel's log on `node`, in its format: time, level, target, message, fields (a tab
    /// after the message whenever it has fields, the message one included).
    pub fn ztunnel_says(&mut self, node: &str, msg: &str, fields: &str) {
        let at = SystemTime::now();
        let line = format!("{}\tinfo\tinpod::statemanager\t{msg}\t{fields}", rfc3339_micros(at));
        let ds = self.infra.stack.mesh.daemonset.clone();
        let pod = self.daemon_pod(node, &ds);
        self.log_to(pod, at, line);
    }

    fn node_mesh(&mut self, node: &str) -> &mut NodeMesh {
        self.mesh.entry(node.to_string()).or_default()
    }

    fn new_netns(&mut self) -> u64 {
        self.next_netns += 1;
        4_026_531_840 + self.next_netns
    }

    /// Whether istio-cni enrolls this pod: an ambient namespace's pod of a workload.
    fn enrollable(p: &PodState) -> bool {
        p.ambient
    }

    /// The node's pods (keys).
    fn pods_on(&self, node: &str) -> Vec<(String, String)> {
        self.pods.iter().filter(|(_, p)| p.node == node).map(|(k, _)| k.clone()).collect()
    }

    /// Each pod's `registered` from the capture state: rules and a ztunnel proxy in its current
    /// netns (and no fault that took its registration).
    pub fn recompute_capture(&mut self, node: &str) {
        let proxies = self.mesh.get(node).and_then(|m| m.ztunnel.clone()).unwrap_or_default();
        let blocked = self.faults.hbone_blocked.clone();
        for k in self.pods_on(node) {
            let Some(p) = self.pods.get_mut(&k) else { continue };
            let captured = p.netns.is_some()
                && p.rules == p.netns
                && proxies.get(&p.uid).copied() == p.netns
                && !p.lost
                && !blocked.contains(&p.wl.2);
            p.registered = p.ambient && captured;
        }
    }

    /// A node (re)started: every sandbox, the agent and ztunnel start again on the timeline of
    /// `SimOptions::mesh_return`; kindnetd drops istio-cni from the chain at once.
    pub fn mesh_node_started(&mut self, node: &str, now: Instant) {
        let scale = self.scale;
        let after = |secs: f64| now + Duration::from_secs_f64(secs * scale);
        let mesh_ns = self.infra.stack.mesh.namespace.clone();
        let wall = SystemTime::now();
        // What the restart left: no sandbox, no rules, no agent, no ztunnel.
        for k in self.pods_on(node) {
            if let Some(p) = self.pods.get_mut(&k) {
                p.netns = None;
                p.rules = None;
                p.sandbox_wall = wall;
                p.pending_add = false;
                if p.ns == mesh_ns {
                    // A new container: `kubectl logs` shows its log, not the last one's.
                    p.log.clear();
                }
            }
        }
        let mut meshed: Vec<(String, String, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| p.node == node && Self::enrollable(p) && p.wl.0 == Res::Deployments)
            .map(|((ns, n), p)| (p.wl.2.clone(), ns.clone(), n.clone()))
            .collect();
        meshed.sort();
        let mut timeline: Vec<(Instant, Step)> = vec![(after(at::KINDNET), Step::KindnetRewrite)];
        let others: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(k, p)| p.node == node && !meshed.iter().any(|(_, ns, n)| ns == &k.0 && n == &k.1))
            .map(|(k, _)| k.clone())
            .collect();
        for (ns, n) in others {
            timeline.push((after(at::OTHER_SANDBOX), Step::Sandbox(ns, n)));
        }
        let sandbox = |(_, ns, n): &(String, String, String)| Step::Sandbox(ns.clone(), n.clone());
        match self.opts.mesh_return.clone() {
            MeshReturn::Guide => {
                timeline.push((after(at::GUIDE_AGENT), Step::AgentStart));
                timeline.push((after(at::GUIDE_AGENT + at::ZTUNNEL_AFTER_AGENT), Step::ZtunnelConnect));
                for (i, m) in meshed.iter().enumerate() {
                    timeline.push((after(at::GUIDE_SANDBOX + 0.05 * i as f64), sandbox(m)));
                }
            }
            MeshReturn::Readopted { seed, outside, among } => {
                let mut draw = Draw(seed);
                let eligible: Vec<usize> =
                    (0..meshed.len()).filter(|i| among.is_empty() || among.contains(&meshed[*i].0)).collect();
                let out: Vec<usize> =
                    draw.pick(outside, eligible.len()).into_iter().map(|j| eligible[j]).collect();
                // A few of the others come up after the installer: their CNI ADD (only pods slow
                // enough to start that a late sandbox does not delay them).
                let late_ok: Vec<usize> = (0..meshed.len())
                    .filter(|i| !out.contains(i) && crate::latency::latency_secs(&meshed[*i].0) >= 5.0)
                    .collect();
                let late: Vec<usize> = draw.pick(3, late_ok.len()).into_iter().map(|j| late_ok[j]).collect();
                timeline.push((after(at::READOPT_AGENT), Step::AgentStart));
                timeline.push((after(at::READOPT_AGENT + at::ZTUNNEL_AFTER_AGENT), Step::ZtunnelConnect));
                for (i, m) in meshed.iter().enumerate() {
                    let secs = if out.contains(&i) {
                        if draw.u64().is_multiple_of(2) { at::WINDOW_SANDBOX } else { at::FAIL_OPEN_SANDBOX }
                    } else if late.contains(&i) {
                        at::LATE_SANDBOX
                    } else {
                        at::EARLY_SANDBOX + 0.7 * i as f64 / meshed.len().max(1) as f64
                    };
                    timeline.push((after(secs), sandbox(m)));
                }
                let names: Vec<String> = out.iter().map(|i| meshed[*i].2.clone()).collect();
                self.event("mesh-outside", node, &names.join(" "));
            }
        }
        timeline.push((after(at::INSTALL), Step::Install));
        timeline.push((after(at::API), Step::ApiAnswers));
        timeline.sort_by_key(|(t, _)| *t);
        let m = self.node_mesh(node);
        m.agent = None;
        m.ztunnel = None;
        m.api = false;
        m.timeline = timeline;
        self.recompute_capture(node);
    }

    /// Move each node's mesh on to `now`: the steps due, in order. When the next one is due.
    pub fn advance_mesh(&mut self, now: Instant) -> Option<Instant> {
        let nodes: Vec<String> = self.mesh.keys().cloned().collect();
        let mut next: Option<Instant> = None;
        for node in nodes {
            while let Some(m) = self.mesh.get_mut(&node) {
                match m.timeline.first() {
                    Some((t, _)) if *t <= now => {
                        let (_, step) = m.timeline.remove(0);
                        self.mesh_step(&node, step, now);
                    }
                    Some((t, _)) => {
                        next = Some(next.map_or(*t, |n: Instant| n.min(*t)));
                        break;
                    }
                    None => break,
                }
            }
        }
        next
    }

    /// Schedule a step on `node` after `secs` (time scale 1).
    pub fn mesh_schedule(&mut self, node: &str, secs: f64, step: Step) {
        let t = Instant::now() + Duration::from_secs_f64(secs * self.scale);
        let m = self.node_mesh(node);
        m.timeline.push((t, step));
        m.timeline.sort_by_key(|(t, _)| *t);
    }

    fn mesh_step(&mut self, node: &str, step: Step, now: Instant) {
        match step {
            Step::KindnetRewrite => {
                self.node_mesh(node).chained = false;
                self.event("kindnet-rewrite", node, "istio-cni dropped from the CNI chain");
            }
            Step::Install => {
                self.node_mesh(node).chained = true;
                self.event("istio-cni-installed", node, "");
            }
            Step::ApiAnswers => self.node_mesh(node).api = true,
            Step::AgentStart => self.agent_start(node),
            Step::ZtunnelConnect => self.ztunnel_connect(node),
            Step::Sandbox(ns, name) => self.sandbox_up(node, &(ns, name), now),
        }
        self.recompute_capture(node);
        let keys = self.pods_on(node);
        for k in keys {
            self.write_pod(&k);
        }
    }

    /// istio-cni's agent starts: its scan finds each enrolled pod's current netns (procfs), and
    /// in reconcile mode rewrites its in-pod rules there.
    fn agent_start(&mut self, node: &str) {
        let reconcile = self.reconcile;
        let enrolled: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| p.node == node && p.enrolled == Some("enabled"))
            .map(|(k, _)| k.clone())
            .collect();
        let mut cache = BTreeMap::new();
        if reconcile {
            self.cni_log(node, "info", "cni-agent", "inpod reconcile mode enabled", "");
        }
        for k in enrolled {
            let Some(p) = self.pods.get_mut(&k) else { continue };
            cache.insert(p.uid.clone(), p.netns);
            match p.netns {
                Some(netns) if reconcile => p.rules = Some(netns),
                Some(_) => {}
                None if reconcile => {
                    let labels = format!("ns={} name={}", k.0, k.1);
                    self.cni_log(node, "error", "cni-agent", crate::troubles::CNI_RECONCILE, &labels);
                }
                None => {}
            }
        }
        self.cni_log(node, "info", "cni-agent", "CNI ambient server marking ready", "");
        let m = self.node_mesh(node);
        m.agent = Some(Agent { reconcile, cache });
        self.event("istio-cni-agent-started", node, "");
    }

    /// ztunnel connects: the agent sends its cached snapshot; ztunnel starts a proxy in each
    /// netns and drains what the snapshot does not name. With no agent yet, it retries.
    fn ztunnel_connect(&mut self, node: &str) {
        let ds = self.infra.stack.mesh.daemonset.clone();
        let Some((_, zt_pod)) = self.daemon_pod(node, &ds) else {
            return;
        };
        let Some(cache) = self.mesh.get(node).and_then(|m| m.agent.as_ref()).map(|a| a.cache.clone()) else {
            // `failed to connect to the Istio CNI node agent …, retrying` (10 ms doubling).
            self.mesh_schedule(node, 0.1, Step::ZtunnelConnect);
            return;
        };
        let m = self.node_mesh(node);
        m.conns += 1;
        // A surge's new pod connects while the old one is still connected.
        let total =
            if m.ztunnel.is_some() && m.ztunnel_pod.as_ref().is_some_and(|z| *z != zt_pod) { 2 } else { 1 };
        self.cni_log(
            node,
            "info",
            "cni-agent",
            &format!("new ztunnel connected, total connected: {total}"),
            "",
        );
        self.cni_log(node, "info", "cni-agent", "received hello from ztunnel", "version=V1");
        let by_uid: BTreeMap<String, (String, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| p.node == node)
            .map(|(k, p)| (p.uid.clone(), k.clone()))
            .collect();
        let mut proxies = BTreeMap::new();
        for (uid, netns) in cache {
            let Some(k) = by_uid.get(&uid).cloned() else { continue };
            let Some(p) = self.pods.get(&k).cloned() else { continue };
            match netns {
                Some(n) => {
                    self.cni_log(
                        node,
                        "info",
                        "cni-agent",
                        "sending pod to ztunnel as part of snapshot",
                        &cni_fields(&p),
                    );
                    self.ztunnel_says(node, "pod received, starting proxy", &zt_fields(&p));
                    proxies.insert(uid, n);
                }
                None => {
                    self.cni_log(
                        node,
                        "info",
                        "cni-agent",
                        "netns is not available for pod, sending 'keep' to ztunnel",
                        &format!("uid={uid}"),
                    );
                    self.ztunnel_says(
                        node,
                        "pod keep received. will not delete it when snapshot is sent",
                        &format!("uid=\"{uid}\""),
                    );
                }
            }
        }
        self.ztunnel_says(node, "received snapshot sent", "");
        let m = self.node_mesh(node);
        m.ztunnel = Some(proxies);
        m.ztunnel_pod = Some(zt_pod);
        // Pods the agent left pending (no ztunnel at their ADD): the informer retries them.
        let pending: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| p.node == node && p.pending_add)
            .map(|(k, _)| k.clone())
            .collect();
        for k in pending {
            self.hand_to_ztunnel(node, &k);
        }
        self.event("ztunnel-connected", node, "");
    }

    /// The agent hands a pod's netns to ztunnel (a CNI ADD, or the informer's retry of a pending
    /// one): ztunnel starts its proxy; without ztunnel the pod is left `pending`.
    fn hand_to_ztunnel(&mut self, node: &str, k: &(String, String)) {
        let Some(p) = self.pods.get(k).cloned() else { return };
        let Some(netns) = p.netns else { return };
        let conns = self.mesh.get(node).map(|m| m.conns).unwrap_or(0);
        if self.mesh.get(node).is_some_and(|m| m.ztunnel.is_some()) {
            let labels = format!("{} conn_uuid={:08x}-0000-4000-8000-{:012x}", cni_fields(&p), conns, conns);
            self.cni_log(node, "info", "cni-agent", "sending pod add to ztunnel", &labels);
            self.ztunnel_says(node, "pod received, starting proxy", &zt_fields(&p));
            if let Some(z) = self.node_mesh(node).ztunnel.as_mut() {
                z.insert(p.uid.clone(), netns);
            }
            if let Some(p) = self.pods.get_mut(k) {
                p.pending_add = false;
                p.enrolled = Some("enabled");
            }
        } else {
            let labels = format!("ns={} name={}", k.0, k.1);
            self.cni_log(
                node,
                "error",
                "cni-agent",
                "failed to add pod to ztunnel: pod partially added, annotating with pending status",
                &labels,
            );
            self.cni_log(
                node,
                "error",
                "cni-agent",
                "failed to handle add event: no ztunnel connection",
                &labels,
            );
            if let Some(p) = self.pods.get_mut(k) {
                p.pending_add = true;
                p.enrolled = Some("pending");
            }
        }
    }

    /// A pod gets a new sandbox: kindnet's plugin gives it its netns, then istio-cni's plugin if
    /// it is in the chain.
    fn sandbox_up(&mut self, node: &str, k: &(String, String), _now: Instant) {
        let netns = self.new_netns();
        let Some(p) = self.pods.get_mut(k) else { return };
        p.netns = Some(netns);
        p.rules = None;
        p.sandbox_wall = SystemTime::now();
        let (ambient, containers) = (Self::enrollable(p), vec![p.wl.2.clone()]);
        if !ambient {
            return;
        }
        let m = self.mesh.get(node).cloned().unwrap_or_default();
        if !m.chained {
            // kindnet's window: no istio-cni in the chain, nothing logged anywhere.
            self.event("sandbox-uncaptured", &format!("{}/{}", k.0, k.1), "kindnet");
            return;
        }
        let pod = format!("pod={}/{}", k.0, k.1);
        if !m.api {
            // The plugin's fail-open path (`enableAmbientDetectionRetry` off, the chart default).
            self.cni_log(
                node,
                "error",
                "cni-plugin",
                "istio-cni cmdAdd failed to check if pod is ambient: Get \"https://10.96.0.1:443/api/v1/namespaces/\
                 default/pods\": dial tcp 10.96.0.1:443: connect: connection refused",
                &pod,
            );
            let msg = format!(
                "excluded because it does not have istio-proxy container (have [{}])",
                containers.join(" ")
            );
            self.cni_log(node, "info", "cni-plugin", &msg, &pod);
            self.event("sandbox-uncaptured", &format!("{}/{}", k.0, k.1), "fail-open");
            return;
        }
        if m.agent.is_none() {
            // The plugin cannot reach the agent: the sandbox fails, the kubelet makes another.
            self.mesh_schedule(
                node,
                crate::latency::delays::POD_WORKER_BACKOFF,
                Step::Sandbox(k.0.clone(), k.1.clone()),
            );
            if let Some(p) = self.pods.get_mut(k) {
                p.netns = None;
            }
            return;
        }
        let labels = format!("ns={} name={}", k.0, k.1);
        self.cni_log(node, "info", "cni-agent", "adding pod to the mesh", &labels);
        let uid = self.pods.get(k).map(|p| p.uid.clone()).unwrap_or_default();
        if let Some(p) = self.pods.get_mut(k) {
            p.rules = Some(netns);
        }
        if let Some(a) = self.node_mesh(node).agent.as_mut() {
            a.cache.insert(uid, Some(netns));
        }
        self.hand_to_ztunnel(node, k);
    }

    /// A new pod: its first sandbox at once (its CNI ADD); a new istio-cni or ztunnel pod starts
    /// its agent or connects.
    pub fn mesh_pod_created(&mut self, k: &(String, String)) {
        let Some(p) = self.pods.get(k) else { return };
        let (node, wl) = (p.node.clone(), p.wl.clone());
        if self.bootstrapping {
            // The healthy world is built with its mesh running (`NodeMesh::running`).
        } else if self.is_daemon(&wl, crate::world::CNI_DAEMONSET) {
            self.mesh_schedule(&node, at::GUIDE_AGENT, Step::AgentStart);
            self.mesh_schedule(&node, at::INSTALL - 0.1, Step::Install);
            self.mesh_schedule(&node, at::GUIDE_AGENT, Step::ApiAnswers);
            self.mesh_schedule(&node, at::GUIDE_AGENT + at::ZTUNNEL_AFTER_AGENT, Step::ZtunnelConnect);
        } else if self.is_ztunnel(&wl) {
            self.mesh_schedule(&node, 0.3, Step::ZtunnelConnect);
        }
        self.sandbox_up(&node, k, Instant::now());
        self.recompute_capture(&node);
    }

    fn is_daemon(&self, wl: &WlKey, name: &str) -> bool {
        wl.0 == Res::DaemonSets && wl.1 == self.infra.stack.mesh.namespace && wl.2 == name
    }

    /// A pod is gone: the agent forgets it and ztunnel drains its proxy; istio-cni's or
    /// ztunnel's pod gone takes the agent or the connection with it.
    pub fn mesh_pod_deleted(&mut self, p: &PodState) {
        let node = p.node.clone();
        if self.is_daemon(&p.wl, crate::world::CNI_DAEMONSET) {
            let m = self.node_mesh(&node);
            m.agent = None;
        } else if self.is_ztunnel(&p.wl) {
            let m = self.node_mesh(&node);
            if m.ztunnel_pod.as_ref().is_none_or(|z| *z == p.name) {
                m.ztunnel = None;
                m.ztunnel_pod = None;
                self.cni_log(&node, "info", "cni-agent", "ztunnel disconnected, total connected 0", "");
            } else {
                self.cni_log(&node, "info", "cni-agent", "ztunnel disconnected, total connected 1", "");
            }
        } else if p.ambient {
            if let Some(a) = self.node_mesh(&node).agent.as_mut() {
                a.cache.remove(&p.uid);
            }
            let had = self.node_mesh(&node).ztunnel.as_mut().and_then(|z| z.remove(&p.uid)).is_some();
            if had {
                self.cni_log(
                    &node,
                    "info",
                    "cni-agent",
                    "removing pod from mesh",
                    &format!("ns={} name={}", p.ns, p.name),
                );
                self.ztunnel_says(
                    &node,
                    "pod delete request, shutting down proxy",
                    &format!("uid=\"{}\"", p.uid),
                );
            }
        }
        self.recompute_capture(&node);
    }

    /// The healthy world's history, written once it has been aged: istio-cni's agent started and
    /// ztunnel connected when their pods were created, each meshed pod added by its CNI ADD when
    /// it was created.
    pub fn mesh_history(&mut self) {
        for node in self.nodes() {
            self.mesh_history_on(&node);
        }
    }

    /// The mesh's history on one node: its istio-cni and ztunnel pods' logs.
    fn mesh_history_on(&mut self, node: &str) {
        let mesh_ns = self.infra.stack.mesh.namespace.clone();
        let ds = self.infra.stack.mesh.daemonset.clone();
        let cni = self.daemon_pod(node, crate::world::CNI_DAEMONSET);
        let zt = self.daemon_pod(node, &ds);
        let created = |w: &World, k: &Option<(String, String)>| {
            k.as_ref().and_then(|k| w.pods.get(k)).map(|p| p.created_wall).unwrap_or_else(SystemTime::now)
        };
        let (cni_at, zt_at) = (created(self, &cni), created(self, &zt));
        type Line = (Option<(String, String)>, SystemTime, String);
        let mut lines: Vec<Line> = Vec::new();
        let agent = |at: SystemTime, level: &str, msg: &str, labels: &str| {
            let tab = if labels.is_empty() { String::new() } else { format!("\t{labels}") };
            (cni.clone(), at, format!("{}\t{level}\tcni-agent\t{msg}{tab}", rfc3339_micros(at)))
        };
        let zline = |at: SystemTime, msg: &str, fields: &str| {
            (zt.clone(), at, format!("{}\tinfo\tinpod::statemanager\t{msg}\t{fields}", rfc3339_micros(at)))
        };
        if self.reconcile {
            lines.push(agent(cni_at, "info", "inpod reconcile mode enabled", ""));
        }
        lines.push(agent(cni_at, "info", "CNI ambient server marking ready", ""));
        let connected = zt_at.max(cni_at) + Duration::from_millis(300);
        lines.push(agent(connected, "info", "new ztunnel connected, total connected: 1", ""));
        lines.push(zline(connected, "received snapshot sent", ""));
        let meshed: Vec<PodState> = self
            .pods
            .values()
            .filter(|p| p.node == node && p.ambient && p.ns != mesh_ns && p.registered)
            .cloned()
            .collect();
        for p in meshed {
            let at = p.created_wall + Duration::from_millis(100);
            lines.push(agent(at, "info", "adding pod to the mesh", &format!("ns={} name={}", p.ns, p.name)));
            let labels = format!("{} conn_uuid=00000001-0000-4000-8000-000000000001", cni_fields(&p));
            lines.push(agent(at, "info", "sending pod add to ztunnel", &labels));
            lines.push(zline(at, "pod received, starting proxy", &zt_fields(&p)));
        }
        lines.sort_by_key(|(_, at, _)| *at);
        for (pod, at, line) in lines {
            if let Some(k) = pod
                && let Some(p) = self.pods.get_mut(&k)
            {
                p.log.push((at, line));
            }
        }
    }

    /// ztunnel's `workloadState` on `node`: pod UID → (name, namespace, state).
    pub fn workload_state(&self, node: &str) -> BTreeMap<String, (String, String, &'static str)> {
        let proxies = self.mesh.get(node).and_then(|m| m.ztunnel.clone()).unwrap_or_default();
        self.pods
            .values()
            .filter(|p| proxies.contains_key(&p.uid))
            .map(|p| (p.uid.clone(), (p.name.clone(), p.ns.clone(), "Up")))
            .collect()
    }

    /// ztunnel listens on 15008 in this pod's current netns (a proxy there).
    pub fn listening(&self, p: &PodState) -> bool {
        p.netns.is_some()
            && self.mesh.get(&p.node).and_then(|m| m.ztunnel.as_ref()).and_then(|z| z.get(&p.uid)).copied()
                == p.netns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_is_deterministic_and_distinct() {
        let a = Draw(22).pick(3, 16);
        assert_eq!(a, Draw(22).pick(3, 16));
        assert_eq!(a.len(), 3);
        assert!(a.iter().all(|i| *i < 16));
        assert_ne!(a[0], a[1]);
        assert_eq!(Draw(1).pick(5, 2).len(), 2);
    }
}
