//! World state: the kind cluster (object store, workloads, pods), Docker containers, the mesh,
//! Kafka Connect's stored connectors, faults and the audit log. One `Mutex<World>` guards it all;
//! nothing awaits while holding it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::audit::{AuditEntry, Source};
use crate::config::Infra;
use crate::faults::Fault;
use crate::latency::{delays, latency_secs};
use crate::sim::SimOptions;
use crate::store::{Key, Res, Store, i64_at, str_at};
use crate::timefmt::rfc3339;

/// `(resource, namespace, name)` of a Deployment or DaemonSet.
pub type WlKey = (Res, String, String);

pub const AMBIENT_LABEL: &str = "istio.io/dataplane-mode";

/// istio-cni's node agent DaemonSet (istioctl's ambient profile).
pub const CNI_DAEMONSET: &str = "istio-cni-node";

/// What `istioctl install --set profile=ambient` (1.26) deploys: (workload, image).
pub const ISTIO_IMAGES: [(&str, &str); 3] = [
    ("istiod", "docker.io/istio/pilot:1.26.0"),
    ("istio-cni-node", "docker.io/istio/install-cni:1.26.0"),
    ("ztunnel", "docker.io/istio/ztunnel:1.26.0"),
];

/// The image of the Deployment Istio creates for a Gateway (`<name>-istio`).
pub const GATEWAY_IMAGE: &str = "docker.io/istio/proxyv2:1.26.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Container running, not Ready yet; `due` is when it becomes Ready (or exits).
    /// `None`: readiness never passes (fault).
    Starting {
        due: Option<Instant>,
    },
    Ready,
    /// Exited; kubelet waits until `until` before starting it again.
    Backoff {
        until: Instant,
    },
}

#[derive(Debug, Clone)]
pub struct PodState {
    pub ns: String,
    pub name: String,
    pub wl: WlKey,
    pub template_gen: i64,
    pub hash: String,
    pub ip: String,
    /// The node it runs on.
    pub node: String,
    /// `metadata.uid` (the store's, read back after its first write).
    pub uid: String,
    pub ambient: bool,
    /// In the mesh: istio-cni's rules and a ztunnel proxy in its current netns (`capture.rs`
    /// decides it), and no fault took it.
    pub registered: bool,
    /// Its current sandbox's network namespace (`None`: no sandbox, e.g. right after a node
    /// restart), and the netns holding istio-cni's in-pod rules.
    pub netns: Option<u64>,
    pub rules: Option<u64>,
    /// When its sandbox condition (`PodReadyToStartContainers`) last changed.
    pub sandbox_wall: SystemTime,
    /// Its `ambient.istio.io/redirection` annotation: written by istio-cni on its first capture
    /// (`enabled`, or `pending` while ztunnel is not connected); a node restart leaves it.
    pub enrolled: Option<&'static str>,
    /// istio-cni left it `pending` (no ztunnel at its ADD): handed over when ztunnel connects.
    pub pending_add: bool,
    /// A fault took its registration (`stale_workload`, `cni_reconcile_failed`).
    pub lost: bool,
    pub phase: PodPhase,
    pub restart_count: u32,
    pub backoff: f64,
    pub created_wall: SystemTime,
    pub started_wall: SystemTime,
    /// When it last became Ready (`None` for the pods of the initial healthy stack: long ago).
    pub ready_since: Option<Instant>,
    pub ready_wall: Option<SystemTime>,
    pub last_exit_wall: Option<SystemTime>,
    pub log: Vec<(SystemTime, String)>,
    /// The image cannot be pulled (fault): the container never starts.
    pub image_pull_error: bool,
    /// Images (qualified names) the pod waits for: the kubelet is pulling them (`ContainerCreating`).
    pub pulling: BTreeSet<String>,
}

impl PodState {
    pub fn is_ready(&self) -> bool {
        self.phase == PodPhase::Ready
    }
    /// Traffic through the mesh works for this pod.
    pub fn mesh_ok(&self) -> bool {
        !self.ambient || self.registered
    }
    /// Plaintext from outside the mesh reaches it: no istio-cni rules in its current netns to
    /// redirect it to a ztunnel that is not there, and no fault in the way.
    pub fn plaintext_ok(&self) -> bool {
        self.mesh_ok() || (self.netns.is_some() && self.rules != self.netns && !self.lost)
    }
}

#[derive(Debug, Clone)]
pub struct WlState {
    pub template: Value,
    pub template_gen: i64,
    pub latency: f64,
    pub needs: Vec<String>,
    pub pending_since: Option<Instant>,
    pub progress_start: Instant,
    pub completed_gen: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// (containerPort, hostPort)
    pub ports: Vec<(u16, u16)>,
    pub running: bool,
    #[serde(skip)]
    pub created: SystemTime,
    #[serde(skip)]
    pub started: SystemTime,
    pub cmd: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ClusterState {
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct StoredConnector {
    pub config: BTreeMap<String, String>,
    pub created: Instant,
}

#[derive(Debug, Default)]
pub struct FaultState {
    pub api_errors: Option<(u16, u32, bool)>,
    pub never: BTreeSet<String>,
    pub crash: BTreeSet<String>,
    pub c409: Option<(String, u32)>,
    pub c500: u32,
    pub c502: u32,
    pub c_reset: u32,
    pub c_status404: u32,
    pub task_failed: BTreeSet<String>,
    /// Workload → the trouble its pods created after `since` have (`troubles.rs`).
    pub troubled: BTreeMap<String, crate::troubles::Troubled>,
    /// Troubled pods (ns, name), as the kubelet keeps retrying them; and those whose trouble
    /// is over (they started).
    pub pod_troubles: BTreeMap<(String, String), crate::troubles::PodTrouble>,
    pub untroubled: BTreeSet<(String, String)>,
    /// `ZtunnelDisconnects`.
    pub disconnect: Option<crate::troubles::Disconnect>,
    /// Pods (ns, name) whose in-pod listeners are gone: ztunnel's HBONE to them is refused.
    pub listeners_lost: BTreeSet<(String, String)>,
    /// Workloads no pod of which is ever reachable over HBONE (`Fault::HboneBlocked`).
    pub hbone_blocked: BTreeSet<String>,
}

/// Which listener a port belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortId {
    Kube,
    Docker,
    /// A kind node host port, by containerPort.
    Host(u16),
}

pub struct World {
    pub opts: SimOptions,
    pub infra: Infra,
    pub dir: PathBuf,
    pub start: Instant,
    pub scale: f64,
    pub store: Store,
    pub cluster: Option<ClusterState>,
    pub docker_up: bool,
    pub api_refusing: bool,
    pub containers: Vec<Container>,
    pub workloads: BTreeMap<WlKey, WlState>,
    pub pods: BTreeMap<(String, String), PodState>,
    /// The mesh on each node (`capture.rs`): istio-cni in the chain, its agent, ztunnel's
    /// proxies, what happens next.
    pub mesh: BTreeMap<String, crate::capture::NodeMesh>,
    pub next_netns: u64,
    /// istio-cni's `reconcileIptablesOnStartup` (the stack's `istioctl install` sets it).
    pub reconcile: bool,
    pub connectors: BTreeMap<String, StoredConnector>,
    pub faults: FaultState,
    pub audit: Vec<AuditEntry>,
    pub next_ip: u32,
    pub next_name: u64,
    /// containerPort → the host port this simulator owns for it.
    pub host_ports: BTreeMap<u16, u16>,
    pub kube_port: u16,
    pub control_port: u16,
    /// DB workload → (user, password): what the databases really accept.
    pub db_creds: BTreeMap<String, (String, String)>,
    /// Controllers act without delays (building the initial healthy stack).
    pub bootstrapping: bool,
    /// The Docker daemon's event ring (`GET /events`).
    pub docker_events: crate::docker_events::EventLog,
    /// Images in the node's containerd (qualified names: `docker.io/…`): preloaded in the node
    /// image, pulled by the kubelet or `kind load`ed; they stay until the cluster is deleted.
    pub node_images: BTreeSet<String>,
    /// Images in the host's Docker image store (qualified names): `SimOptions::images` and what
    /// `docker pull` fetched.
    pub host_images: BTreeSet<String>,
    /// The download link and the kubelet's puller (`images.rs`).
    pub link: crate::images::Link,
}

/// What the runtime shares: the world, a wake-up for the controller loop, port switches.
pub struct Shared {
    pub world: Mutex<World>,
    pub wake: Notify,
    pub ports: BTreeMap<PortId, watch::Sender<crate::server::PortState>>,
    pub rv: watch::Receiver<u64>,
    pub rt: tokio::runtime::Handle,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, World> {
        match self.world.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Switch every listener on or off to match the world.
    pub fn refresh_ports(&self) {
        let wanted: Vec<(PortId, bool)> = {
            let w = self.lock();
            self.ports.keys().map(|p| (*p, w.port_wanted(*p))).collect()
        };
        for (p, on) in wanted {
            if let Some(tx) = self.ports.get(&p) {
                tx.send_if_modified(|v| {
                    let changed = v.on != on;
                    v.on = on;
                    changed
                });
            }
        }
    }

    /// Drop every open connection of a listener (down, then up again if wanted).
    pub fn bounce(&self, p: PortId) {
        if let Some(tx) = self.ports.get(&p) {
            tx.send_modify(|v| v.epoch += 1);
        }
        self.refresh_ports();
    }
}

fn rand_suffix(n: u64, len: usize) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5bd1_e995;
    let mut s = String::new();
    for _ in 0..len {
        s.push(ALPHA[(x % ALPHA.len() as u64) as usize] as char);
        x /= ALPHA.len() as u64;
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    }
    s
}

fn template_hash(name: &str, gen_: i64) -> String {
    let mut h: u64 = 1_469_598_103_934_665_603;
    for b in name.bytes().chain(gen_.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(1_099_511_628_211);
    }
    rand_suffix(h, 10)
}

impl World {
    pub fn new(
        opts: SimOptions,
        infra: Infra,
        dir: PathBuf,
        host_ports: BTreeMap<u16, u16>,
        kube_port: u16,
        control_port: u16,
    ) -> World {
        let store = Store::new();
        let mut db_creds = BTreeMap::new();
        for (spec, file) in &infra.connectors {
            let host = file.config.get("database.hostname").cloned().unwrap_or_default();
            let db = host.split('.').next().unwrap_or("").to_string();
            let user = opts.secret.get(&spec.user_key).cloned().unwrap_or_default();
            let pass = opts.secret.get(&spec.password_key).cloned().unwrap_or_default();
            db_creds.insert(db, (user, pass));
        }
        let host_images = opts.images.iter().map(|i| crate::troubles::qualified_image(i)).collect();
        let link = crate::images::Link::new(opts.bandwidth_mb_s);
        World {
            scale: opts.time_scale,
            opts,
            infra,
            dir,
            start: Instant::now(),
            store,
            cluster: None,
            docker_up: true,
            api_refusing: false,
            containers: Vec::new(),
            workloads: BTreeMap::new(),
            pods: BTreeMap::new(),
            mesh: BTreeMap::new(),
            next_netns: 0,
            reconcile: true,
            connectors: BTreeMap::new(),
            faults: FaultState::default(),
            audit: Vec::new(),
            next_ip: 10,
            next_name: 1,
            host_ports,
            kube_port,
            control_port,
            db_creds,
            bootstrapping: false,
            docker_events: Default::default(),
            node_images: BTreeSet::new(),
            host_images,
            link,
        }
    }

    pub fn t_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn scaled(&self, secs: f64) -> Duration {
        Duration::from_secs_f64((secs * self.scale).max(0.0))
    }

    pub fn record(&mut self, source: Source, verb: &str, path: &str, detail: &str) {
        let t_ms = self.t_ms();
        self.audit.push(AuditEntry {
            t_ms,
            source,
            verb: verb.to_string(),
            path: path.to_string(),
            content_type: None,
            body: String::new(),
            status: 0,
            detail: detail.to_string(),
        });
    }

    pub fn event(&mut self, verb: &str, subject: &str, detail: &str) {
        self.record(Source::Controller, verb, subject, detail);
    }

    pub fn cluster_name(&self) -> String {
        match &self.cluster {
            Some(c) => c.name.clone(),
            None => self.infra.cluster.name(),
        }
    }

    pub fn node_name(&self) -> String {
        format!("{}-control-plane", self.cluster_name())
    }

    /// The host's Docker has this image (`postgres:16`, `bookstore/x:dev`, qualified or not).
    pub fn host_has(&self, image: &str) -> bool {
        self.host_images.contains(&crate::troubles::qualified_image(image))
    }

    /// Move the downloads on to `now`: finished ones land in their store, pods waiting for an
    /// image start, the kubelet's puller takes its next request. When the next one finishes.
    pub fn advance_downloads(&mut self, now: Instant) -> Option<Instant> {
        for t in self.link.advance(now, self.scale) {
            match t.store {
                crate::images::Store::Host => {
                    self.event("image-pulled", &t.image, "host");
                    self.host_images.insert(t.image);
                }
                crate::images::Store::Node => {
                    self.event("image-pulled", &t.image, "node");
                    self.image_arrived(&t.image, now);
                }
            }
        }
        self.link.pump();
        self.link.next_done(self.scale)
    }

    /// An image is in the node (pulled or loaded): the pods waiting for it start.
    pub fn image_arrived(&mut self, image: &str, now: Instant) {
        self.node_images.insert(image.to_string());
        let waiting: Vec<(String, String)> =
            self.pods.iter().filter(|(_, p)| p.pulling.contains(image)).map(|(k, _)| k.clone()).collect();
        for k in waiting {
            let Some(p) = self.pods.get_mut(&k) else { continue };
            p.pulling.remove(image);
            if p.pulling.is_empty() {
                let wl = p.wl.clone();
                let lat = self.workloads.get(&wl).map(|w| w.latency).unwrap_or(3.0);
                let d = self.start_due(&wl, now + self.scaled(lat));
                let p = self.pods.get_mut(&k).expect("listed");
                p.phase = PodPhase::Starting { due: d };
                p.started_wall = SystemTime::now();
                self.container_started(&wl);
            }
            self.write_pod(&k);
        }
    }

    /// Every image of a pod template (containers and init containers), qualified.
    fn template_images(template: &Value) -> BTreeSet<String> {
        ["initContainers", "containers"]
            .iter()
            .filter_map(|k| template.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
            .flatten()
            .filter_map(|c| c.get("image").and_then(Value::as_str))
            .map(crate::troubles::qualified_image)
            .collect()
    }

    /// Is this listener supposed to accept connections now?
    pub fn port_wanted(&self, p: PortId) -> bool {
        match p {
            PortId::Docker => self.docker_up,
            PortId::Kube => self.docker_up && self.node_running() && !self.api_refusing,
            PortId::Host(cp) => {
                let Some(hp) = self.host_ports.get(&cp) else {
                    return false;
                };
                self.docker_up
                    && self.containers.iter().any(|c| {
                        c.running
                            && c.labels.contains_key("io.x-k8s.kind.cluster")
                            && c.ports.contains(&(cp, *hp))
                    })
            }
        }
    }

    pub fn node_running(&self) -> bool {
        self.cluster.is_some() && self.containers.iter().any(|c| c.name == self.node_name() && c.running)
    }

    fn alloc_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        format!("10.244.{}.{}", n / 250, n % 250 + 2)
    }

    fn alloc_name(&mut self) -> u64 {
        self.next_name += 1;
        self.next_name
    }

    fn ns_ambient(&self, ns: &str) -> bool {
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

    fn ztunnel_pod_name(&self) -> Option<(String, String)> {
        let ns = &self.infra.stack.mesh.namespace;
        let ds = &self.infra.stack.mesh.daemonset;
        self.pods
            .values()
            .filter(|p| p.wl.0 == Res::DaemonSets && &p.wl.1 == ns && &p.wl.2 == ds)
            .max_by_key(|p| (p.is_ready(), p.created_wall))
            .map(|p| (p.ns.clone(), p.name.clone()))
    }

    /// Append a line to the current ztunnel pod's log.
    pub fn ztunnel_log(&mut self, line: String) {
        if let Some(k) = self.ztunnel_pod_name()
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
        self.ztunnel_log(line);
    }

    // ---------------------------------------------------------------- bootstrap

    /// Create the kind node container and an empty cluster (what `kind create cluster` leaves).
    pub fn create_cluster(&mut self, name: &str, ports: Vec<(u16, u16)>, puller: crate::images::Puller) {
        let now = SystemTime::now();
        self.containers.retain(|c| c.name != format!("{name}-control-plane"));
        self.containers.push(Container {
            id: container_id(&format!("{name}-control-plane"), self.t_ms()),
            name: format!("{name}-control-plane"),
            image: "kindest/node:v1.32.2".into(),
            labels: BTreeMap::from([
                ("io.x-k8s.kind.cluster".into(), name.to_string()),
                ("io.x-k8s.kind.role".into(), "control-plane".into()),
            ]),
            ports,
            running: true,
            created: now,
            started: now,
            cmd: vec![],
        });
        self.container_created_events(&format!("{name}-control-plane"));
        self.cluster = Some(ClusterState { name: name.to_string() });
        self.node_images.clear();
        self.link.transfers.retain(|t| t.store == crate::images::Store::Host);
        self.link.puller = puller;
        self.clear_cluster_objects();
        self.put_namespace("default", false);
        self.workloads.clear();
        self.pods.clear();
        self.connectors.clear();
        for ns in ["kube-system", "kube-public", "kube-node-lease", "local-path-storage"] {
            self.put_namespace(ns, false);
        }
        let node = self.node_name();
        self.store.put(
            Res::Nodes,
            json!({"metadata":{"name": node, "labels":{"kubernetes.io/hostname": node, "node-role.kubernetes.io/control-plane":""}},
                   "spec":{"podCIDR":"10.244.0.0/24"},
                   "status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}],
                             "nodeInfo":{"kubeletVersion":"v1.32.2","containerRuntimeVersion":"containerd://2.0.2"}}}),
        );
        // The node image preloads what kind itself deploys.
        for (ns, name, image, n) in [
            ("kube-system", "coredns", "registry.k8s.io/coredns/coredns:v1.11.3", 2),
            (
                "local-path-storage",
                "local-path-provisioner",
                "docker.io/kindest/local-path-provisioner:v20241212",
                1,
            ),
        ] {
            self.node_images.insert(crate::troubles::qualified_image(image));
            self.add_deployment(ns, name, image, n);
        }
    }

    /// Delete every object of the cluster (DELETED events for watchers) and forget its state.
    pub fn clear_cluster_objects(&mut self) {
        for res in crate::store::ALL_RES {
            for k in self.store.keys(*res) {
                self.store.delete(&k);
            }
        }
        self.workloads.clear();
        self.pods.clear();
        self.connectors.clear();
    }

    pub fn put_namespace(&mut self, ns: &str, ambient: bool) {
        let mut labels = json!({"kubernetes.io/metadata.name": ns});
        if ambient {
            labels[AMBIENT_LABEL] = json!("ambient");
        }
        self.store.put(
            Res::Namespaces,
            json!({"metadata":{"name": ns, "labels": labels},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}),
        );
    }

    fn workload_object(res: Res, ns: &str, name: &str, image: &str, replicas: i64) -> Value {
        let container = if name == "ztunnel" {
            "istio-proxy"
        } else if name == "istio-cni-node" {
            "install-cni"
        } else {
            name
        };
        let template = json!({"metadata":{"labels":{"app": name}},
            "spec":{"containers":[{"name": container, "image": image, "imagePullPolicy":"IfNotPresent"}],
                    "restartPolicy":"Always","terminationGracePeriodSeconds":30}});
        if res == Res::Deployments {
            json!({"metadata":{"name": name, "namespace": ns, "labels":{"app": name},
                               "annotations":{"deployment.kubernetes.io/revision":"1"}},
                   "spec":{"replicas": replicas, "selector":{"matchLabels":{"app": name}},
                           "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}},
                           "progressDeadlineSeconds":600,"revisionHistoryLimit":10,
                           "template": template},
                   "status":{}})
        } else {
            json!({"metadata":{"name": name, "namespace": ns, "labels":{"app": name}},
                   "spec":{"selector":{"matchLabels":{"app": name}},
                           "updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":0,"maxUnavailable":1}},
                           "revisionHistoryLimit":10,
                           "template": template},
                   "status":{"currentNumberScheduled":0,"desiredNumberScheduled":0,"numberMisscheduled":0,"numberReady":0}})
        }
    }

    pub fn add_deployment(&mut self, ns: &str, name: &str, image: &str, replicas: i64) {
        let obj = Self::workload_object(Res::Deployments, ns, name, image, replicas);
        self.store.put(Res::Deployments, obj);
    }

    pub fn add_daemonset(&mut self, ns: &str, name: &str, image: &str) {
        let obj = Self::workload_object(Res::DaemonSets, ns, name, image, 1);
        self.store.put(Res::DaemonSets, obj);
    }

    /// What `istioctl install --set profile=ambient` creates.
    pub fn install_istio(&mut self) {
        let ns = self.infra.stack.mesh.namespace.clone();
        self.put_namespace(&ns, false);
        self.add_deployment(&ns, "istiod", ISTIO_IMAGES[0].1, 1);
        self.add_daemonset(&ns, "istio-cni-node", ISTIO_IMAGES[1].1);
        let zt = self.infra.stack.mesh.daemonset.clone();
        self.add_daemonset(&ns, &zt, ISTIO_IMAGES[2].1);
    }

    /// The healthy BookStore stack after bootstrap, instantly: every pod Ready and registered,
    /// both connectors stored.
    pub fn bootstrap_stack(&mut self) {
        let name = self.cluster_name();
        let mut ports: Vec<(u16, u16)> = self
            .host_ports
            .iter()
            .map(|(c, h)| (*c, *h))
            .filter(|(c, _)| !(self.opts.old_cluster && [32100, 32200, 32300].contains(c)))
            .collect();
        ports.push((6443, self.kube_port));
        let puller = crate::images::Puller::from_patches(&self.infra.cluster.patches());
        self.create_cluster(&name, ports, puller);
        self.install_istio();
        let ns = self.infra.stack.mesh.namespace.clone();
        self.add_deployment(&ns, "kiali", "quay.io/kiali/kiali:v2.10", 1);
        for ns in self.infra.app_namespaces() {
            self.put_namespace(&ns, true);
        }
        let workloads = self.infra.stack.workloads.clone();
        for w in &workloads {
            let image = format!("bookstore/{}:1.0.0", w.name);
            self.add_deployment(&w.namespace, &w.name, &image, 1);
            self.store.put(
                Res::Services,
                json!({"metadata":{"name": w.name, "namespace": w.namespace, "labels":{"app": w.name}},
                       "spec":{"type":"ClusterIP","selector":{"app": w.name},"ports":[{"port": 8080,"protocol":"TCP"}]}}),
            );
            let pvc = w.role.as_deref() == Some("database") || (w.name == "kafka" && self.opts.kafka_pvc);
            if pvc {
                self.store.put(
                    Res::Pvcs,
                    json!({"metadata":{"name": format!("{}-data", w.name), "namespace": w.namespace},
                           "spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"standard","resources":{"requests":{"storage":"1Gi"}}},
                           "status":{"phase":"Bound","capacity":{"storage":"1Gi"}}}),
                );
            }
        }
        self.add_volumes_and_worker_env();
        self.put_secret();
        // A stack that has run holds every image it uses (no recovery waits for a download).
        for res in [Res::Deployments, Res::DaemonSets] {
            let templates: Vec<Value> = self
                .store
                .list(res, None)
                .iter()
                .filter_map(|o| o.pointer("/spec/template").cloned())
                .collect();
            for t in templates {
                self.node_images.extend(Self::template_images(&t));
            }
        }
        // Everything Ready, captured (the mesh running on the node before the pods), rolled out;
        // then aged, and the mesh's history written with those times.
        let now = Instant::now();
        let node = self.node_name();
        self.mesh.insert(node, crate::capture::NodeMesh::running(self.reconcile));
        self.instant_ready(now);
        self.age_bootstrap();
        self.mesh_history();
        for (_, file) in self.infra.connectors.clone() {
            let mut config = file.config.clone();
            let db =
                config.get("database.hostname").and_then(|h| h.split('.').next()).unwrap_or("").to_string();
            if let Some((u, p)) = self.db_creds.get(&db) {
                config.insert("database.user".into(), u.clone());
                config.insert("database.password".into(), p.clone());
            }
            config.insert("name".into(), file.name.clone());
            self.connectors.insert(
                file.name.clone(),
                StoredConnector { config, created: now - Duration::from_millis(0) },
            );
        }
        // Age the stored connectors so no 404/409 window applies.
        for c in self.connectors.values_mut() {
            c.created = self.start.checked_sub(Duration::from_secs(3600)).unwrap_or(c.created);
        }
        if self.opts.legacy_proxies {
            for (i, proxy) in self.infra.stack.legacy_proxies.clone().iter().enumerate() {
                let port = [32100u16, 32200, 32300].get(i).copied().unwrap_or(32000);
                let wall = SystemTime::now();
                self.containers.push(Container {
                    id: container_id(proxy, i as u64),
                    name: proxy.clone(),
                    image: "alpine/socat".into(),
                    labels: BTreeMap::new(),
                    ports: vec![],
                    running: true,
                    created: wall,
                    started: wall,
                    cmd: vec![format!("TCP-LISTEN:{port},fork,reuseaddr"), format!("TCP:172.19.0.4:{port}")],
                });
            }
        }
    }

    /// The credentials a database accepts: its own Secret `<db>-credentials` (POSTGRES_USER /
    /// POSTGRES_PASSWORD, what the stack's manifests give Postgres) when the cluster has one,
    /// else the ones the simulator was started with.
    pub fn db_credentials(&self, db: &str) -> Option<(String, String)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let secret = self.store.list(Res::Secrets, None).into_iter().find(|s| {
            s.pointer("/metadata/name").and_then(Value::as_str) == Some(&format!("{db}-credentials"))
        });
        if let Some(s) = secret {
            let key = |k: &str| {
                let text = s.pointer(&format!("/data/{k}")).and_then(Value::as_str)?;
                String::from_utf8(b64.decode(text).ok()?).ok()
            };
            if let (Some(u), Some(p)) = (key("POSTGRES_USER"), key("POSTGRES_PASSWORD")) {
                return Some((u, p));
            }
        }
        self.db_creds.get(db).cloned()
    }

    /// Istio's gateway controller: each Gateway gets a Deployment `<name>-istio`, and is
    /// `Programmed` once that Deployment has rolled out.
    fn reconcile_gateways(&mut self) {
        let gateways: Vec<Value> = self.store.list(Res::Gateways, None).into_iter().cloned().collect();
        for gw in gateways {
            let ns = str_at(&gw, "/metadata/namespace").to_string();
            let name = str_at(&gw, "/metadata/name").to_string();
            let deploy = format!("{name}-istio");
            let key = Key::new(Res::Deployments, &ns, &deploy);
            match self.store.get(&key) {
                None => {
                    let mut obj = Self::workload_object(Res::Deployments, &ns, &deploy, GATEWAY_IMAGE, 1);
                    obj["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] = json!(name);
                    obj["spec"]["template"]["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] =
                        json!(name);
                    self.store.put(Res::Deployments, obj);
                }
                Some(d) => {
                    let programmed =
                        gw.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
                            cs.iter()
                                .any(|c| str_at(c, "/type") == "Programmed" && str_at(c, "/status") == "True")
                        });
                    if rollout_done(d).is_ok()
                        && d.pointer("/status/observedGeneration").is_some()
                        && !programmed
                    {
                        let mut g = gw.clone();
                        g["status"] = json!({"conditions": [
                            {"type":"Accepted","status":"True","reason":"Accepted","message":"Resource accepted"},
                            {"type":"Programmed","status":"True","reason":"Programmed","message":"Resource programmed, assigned to service(s)"}]});
                        self.store.put(Res::Gateways, g);
                    }
                }
            }
        }
    }

    pub fn put_secret(&mut self) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let data: serde_json::Map<String, Value> =
            self.opts.secret.iter().map(|(k, v)| (k.clone(), json!(b64.encode(v.as_bytes())))).collect();
        let s = &self.infra.stack.connect.secret;
        let obj = json!({"metadata":{"name": s.name, "namespace": s.namespace},"type":"Opaque","data": data});
        self.store.put(Res::Secrets, obj);
    }

    /// The healthy stack was bootstrapped an hour ago, and its timestamps say so as a real
    /// bootstrap leaves them: the node container started first (2 h ago), Istio's pods were
    /// created and Ready next, the stack's pods after them. Without this, every timestamp would
    /// be "now" and a Docker restart a second later could not be told from the bootstrap.
    fn age_bootstrap(&mut self) {
        let wall = SystemTime::now();
        let ago = |secs: u64| wall.checked_sub(Duration::from_secs(secs)).unwrap_or(wall);
        let node = self.node_name();
        for c in self.containers.iter_mut().filter(|c| c.name == node) {
            c.created = ago(7200);
            c.started = ago(7200);
        }
        let mesh_ns = self.infra.stack.mesh.namespace.clone();
        let keys: Vec<(String, String)> = self.pods.keys().cloned().collect();
        for k in keys {
            if let Some(p) = self.pods.get_mut(&k) {
                let (created, ready) = if p.ns == mesh_ns { (3600, 3590) } else { (3500, 3400) };
                p.created_wall = ago(created);
                p.started_wall = ago(created);
                p.sandbox_wall = ago(created);
                p.ready_wall = Some(ago(ready));
            }
            self.write_pod(&k);
        }
    }

    /// Bring every workload to a rolled-out, Ready state at once (bootstrap only).
    fn instant_ready(&mut self, now: Instant) {
        self.bootstrapping = true;
        self.reconcile(now);
        let keys: Vec<(String, String)> = self.pods.keys().cloned().collect();
        for k in keys {
            if let Some(p) = self.pods.get_mut(&k) {
                p.phase = PodPhase::Ready;
                p.ready_since = None;
                p.ready_wall = Some(p.created_wall);
            }
            self.write_pod(&k);
        }
        self.reconcile(now);
        self.bootstrapping = false;
        // The bootstrap pods were created before anything else; mark rollouts as complete.
        let keys: Vec<WlKey> = self.workloads.keys().cloned().collect();
        for k in keys {
            let gen_ = self
                .store
                .get(&Key::new(k.0, &k.1, &k.2))
                .map(|o| i64_at(o, "/metadata/generation"))
                .unwrap_or(1);
            if let Some(w) = self.workloads.get_mut(&k) {
                w.completed_gen = gen_;
            }
        }
    }

    // ---------------------------------------------------------------- controllers + kubelet

    /// Advance the world to `now`: controllers observe spec changes, create and delete pods,
    /// the kubelet starts, readies and crash-loops containers, statuses are written.
    /// Returns when something is due next.
    pub fn reconcile(&mut self, now: Instant) -> Option<Instant> {
        let download = self.advance_downloads(now);
        if !self.docker_up || !self.node_running() {
            return download;
        }
        self.reconcile_gateways();
        let mesh = self.advance_mesh(now);
        let mut next: Option<Instant> = match (download, mesh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut due = |t: Instant| {
            next = Some(next.map_or(t, |n: Instant| n.min(t)));
        };
        self.reconnect_ztunnel(now, &mut due);
        // Sync workloads with the store.
        let mut present: BTreeSet<WlKey> = BTreeSet::new();
        for res in [Res::Deployments, Res::DaemonSets] {
            for key in self.store.keys(res) {
                present.insert((res, key.ns.clone(), key.name.clone()));
            }
        }
        self.workloads.retain(|k, _| present.contains(k));
        let gone: Vec<(String, String)> =
            self.pods.iter().filter(|(_, p)| !present.contains(&p.wl)).map(|(k, _)| k.clone()).collect();
        for k in gone {
            self.delete_pod(&k);
        }
        for wl in present {
            self.reconcile_workload(&wl, now, &mut due);
        }
        next
    }

    fn reconcile_workload(&mut self, wl: &WlKey, now: Instant, due: &mut impl FnMut(Instant)) {
        let key = Key::new(wl.0, &wl.1, &wl.2);
        let Some(obj) = self.store.get(&key).cloned() else {
            return;
        };
        let gen_ = i64_at(&obj, "/metadata/generation").max(1);
        let observed = i64_at(&obj, "/status/observedGeneration");
        let template = obj.pointer("/spec/template").cloned().unwrap_or(Value::Null);
        let replicas = if wl.0 == Res::Deployments {
            obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0) as usize
        } else {
            1
        };
        if !self.workloads.contains_key(wl) {
            let needs = self.infra.workload(&wl.2).map(|w| w.needs.clone()).unwrap_or_default();
            self.workloads.insert(
                wl.clone(),
                WlState {
                    template: template.clone(),
                    template_gen: gen_,
                    latency: latency_secs(&wl.2),
                    needs,
                    pending_since: None,
                    progress_start: now,
                    completed_gen: 0,
                },
            );
        }
        // Observe a new generation after the controller's delay.
        if gen_ > observed {
            let since = {
                let st = self.workloads.get_mut(wl).expect("inserted above");
                *st.pending_since.get_or_insert(now)
            };
            let at = if self.bootstrapping { since } else { since + self.scaled(delays::OBSERVE) };
            if now < at {
                due(at);
            } else {
                let st = self.workloads.get_mut(wl).expect("inserted above");
                st.pending_since = None;
                let new_template = st.template != template;
                if new_template {
                    st.template = template.clone();
                    st.template_gen = gen_;
                    st.progress_start = now;
                }
                // First write: the new generation is observed, nothing updated yet. A new
                // template's ReplicaSet resets Progressing in the same update (the deployment
                // controller's getNewReplicaSet), so no earlier verdict is read as this rollout's.
                let mut o = obj.clone();
                o["status"]["observedGeneration"] = json!(gen_);
                if new_template && wl.0 == Res::Deployments {
                    let rs = format!("{}-{}", wl.2, template_hash(&wl.2, gen_));
                    let old = o["status"].get("conditions").cloned().unwrap_or(json!([]));
                    let mut conds: Vec<Value> = old
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|c| c["type"] != "Progressing")
                        .cloned()
                        .collect();
                    conds.push(condition(
                        &old,
                        "Progressing",
                        "True",
                        "NewReplicaSetCreated",
                        &format!("Created new replica set \"{rs}\""),
                    ));
                    o["status"]["conditions"] = Value::Array(conds);
                }
                if wl.0 == Res::Deployments {
                    remove_key(&mut o["status"], "updatedReplicas");
                } else {
                    remove_key(&mut o["status"], "updatedNumberScheduled");
                }
                self.store.put(wl.0, o);
                self.event("rollout-observed", &format!("{}/{}", wl.1, wl.2), &gen_.to_string());
            }
        }
        let (tgen, latency) = {
            let st = &self.workloads[wl];
            (st.template_gen, st.latency)
        };
        // DaemonSet (maxUnavailable 1, no surge): old pods go first.
        if wl.0 == Res::DaemonSets {
            let old: Vec<(String, String)> = self
                .pods
                .iter()
                .filter(|(_, p)| &p.wl == wl && p.template_gen < tgen)
                .map(|(k, _)| k.clone())
                .collect();
            for k in old {
                self.delete_pod(&k);
            }
        }
        // Create missing pods of the current template.
        let current = self.pods.values().filter(|p| &p.wl == wl && p.template_gen == tgen).count();
        for _ in current..replicas {
            self.create_pod(wl, tgen, latency, now);
        }
        // Kubelet: advance each pod of this workload.
        let keys: Vec<(String, String)> =
            self.pods.iter().filter(|(_, p)| &p.wl == wl).map(|(k, _)| k.clone()).collect();
        for k in &keys {
            self.advance_pod(k, now, due);
        }
        // Surge done: once enough new pods are Ready, old pods (and extras) go.
        let new_ready =
            self.pods.values().filter(|p| &p.wl == wl && p.template_gen == tgen && p.is_ready()).count();
        if new_ready >= replicas {
            let mut doomed: Vec<(String, String)> = self
                .pods
                .iter()
                .filter(|(_, p)| &p.wl == wl && p.template_gen < tgen)
                .map(|(k, _)| k.clone())
                .collect();
            let mut current: Vec<&PodState> =
                self.pods.values().filter(|p| &p.wl == wl && p.template_gen == tgen).collect();
            current.sort_by_key(|p| std::cmp::Reverse(p.is_ready()));
            doomed.extend(current.iter().skip(replicas).map(|p| (p.ns.clone(), p.name.clone())));
            for k in doomed {
                self.delete_pod(&k);
            }
        }
        self.write_status(wl, now, due);
    }

    fn create_pod(&mut self, wl: &WlKey, tgen: i64, latency: f64, now: Instant) {
        let n = self.alloc_name();
        let hash = template_hash(&wl.2, tgen);
        let name = if wl.0 == Res::Deployments {
            format!("{}-{}-{}", wl.2, hash, rand_suffix(n, 5))
        } else {
            format!("{}-{}", wl.2, rand_suffix(n, 5))
        };
        let ip = self.alloc_ip();
        let ambient = self.ns_ambient(&wl.1);
        let wall = SystemTime::now();
        let node = self.node_name();
        let due = now + self.scaled(latency);
        let template = self.workloads.get(wl).map(|w| w.template.clone()).unwrap_or(Value::Null);
        let pulling: BTreeSet<String> =
            Self::template_images(&template).into_iter().filter(|i| !self.node_images.contains(i)).collect();
        for image in &pulling {
            self.link.request(image);
        }
        let pod = PodState {
            ns: wl.1.clone(),
            name: name.clone(),
            wl: wl.clone(),
            template_gen: tgen,
            hash,
            ip,
            node,
            uid: String::new(),
            ambient,
            registered: false,
            netns: None,
            rules: None,
            sandbox_wall: wall,
            enrolled: None,
            pending_add: false,
            lost: false,
            phase: PodPhase::Starting {
                due: if pulling.is_empty() { self.start_due(wl, due) } else { None },
            },
            restart_count: 0,
            backoff: 0.0,
            created_wall: wall,
            started_wall: wall,
            ready_since: None,
            ready_wall: None,
            last_exit_wall: None,
            log: vec![(wall, format!("starting {}", wl.2))],
            image_pull_error: self.pulls_fail(&wl.2),
            pulling: pulling.clone(),
        };
        let subject = format!("{}/{}", wl.1, name);
        let key = (wl.1.clone(), name.clone());
        self.pods.insert(key.clone(), pod);
        // Its UID once the store has given it one, then its first sandbox: its CNI ADD.
        self.write_pod(&key);
        let uid = self
            .store
            .get(&Key::new(Res::Pods, &key.0, &key.1))
            .map(|o| str_at(o, "/metadata/uid").to_string());
        if let Some(p) = self.pods.get_mut(&key) {
            p.uid = uid.unwrap_or_default();
        }
        self.mesh_pod_created(&key);
        let registered = self.pods.get(&key).is_some_and(|p| p.registered);
        self.event("pod-started", &subject, if registered { "registered" } else { "" });
        if pulling.is_empty() {
            self.container_started(wl);
        } else {
            self.event("pod-pulling", &subject, &pulling.iter().cloned().collect::<Vec<_>>().join(" "));
        }
        self.link.pump();
        self.write_pod(&(wl.1.clone(), name));
    }

    fn start_due(&self, wl: &WlKey, due: Instant) -> Option<Instant> {
        if self.faults.never.contains(&wl.2) || self.pulls_fail(&wl.2) { None } else { Some(due) }
    }

    /// A container of this workload just started: Kafka without a volume starts empty.
    fn container_started(&mut self, wl: &WlKey) {
        if wl.2 == "kafka" && !self.opts.kafka_pvc && !self.connectors.is_empty() {
            self.connectors.clear();
            self.event("kafka-topics-lost", &format!("{}/{}", wl.1, wl.2), "");
        } else if wl.2 == "kafka" && !self.opts.kafka_pvc {
            self.event("kafka-topics-lost", &format!("{}/{}", wl.1, wl.2), "");
        }
    }

    /// Is every hard dependency of this pod Ready and reachable from it?
    fn deps_ok(&self, pod: &PodState) -> Result<(), String> {
        let needs = self.workloads.get(&pod.wl).map(|w| w.needs.clone()).unwrap_or_default();
        for need in needs {
            if self.reachable_pod(pod, &need).is_none() {
                return Err(need);
            }
        }
        Ok(())
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

    fn advance_pod(&mut self, k: &(String, String), now: Instant, due: &mut impl FnMut(Instant)) {
        let Some(pod) = self.pods.get(k) else { return };
        let subject = format!("{}/{}", k.0, k.1);
        let phase = pod.phase;
        match phase {
            PodPhase::Ready => {}
            PodPhase::Starting { due: None } => self.kubelet_retry(k, now, due),
            PodPhase::Starting { due: Some(t) } if now < t => due(t),
            PodPhase::Starting { due: Some(_) } => {
                let crash = self.faults.crash.contains(&pod.wl.2);
                let deps = if crash { Err("(fault)".to_string()) } else { self.deps_ok(pod) };
                let wl = pod.wl.clone();
                match deps {
                    Ok(()) => {
                        let p = self.pods.get_mut(k).expect("checked");
                        p.phase = PodPhase::Ready;
                        p.ready_since = Some(now);
                        p.ready_wall = Some(SystemTime::now());
                        self.event("pod-ready", &subject, &wl.2);
                    }
                    Err(need) => {
                        // A caller in the mesh reaches its dependency through its ztunnel: the
                        // refusal of a dependency outside the mesh is in ztunnel's log.
                        let caller = self.pods.get(k).cloned().expect("checked");
                        let callee = self.ready_pod(&need).cloned();
                        if let Some(callee) = callee
                            && caller.ambient
                            && caller.registered
                            && !callee.mesh_ok()
                        {
                            self.log_hbone_failure(&caller.name, &callee);
                        }
                        let p = self.pods.get_mut(k).expect("checked");
                        p.restart_count += 1;
                        p.backoff = if p.backoff == 0.0 {
                            delays::BACKOFF_START
                        } else {
                            (p.backoff * 2.0).min(delays::BACKOFF_CAP)
                        };
                        let wait = Duration::from_secs_f64(p.backoff * self.scale);
                        p.phase = PodPhase::Backoff { until: now + wait };
                        p.last_exit_wall = Some(SystemTime::now());
                        p.log.push((
                            SystemTime::now(),
                            format!("FATAL: cannot reach {need}: connection refused; exiting"),
                        ));
                        due(now + wait);
                        self.event("pod-crashed", &subject, &need);
                    }
                }
                self.write_pod(k);
            }
            PodPhase::Backoff { until } if now < until => due(until),
            PodPhase::Backoff { .. } => {
                let wl = pod.wl.clone();
                let lat = self.workloads.get(&wl).map(|w| w.latency).unwrap_or(3.0);
                let d = self.start_due(&wl, now + self.scaled(lat));
                let p = self.pods.get_mut(k).expect("checked");
                p.phase = PodPhase::Starting { due: d };
                p.started_wall = SystemTime::now();
                if let Some(d) = d {
                    due(d);
                }
                self.event("container-restarted", &subject, "");
                self.container_started(&wl);
                self.write_pod(k);
            }
        }
    }

    pub fn delete_pod(&mut self, k: &(String, String)) {
        if let Some(p) = self.pods.remove(k) {
            self.store.delete(&Key::new(Res::Pods, &k.0, &k.1));
            self.event("pod-deleted", &format!("{}/{}", k.0, k.1), "");
            self.mesh_pod_deleted(&p);
        }
    }

    fn write_status(&mut self, wl: &WlKey, now: Instant, due: &mut impl FnMut(Instant)) {
        let key = Key::new(wl.0, &wl.1, &wl.2);
        let Some(obj) = self.store.get(&key) else {
            return;
        };
        let st = &self.workloads[wl];
        let tgen = st.template_gen;
        let pods: Vec<&PodState> = self.pods.values().filter(|p| &p.wl == wl).collect();
        let total = pods.len() as i64;
        let observed = i64_at(obj, "/status/observedGeneration");
        let gen_ = i64_at(obj, "/metadata/generation");
        let updated = if observed >= gen_ {
            pods.iter().filter(|p| p.template_gen == tgen).count() as i64
        } else {
            i64_at(obj, "/status/updatedReplicas").max(i64_at(obj, "/status/updatedNumberScheduled"))
        };
        let disconnected = self.is_ztunnel(wl) && self.ztunnel_disconnected();
        let ready = pods.iter().filter(|p| p.is_ready() && !disconnected).count() as i64;
        let mut status = obj.get("status").cloned().unwrap_or_else(|| json!({}));
        if wl.0 == Res::Deployments {
            let replicas = i64_at(obj, "/spec/replicas");
            set_count(&mut status, "replicas", total);
            set_count(&mut status, "updatedReplicas", updated);
            set_count(&mut status, "readyReplicas", ready);
            set_count(&mut status, "availableReplicas", ready);
            set_count(&mut status, "unavailableReplicas", (replicas - ready).max(0));
            let rolled = observed >= gen_ && updated >= replicas && total <= updated && ready >= updated;
            let deadline = st.progress_start + self.scaled(delays::PROGRESS_DEADLINE);
            let rs = format!("{}-{}", wl.2, template_hash(&wl.2, tgen));
            let old_progressing = status.get("conditions").and_then(Value::as_array).and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "Progressing")
                    .map(|c| (c["reason"].clone(), c["message"].clone()))
            });
            let (pstatus, preason, pmsg) = if rolled {
                (
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet \"{rs}\" has successfully progressed."),
                )
            } else if let Some((_, message)) =
                old_progressing.as_ref().filter(|(reason, _)| reason == "NewReplicaSetAvailable")
            {
                // DeploymentTimedOut: a completed rollout never times out, however long ago it
                // finished (pods unready after a Docker restart change nothing here).
                ("True", "NewReplicaSetAvailable", message.as_str().unwrap_or("").to_string())
            } else if now >= deadline {
                (
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{rs}\" has timed out progressing."),
                )
            } else {
                due(deadline);
                ("True", "ReplicaSetUpdated", format!("ReplicaSet \"{rs}\" is progressing."))
            };
            let (astatus, areason, amsg) = if ready >= replicas {
                ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            } else {
                ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
            };
            let old = status.get("conditions").cloned().unwrap_or(json!([]));
            let conds = vec![
                condition(&old, "Available", astatus, areason, amsg),
                condition(&old, "Progressing", pstatus, preason, &pmsg),
            ];
            status["conditions"] = Value::Array(conds);
        } else {
            let desired = 1;
            status["desiredNumberScheduled"] = json!(desired);
            status["currentNumberScheduled"] = json!(total.min(desired));
            status["numberMisscheduled"] = json!(0);
            status["numberReady"] = json!(ready);
            set_count(&mut status, "updatedNumberScheduled", updated);
            set_count(&mut status, "numberAvailable", ready);
            set_count(&mut status, "numberUnavailable", (desired - ready).max(0));
        }
        if obj.get("status") != Some(&status) {
            let mut o = obj.clone();
            o["status"] = status;
            self.store.put(wl.0, o);
        }
        // Rollout completion, as kubectl's rollout status reads it.
        let Some(obj) = self.store.get(&key) else {
            return;
        };
        let done = rollout_done(obj).is_ok();
        let completed = self.workloads[wl].completed_gen;
        if done && completed < gen_ {
            if let Some(st) = self.workloads.get_mut(wl) {
                st.completed_gen = gen_;
            }
            let kind = wl.0.kind();
            self.event("rollout-complete", &format!("{}/{}", wl.1, wl.2), kind);
        }
    }

    /// Render a pod into the store.
    pub fn write_pod(&mut self, k: &(String, String)) {
        let Some(p) = self.pods.get(k) else { return };
        let wl_obj = self.store.get(&Key::new(p.wl.0, &p.wl.1, &p.wl.2));
        let template = wl_obj.and_then(|o| o.pointer("/spec/template")).cloned().unwrap_or(json!({}));
        let container = template
            .pointer("/spec/containers/0/name")
            .and_then(Value::as_str)
            .unwrap_or(&p.wl.2)
            .to_string();
        let image = template
            .pointer("/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or("busybox")
            .to_string();
        let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({"app": p.wl.2}));
        let ready = p.is_ready() && !(self.is_ztunnel(&p.wl) && self.ztunnel_disconnected());
        if p.wl.0 == Res::Deployments {
            labels["pod-template-hash"] = json!(p.hash);
        } else {
            labels["controller-revision-hash"] = json!(p.hash);
        }
        let owner_kind = if p.wl.0 == Res::Deployments { "ReplicaSet" } else { "DaemonSet" };
        let owner_name =
            if p.wl.0 == Res::Deployments { format!("{}-{}", p.wl.2, p.hash) } else { p.wl.2.clone() };
        let started = rfc3339(p.started_wall);
        let state = match p.phase {
            PodPhase::Backoff { .. } => json!({"waiting":{"reason":"CrashLoopBackOff",
                "message": format!("back-off {}s restarting failed container={} pod={}", p.backoff.round() as u64, container, p.name)}}),
            _ if p.image_pull_error => json!({"waiting":{"reason":"ImagePullBackOff",
                "message": format!("Back-off pulling image \"{image}\"")}}),
            _ if !p.pulling.is_empty() => json!({"waiting":{"reason":"ContainerCreating"}}),
            _ => json!({"running":{"startedAt": started}}),
        };
        let pod_phase = if p.image_pull_error || !p.pulling.is_empty() { "Pending" } else { "Running" };
        let last_state = match p.last_exit_wall {
            Some(t) => {
                json!({"terminated":{"exitCode":1,"reason":"Error","startedAt": started,"finishedAt": rfc3339(t)}})
            }
            None => json!({}),
        };
        let ready_s = if ready { "True" } else { "False" };
        let ready_t = rfc3339(p.ready_wall.unwrap_or(p.started_wall));
        let created = rfc3339(p.created_wall);
        let mut annotations = json!({});
        if let (true, Some(value)) = (p.ambient, p.enrolled) {
            annotations["ambient.istio.io/redirection"] = json!(value);
        }
        let (sandbox_s, sandbox_t) =
            (if p.netns.is_some() { "True" } else { "False" }, rfc3339(p.sandbox_wall));
        let obj = json!({
            "metadata": {"name": p.name, "namespace": p.ns, "labels": labels, "annotations": annotations,
                         "creationTimestamp": created,
                         "ownerReferences":[{"apiVersion":"apps/v1","kind": owner_kind,"name": owner_name,"controller":true,"uid":"00000000-0000-4000-8000-000000000001"}]},
            "spec": {"nodeName": self.node_name(), "containers": template.pointer("/spec/containers").cloned().unwrap_or(json!([{"name": container, "image": image}])),
                     "restartPolicy":"Always"},
            "status": {
                "phase": pod_phase,
                "hostIP": "172.18.0.2", "podIP": p.ip, "podIPs": [{"ip": p.ip}],
                "startTime": created, "qosClass": "BestEffort",
                "conditions": [
                    {"type":"PodReadyToStartContainers","status": sandbox_s,"lastTransitionTime": sandbox_t},
                    {"type":"Initialized","status":"True","lastTransitionTime": created},
                    {"type":"Ready","status": ready_s,"lastTransitionTime": ready_t},
                    {"type":"ContainersReady","status": ready_s,"lastTransitionTime": ready_t},
                    {"type":"PodScheduled","status":"True","lastTransitionTime": created}
                ],
                "containerStatuses": [{
                    "name": container, "image": image, "imageID": format!("docker.io/{image}@sha256:0000"),
                    "containerID": format!("containerd://{}", container_id(&p.name, p.restart_count as u64)),
                    "ready": ready, "started": !matches!(p.phase, PodPhase::Backoff{..}) && !p.image_pull_error && p.pulling.is_empty(),
                    "restartCount": p.restart_count, "state": state, "lastState": last_state
                }]
            }
        });
        let mut obj = obj;
        self.decorate_pod(k, &mut obj);
        self.store.put(Res::Pods, obj);
    }

    // ---------------------------------------------------------------- Docker

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
        self.restart_pods_in_place();
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

    // ---------------------------------------------------------------- faults

    pub fn apply_fault(&mut self, f: &Fault) {
        self.record(Source::Control, "fault", "", &serde_json::to_string(f).unwrap_or_default());
        match f {
            Fault::ApiRefuseFor { .. } => {}
            Fault::ApiErrors { code, count } => self.faults.api_errors = Some((*code, *count, false)),
            Fault::RolloutNeverCompletes { workload } => {
                self.faults.never.insert(workload.clone());
            }
            Fault::CrashLoop { workload } => {
                self.faults.crash.insert(workload.clone());
            }
            Fault::ImagePullBackOff { .. } | Fault::ZtunnelDisconnects { .. } => self.apply_trouble(f),
            Fault::Connect409Storm { message, count } => {
                let m = if message.is_empty() {
                    crate::connect::STALE_CONFIG.to_string()
                } else {
                    message.clone()
                };
                self.faults.c409 = Some((m, *count));
            }
            Fault::Connect500Timeout { count } => self.faults.c500 = *count,
            Fault::ConnectHtml502 { count } => self.faults.c502 = *count,
            Fault::ConnectReset { count } => self.faults.c_reset = *count,
            Fault::ConnectStatus404 { count } => self.faults.c_status404 = *count,
            Fault::ConnectorTaskFailed { connector } => {
                self.faults.task_failed.insert(connector.clone());
            }
            Fault::RemoveSecretKey { key } => {
                let s = self.infra.stack.connect.secret.clone();
                let k = Key::new(Res::Secrets, &s.namespace, &s.name);
                if let Some(mut obj) = self.store.get(&k).cloned() {
                    if let Some(d) = obj.get_mut("data").and_then(Value::as_object_mut) {
                        d.remove(key);
                    }
                    self.store.put(Res::Secrets, obj);
                }
            }
            Fault::Unschedulable { .. }
            | Fault::ContainerConfigError { .. }
            | Fault::SandboxCreationFails { .. }
            | Fault::CniReconcileFailed { .. }
            | Fault::StaleWorkload { .. }
            | Fault::HboneBlocked { .. }
            | Fault::ExtraControlPlane => self.apply_trouble(f),
            Fault::Clear => self.faults = FaultState::default(),
        }
    }

    // ---------------------------------------------------------------- queries

    /// Is every pod Ready and every workload rolled out?
    pub fn healthy(&self) -> Result<(), String> {
        if !self.docker_up {
            return Err("docker is down".into());
        }
        for res in [Res::Deployments, Res::DaemonSets] {
            for o in self.store.list(res, None) {
                rollout_done(o).map_err(|m| {
                    format!("{}/{}: {m}", str_at(o, "/metadata/namespace"), str_at(o, "/metadata/name"))
                })?;
            }
        }
        if let Some(p) = self.pods.values().find(|p| !p.is_ready()) {
            return Err(format!("pod {}/{} not Ready", p.ns, p.name));
        }
        Ok(())
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

    pub fn pod_views(&self) -> Vec<PodView> {
        self.pods
            .values()
            .map(|p| PodView {
                namespace: p.ns.clone(),
                name: p.name.clone(),
                workload: p.wl.2.clone(),
                ip: p.ip.clone(),
                ready: p.is_ready(),
                ambient: p.ambient,
                registered: p.registered,
                restart_count: p.restart_count,
                crash_loop: matches!(p.phase, PodPhase::Backoff { .. }),
                image_pull_backoff: p.image_pull_error,
            })
            .collect()
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

/// A pod as tests see it (`Sim::pods()`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub workload: String,
    pub ip: String,
    pub ready: bool,
    pub ambient: bool,
    pub registered: bool,
    pub restart_count: u32,
    pub crash_loop: bool,
    #[serde(default)]
    pub image_pull_backoff: bool,
}

pub fn container_id(name: &str, salt: u64) -> String {
    let mut out = String::new();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    while out.len() < 64 {
        for b in name.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(64);
    out
}

fn remove_key(v: &mut Value, k: &str) {
    if let Some(o) = v.as_object_mut() {
        o.remove(k);
    }
}

/// The real apiserver omits zero counts (`omitempty`).
fn set_count(status: &mut Value, k: &str, n: i64) {
    if n == 0 {
        remove_key(status, k);
    } else {
        status[k] = json!(n);
    }
}

fn condition(old: &Value, typ: &str, status: &str, reason: &str, message: &str) -> Value {
    let prev = old.as_array().and_then(|a| a.iter().find(|c| c["type"] == typ));
    let now = rfc3339(SystemTime::now());
    let transition = match prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let update = match prev {
        Some(p) if p["status"] == status && p["reason"] == reason && p["message"] == message => {
            p["lastUpdateTime"].clone()
        }
        _ => json!(now),
    };
    json!({"type": typ, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": transition, "lastUpdateTime": update})
}

/// kubectl's rollout-status rules (kube-api.md §8): Ok when done, Err(waiting message) otherwise.
pub fn rollout_done(obj: &Value) -> Result<(), String> {
    let name = str_at(obj, "/metadata/name");
    let gen_ = i64_at(obj, "/metadata/generation");
    let observed = i64_at(obj, "/status/observedGeneration");
    let kind = str_at(obj, "/kind");
    if kind == "DaemonSet" {
        if gen_ > observed {
            return Err("Waiting for daemon set spec update to be observed...".into());
        }
        let desired = i64_at(obj, "/status/desiredNumberScheduled");
        let updated = i64_at(obj, "/status/updatedNumberScheduled");
        let avail = i64_at(obj, "/status/numberAvailable");
        if updated < desired {
            return Err(format!(
                "Waiting for daemon set \"{name}\" rollout to finish: {updated} out of {desired} new pods have been updated..."
            ));
        }
        if avail < desired {
            return Err(format!(
                "Waiting for daemon set \"{name}\" rollout to finish: {avail} of {desired} updated pods are available..."
            ));
        }
        return Ok(());
    }
    if gen_ > observed {
        return Err("Waiting for deployment spec update to be observed...".into());
    }
    let replicas = i64_at(obj, "/spec/replicas");
    let updated = i64_at(obj, "/status/updatedReplicas");
    let total = i64_at(obj, "/status/replicas");
    let avail = i64_at(obj, "/status/availableReplicas");
    if updated < replicas {
        return Err(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {replicas} new replicas have been updated..."
        ));
    }
    if total > updated {
        return Err(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
            total - updated
        ));
    }
    if avail < updated {
        return Err(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {avail} of {updated} updated replicas are available..."
        ));
    }
    Ok(())
}

pub type SharedRef = Arc<Shared>;
