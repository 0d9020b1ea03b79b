//! World state: the kind cluster (object store, workloads, pods), Docker containers, the mesh,
//! Kafka Connect's stored connectors, faults and the audit log. One `Mutex<World>` guards it all;
//! nothing awaits while holding it.
//!
//! The state is here; what moves it lives beside it, one concern a module: `controllers`
//! (`World::reconcile`, the Deployment/DaemonSet controllers, Istio's gateway controller,
//! kubectl's rollout-status rule), `kubelet` (pods started, Ready, crash-looping, rendered),
//! `mesh` (ambient registration, ztunnel's log, reachability), `restarts` (Docker stopping and
//! starting), `bootstrap` (a cluster made, the healthy stack aged an hour), `downloads` (images
//! landing in the host's store or the node).

mod bootstrap;
mod controllers;
mod downloads;
mod kubelet;
mod mesh;
mod nodes;
mod restarts;

pub use controllers::rollout_done;
pub use mesh::{Backend, reachable};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::audit::{AuditEntry, Source};
use crate::config::Infra;
use crate::faults::Fault;
use crate::sim::SimOptions;
use crate::store::{Key, Res, Store, str_at};

/// `(resource, namespace, name)` of a Deployment or DaemonSet.
pub type WlKey = (Res, String, String);

pub const AMBIENT_LABEL: &str = "istio.io/dataplane-mode";

/// istio-cni's node agent DaemonSet (istioctl's ambient profile).
pub const CNI_DAEMONSET: &str = "istio-cni-node";

/// The node of a shared cluster's world (`SimOptions::shared_context`): a machine of the team's
/// cluster, no container of ours.
pub const SHARED_NODE: &str = "dev-node-1";

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
    /// The node it runs on (`spec.nodeName`): the scheduler's pick, or its DaemonSet's node.
    pub node: String,
    pub template_gen: i64,
    pub hash: String,
    pub ip: String,
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
    /// When it last stopped (`State.FinishedAt`).
    #[serde(skip)]
    pub finished: SystemTime,
    /// Its last exit code (`State.ExitCode`): what the daemon's restart policy looks at
    /// (`restart_policy.rs`).
    pub exit_code: i32,
    /// `docker stop`ped by hand (moby's `HasBeenManuallyStopped`): `unless-stopped` stays down.
    pub stopped_by_user: bool,
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
    /// A worker's kubelet joins late: its Node turns Ready at this time (`kind create` waits for
    /// the control plane only).
    pub node_ready_at: BTreeMap<String, Instant>,
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
    /// The node's image import, shared by the `kind load`s under way (`images.rs`).
    pub importer: crate::images::Importer,
    /// What `istioctl install` installed (`istioctl.rs`): its images, its gateways' image.
    pub istio: Option<crate::istioctl::Install>,
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
        for c in infra.connectors() {
            let host = c.config.get("database.hostname").cloned().unwrap_or_default();
            let db = host.split('.').next().unwrap_or("").to_string();
            let user = opts.secret.get(&c.user_key).cloned().unwrap_or_default();
            let pass = opts.secret.get(&c.password_key).cloned().unwrap_or_default();
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
            node_ready_at: BTreeMap::new(),
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
            importer: crate::images::Importer::new(crate::latency::LOAD_MB_S),
            istio: None,
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

    /// The control plane's node (its container serves the kube API).
    pub fn node_name(&self) -> String {
        match self.opts.shared_context {
            Some(_) => SHARED_NODE.to_string(),
            None => format!("{}-control-plane", self.cluster_name()),
        }
    }

    /// A shared cluster's world (`SimOptions::shared_context`): no Docker, no node container.
    pub fn shared(&self) -> bool {
        self.opts.shared_context.is_some()
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
        self.cluster.is_some()
            && (self.shared() || self.containers.iter().any(|c| c.name == self.node_name() && c.running))
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
                let c = &self.infra.stack.connect;
                let k = Key::new(Res::Secrets, &c.secret_namespace, &c.secret_name);
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

    pub fn pod_views(&self) -> Vec<PodView> {
        self.pods
            .values()
            .map(|p| PodView {
                namespace: p.ns.clone(),
                name: p.name.clone(),
                workload: p.wl.2.clone(),
                ip: p.ip.clone(),
                node: p.node.clone(),
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

/// A pod as tests see it (`Sim::pods()`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub workload: String,
    pub ip: String,
    #[serde(default)]
    pub node: String,
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

pub type SharedRef = Arc<Shared>;
