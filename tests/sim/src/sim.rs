//! `Sim`: one simulated world on its own runtime thread, in its own directory, on its own ports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use tokio::sync::{Notify, watch};

use crate::audit::AuditEntry;
use crate::config::{Infra, copy_dir, rewrite_downloads, rewrite_host_ports};
use crate::faults::Fault;
use crate::latency::LatencyTable;
use crate::server::{Bind, PortState, supervise};
use crate::world::{PodView, PortId, Shared, SharedRef, World};

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Multiplies every latency, back-off and controller delay (0.02 = 50× faster).
    pub time_scale: f64,
    /// The `infra/` to copy (stack.yaml, kind/cluster.yaml, connectors).
    pub infra_dir: PathBuf,
    /// Kafka has a PVC: its topics (and so the connectors) survive restarts.
    pub kafka_pvc: bool,
    /// The Connect worker declares the `file` config provider (`${file:<path>:<key>}` resolves).
    pub worker_file_provider: bool,
    /// The kind node was created before 32100/32200/32300 were mapped: no bindings, not served.
    pub old_cluster: bool,
    /// The old socat proxy containers (kiali-proxy, flink-proxy, debezium-proxy) exist.
    pub legacy_proxies: bool,
    /// No kind cluster at all (no node container; `kind get clusters` is empty).
    pub no_cluster: bool,
    /// The Debezium credentials secret (`ECOM_DB_USER`, ...): what the databases accept.
    pub secret: BTreeMap<String, String>,
    /// Run in this directory instead of a fresh temporary one (kept on drop).
    pub dir: Option<PathBuf>,
    /// Images present in the local Docker image store (`docker image inspect` finds them).
    pub images: Vec<String>,
    /// Docker uses the containerd image store (Docker Desktop's default; kind#3795): the images
    /// are OCI indexes with a provenance attestation, as `docker build` leaves them there.
    pub containerd_store: bool,
    /// A real Docker daemon's socket: its `<cluster>-control-plane` container is the node
    /// (`follow.rs`); clients get this `DOCKER_HOST` and the simulator serves no Docker API.
    pub real_docker: Option<PathBuf>,
    /// The Docker Engine API version the daemon serves ("1.50": Docker 28; "1.47": Docker 27,
    /// which has no `docker image save --platform`).
    pub docker_api_version: String,
    /// The machine's download bandwidth, MB/s, shared by every image download at once.
    pub bandwidth_mb_s: f64,
    /// Worker nodes beside the control plane in the healthy world's cluster (`<c>-worker`,
    /// `<c>-worker2`, …: kind's names); a `kind create` takes them from its config.
    pub workers: usize,
    /// How the mesh comes back after a node restart (`capture.rs`): the guide's world (nothing
    /// re-adopted) or one where it re-adopts all but some pods drawn with a seed.
    pub mesh_return: crate::capture::MeshReturn,
    /// Docker comes back without the kind node (kind#3244): the node halts cleanly (exit 0) at
    /// its stop signal and `on-failure:1` leaves it `exited` (`restart_policy.rs`).
    pub node_left_exited: bool,
    /// Which docker CLI the clients run (`docker_cli.rs`): the installed one, or a recorded
    /// behaviour of another release first on PATH.
    pub docker_cli: crate::docker_cli::DockerCli,
    /// Docker Desktop's VM clock against the host's, milliseconds (negative: behind, as after
    /// the host slept): every timestamp of the Engine API (events, `State.StartedAt`/`FinishedAt`,
    /// `Created`, `SystemTime`, `since`/`until`) is on it; the kube API's stay on the host's.
    pub docker_clock_offset_ms: i64,
    /// After every start of the node container (Docker's restore, `docker start`), the kube API
    /// refuses this many real seconds longer (the kubelet restarts etcd and the apiserver as
    /// static pods).
    pub api_boot_secs: f64,
    /// The engine kind built the cluster with, as each Node's `spec.providerID` says it
    /// (`kind://<provider>/<cluster>/<node>`, kind `pkg/cluster/internal/kubeadm/config.go`):
    /// `docker`, `podman` or `nerdctl`.
    pub node_provider: String,
    /// The release the `istioctl` stand-in is (`istioctl version`, the images it installs).
    pub istio_version: String,
    /// A shared development cluster, not kind (issue 19): the kubeconfig's only context is this
    /// name; no Docker API is served and no node container exists (the stack's host ports never
    /// answer: routes go through `kubectl port-forward`); its node [`crate::world::SHARED_NODE`]
    /// reboots with [`Sim::node_reboot`], read from the API alone.
    pub shared_context: Option<String>,
}

/// The istioctl release of a world unless told otherwise.
pub const ISTIO_VERSION: &str = "1.26.0";

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            time_scale: 1.0,
            infra_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra"),
            kafka_pvc: false,
            worker_file_provider: false,
            old_cluster: false,
            legacy_proxies: false,
            no_cluster: false,
            secret: BTreeMap::from([
                ("ECOM_DB_USER".to_string(), "ecomuser".to_string()),
                ("ECOM_DB_PASSWORD".to_string(), "ecompass".to_string()),
                ("INVENTORY_DB_USER".to_string(), "inventoryuser".to_string()),
                ("INVENTORY_DB_PASSWORD".to_string(), "inventorypass".to_string()),
            ]),
            dir: None,
            images: Vec::new(),
            containerd_store: false,
            real_docker: None,
            docker_api_version: crate::docker::API_VERSION.to_string(),
            bandwidth_mb_s: crate::latency::BANDWIDTH_MB_S,
            workers: 0,
            mesh_return: crate::capture::MeshReturn::Guide,
            node_left_exited: false,
            docker_cli: crate::docker_cli::DockerCli::Installed,
            docker_clock_offset_ms: 0,
            api_boot_secs: 0.0,
            node_provider: "docker".to_string(),
            istio_version: ISTIO_VERSION.to_string(),
            shared_context: None,
        }
    }
}

pub struct Sim {
    shared: SharedRef,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    thread: Option<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    host_ports: BTreeMap<u16, u16>,
    kube_port: u16,
    control_port: u16,
    /// Dropped first: the follower of a real Docker daemon (`SimOptions::real_docker`).
    follower: Option<crate::follow::Follower>,
}

/// A free port on 127.0.0.1 below the kernel's ephemeral range (Linux: 32768-60999), where a
/// client's connection or another simulator's `bind(0)` never lands: the simulator lets go of a
/// port while its node or Docker is down (and of an empty machine's host ports at once, so that
/// `up` finds them free), and a port from the ephemeral range could be taken in that window by
/// any test running beside it. Random in 20000-32767, each candidate checked by binding it.
fn free_listener() -> Result<std::net::TcpListener> {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Each call its own seed: the process, the clock and a counter (simulators start at once).
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(0);
    let mut draw = crate::draw::Draw(
        (std::process::id() as u64) << 32 ^ nanos ^ CALLS.fetch_add(1, Ordering::Relaxed) << 48,
    );
    for _ in 0..4096 {
        let port = 20_000 + draw.below(12_768) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Ok(l);
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port on 127.0.0.1")
}

impl Sim {
    /// Copy `infra/`, give the kind config free host ports, build the healthy world, bind all.
    pub fn start(opts: SimOptions) -> Result<Sim> {
        let (tmp, dir) = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.canonicalize()?)
            }
            None => {
                let t = tempfile::Builder::new().prefix("bookstore-sim-").tempdir()?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        // Unix socket paths are limited to ~108 bytes.
        if dir.join("docker.sock").as_os_str().len() > 100 {
            bail!("simulator dir {} is too long for a unix socket path", dir.display());
        }
        for sub in ["bin", "home", "kubecache"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let infra_copy = dir.join("infra");
        if infra_copy.exists() {
            std::fs::remove_dir_all(&infra_copy)?;
        }
        copy_dir(&opts.infra_dir, &infra_copy)
            .with_context(|| format!("copying {}", opts.infra_dir.display()))?;
        let infra = Infra::load(&infra_copy)?;

        // Free host ports for every containerPort, held until the supervisors take them.
        let mut listeners: BTreeMap<u16, std::net::TcpListener> = BTreeMap::new();
        let mut host_ports = BTreeMap::new();
        for cp in infra.cluster.port_map().keys() {
            let l = free_listener()?;
            host_ports.insert(*cp, l.local_addr()?.port());
            listeners.insert(*cp, l);
        }
        let kube_l = free_listener()?;
        let kube_port = kube_l.local_addr()?.port();
        let control_l = free_listener()?;
        let control_port = control_l.local_addr()?.port();
        let text = std::fs::read_to_string(&infra.cluster_path)?;
        std::fs::write(&infra.cluster_path, rewrite_host_ports(&text, &host_ports)?)?;
        let stack_path = infra_copy.join("stack.yaml");
        let stack = std::fs::read_to_string(&stack_path)?;
        std::fs::write(&stack_path, rewrite_downloads(&stack, control_port))?;
        let infra = Infra::load(&infra_copy)?;
        let name = infra.cluster.name();
        let kubeconfig = match (&opts.shared_context, opts.no_cluster) {
            (_, true) => crate::standins::EMPTY_KUBECONFIG.to_string(),
            (Some(context), false) => crate::standins::context_kubeconfig(context, kube_port),
            (None, false) => crate::standins::kubeconfig_text(&name, kube_port),
        };
        std::fs::write(dir.join("kubeconfig"), kubeconfig)?;
        crate::standins::write_scripts(&dir.join("bin"), control_port)?;
        crate::docker_cli::install(&dir.join("bin"), opts.docker_cli)?;
        std::fs::write(dir.join("control.url"), format!("http://127.0.0.1:{control_port}\n"))?;

        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut world =
            World::new(opts.clone(), infra, dir.clone(), host_ports.clone(), kube_port, control_port);
        if !opts.no_cluster {
            world.bootstrap_stack();
        }
        let rv = world.store.subscribe();
        let mut ports = BTreeMap::new();
        let mut receivers = Vec::new();
        let mut ids: Vec<PortId> = vec![PortId::Kube];
        // No Docker in a shared cluster's world: its socket is never bound.
        let docker = opts.real_docker.is_none() && opts.shared_context.is_none();
        if docker {
            ids.push(PortId::Docker);
        }
        ids.extend(host_ports.keys().map(|cp| PortId::Host(*cp)));
        for id in ids {
            let (tx, rx) = watch::channel(PortState { on: world.port_wanted(id), epoch: 0 });
            ports.insert(id, tx);
            receivers.push((id, rx));
        }
        let shared: SharedRef = Arc::new(Shared {
            world: Mutex::new(world),
            wake: Notify::new(),
            ports,
            rv,
            rt: rt.handle().clone(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (_always_tx, always_rx) = watch::channel(PortState { on: true, epoch: 0 });
        let handle = rt.handle().clone();
        for (id, rx) in receivers {
            let (bind, initial, h) = match id {
                PortId::Kube => (
                    Bind::Tcp(kube_l.local_addr()?),
                    Some(kube_l.try_clone()?),
                    crate::kube::handler(shared.clone()),
                ),
                PortId::Docker => {
                    (Bind::Unix(dir.join("docker.sock")), None, crate::docker::handler(shared.clone()))
                }
                PortId::Host(cp) => {
                    let l = listeners.remove(&cp).context("host port listener")?;
                    let hp = l.local_addr()?.port();
                    (Bind::Tcp(l.local_addr()?), Some(l), crate::dataplane::handler(shared.clone(), cp, hp))
                }
            };
            handle.spawn(supervise(bind, initial, rx, h, shutdown_rx.clone()));
        }
        drop(kube_l);
        handle.spawn(supervise(
            Bind::Tcp(control_l.local_addr()?),
            Some(control_l),
            always_rx,
            crate::control::handler(shared.clone()),
            shutdown_rx.clone(),
        ));
        handle.spawn(drive(shared.clone(), shutdown_rx.clone()));
        let mut stop = shutdown_rx;
        let thread = std::thread::Builder::new().name("bookstore-sim".into()).spawn(move || {
            let _keep = _always_tx;
            rt.block_on(async move {
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
            });
            rt.shutdown_timeout(Duration::from_millis(200));
        })?;
        let follower = opts.real_docker.clone().map(|socket| {
            let node = shared.lock().node_name();
            crate::follow::Follower::start(shared.clone(), socket, node)
        });
        // The Docker socket is bound on the runtime thread: a client right after `start` must
        // find it (a loaded machine lags).
        if docker {
            let socket = dir.join("docker.sock");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !socket.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(Sim {
            follower,
            shared,
            dir,
            _tmp: tmp,
            thread: Some(thread),
            shutdown,
            host_ports,
            kube_port,
            control_port,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/infra/stack.yaml`: the copy whose cluster config has this simulator's ports.
    pub fn stack_path(&self) -> PathBuf {
        self.dir.join("infra").join("stack.yaml")
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub fn docker_socket(&self) -> PathBuf {
        match &self.shared.lock().opts.real_docker {
            Some(real) => real.clone(),
            None => self.dir.join("docker.sock"),
        }
    }

    /// The host port this simulator serves for a kind containerPort (30000, 32300, ...).
    ///
    /// # Panics
    /// If the cluster config has no such containerPort.
    pub fn host_port(&self, container_port: u16) -> u16 {
        match self.host_ports.get(&container_port) {
            Some(p) => *p,
            None => panic!("containerPort {container_port} is not in the cluster config"),
        }
    }

    /// The host port for a containerPort of the cluster config, if it has one.
    pub fn try_host_port(&self, container_port: u16) -> Option<u16> {
        self.host_ports.get(&container_port).copied()
    }

    pub fn kube_port(&self) -> u16 {
        self.kube_port
    }

    pub fn control_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.control_port)
    }

    /// The environment that points real clients at this world.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            ("KUBECONFIG".into(), self.kubeconfig_path().display().to_string()),
            ("KUBECACHEDIR".into(), self.dir.join("kubecache").display().to_string()),
            ("DOCKER_HOST".into(), format!("unix://{}", self.docker_socket().display())),
            ("PATH".into(), format!("{}:{}", self.dir.join("bin").display(), path)),
            ("HOME".into(), self.dir.join("home").display().to_string()),
        ]
    }

    /// A command with `env()` applied (and proxies cleared).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"] {
            c.env_remove(k);
        }
        // HOME is this world's: so are the user's folders under it (bookstore's state file).
        for k in ["XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"] {
            c.env_remove(k);
        }
        c.env("NO_PROXY", "127.0.0.1,localhost");
        c
    }

    /// Docker Desktop restarts: every pod restarts in place with a stale mesh registration,
    /// Kafka without a PVC loses its topics, open connections drop.
    pub fn docker_restart(&self) {
        crate::control::docker_restart(&self.shared);
    }

    /// A shared cluster's node reboots (`SimOptions::shared_context`; `World::node_reboot`): a
    /// new bootID, the kubelet's `Starting` and `Rebooted` events, its Ready transition, every
    /// pod restarted in place; no Docker in the picture.
    pub fn node_reboot(&self) {
        crate::control::node_reboot(&self.shared);
    }

    /// The events on Nodes expire (`--event-ttl`, 1 h): the kubelet's `Starting` and `Rebooted`
    /// are gone, the bootID and the Ready transition stay.
    pub fn expire_node_events(&self) {
        self.shared.lock().expire_node_events();
    }

    /// A Docker restart after which the kube-apiserver refuses connections for `secs` seconds
    /// (real time), as a real apiserver does while it comes back.
    pub fn docker_restart_refusing_api(&self, secs: f64) {
        crate::control::fault(&self.shared, Fault::ApiRefuseFor { secs });
        crate::control::docker_restart(&self.shared);
    }

    /// A Docker Desktop restart that takes a while: Docker is gone (socket removed, event streams
    /// ended, kube API and host ports refusing) for `down_secs`, then back with the node
    /// restarted; the kube API refuses `api_secs` longer. Returns at once (real seconds).
    pub fn docker_desktop_restart(&self, down_secs: f64, api_secs: f64) {
        crate::control::docker_desktop_restart(&self.shared, down_secs, api_secs);
    }

    /// The Docker daemon's event ring (what `docker events --since` could replay).
    pub fn docker_events(&self) -> Vec<crate::docker_events::Message> {
        self.shared.lock().docker_events.all()
    }

    pub fn docker_stop(&self) {
        crate::control::docker_stop(&self.shared);
    }

    /// `docker restart <node>` of one node container: only the pods on it restart in place (the
    /// kube API stays up unless it is the control plane). Returns at once.
    pub fn restart_node(&self, node: &str) {
        let after = {
            let mut w = self.shared.lock();
            let Some(i) = w.containers.iter().position(|c| c.name == node) else { return };
            w.record(crate::audit::Source::Control, "node-restart", node, "");
            crate::docker::container_action(&mut w, i, "restart", "15").unwrap_or_default()
        };
        if after.bounce_all {
            crate::control::bounce_cluster(&self.shared);
        }
        if after.node_started {
            crate::control::node_booting(&self.shared);
        }
        self.shared.refresh_ports();
        self.shared.wake.notify_one();
    }

    /// The cluster's node containers, the control plane first.
    pub fn nodes(&self) -> Vec<String> {
        self.shared.lock().nodes()
    }

    /// Docker comes back; returns once its socket accepts connections again (its listener is
    /// bound on the simulator's runtime: a client right after would otherwise race it).
    pub fn docker_start(&self) {
        crate::control::docker_start(&self.shared);
        if self.shared.lock().opts.real_docker.is_some() {
            return;
        }
        let socket = self.docker_socket();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn fault(&self, f: Fault) {
        crate::control::fault(&self.shared, f);
    }

    pub fn audit(&self) -> Vec<AuditEntry> {
        self.shared.lock().audit.clone()
    }

    /// What the images did so far: pods created before their image was in the node, what was
    /// loaded and whether a pod runs it, what the kubelet pulled.
    pub fn image_audit(&self) -> crate::images::ImageAudit {
        crate::images::ImageAudit::of(&self.shared.lock())
    }

    /// The connectors Kafka Connect has stored (name → raw config).
    pub fn connectors(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.shared.lock().connectors.iter().map(|(k, v)| (k.clone(), v.config.clone())).collect()
    }

    /// Every pod with its readiness and mesh registration.
    /// What a route answers inside the cluster (`dataplane::answer`): its status, `None` for a
    /// reset.
    pub fn route_answer(&self, container_port: u16, host: Option<&str>, path: &str) -> Option<u16> {
        crate::dataplane::answer(&mut self.shared.lock(), container_port, host.unwrap_or(""), path)
    }

    pub fn pods(&self) -> Vec<PodView> {
        self.shared.lock().pod_views()
    }

    /// Wait until the stack is back after a node restart as far as the kubelet brings it: the
    /// mesh's timeline done (every sandbox made, istio-cni installed, ztunnel connected) and
    /// every pod Ready or in a crash loop's back-off (an app refused by a database outside the
    /// mesh, say).
    pub fn wait_settled(&self, timeout: Duration) -> Result<()> {
        self.wait_for(timeout, "every pod Ready or crash-looping, the mesh settled", |w| {
            w.mesh.values().all(|m| m.timeline.is_empty())
                && w.pods.values().all(|p| {
                    p.is_ready()
                        || (matches!(p.phase, crate::world::PodPhase::Backoff { .. }) && p.restart_count > 0)
                })
        })
    }

    /// Wait until every workload is rolled out and every pod is Ready (the kit's one poll,
    /// every 10 ms).
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        crate::kit::poll(timeout, Duration::from_millis(10), || self.shared.lock().healthy())
            .map_err(|why| anyhow::anyhow!("simulated stack not healthy after {timeout:?}: {why}"))
    }

    /// Wait until `pred` holds on the world (the kit's one poll, every 10 ms).
    pub fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&World) -> bool) -> Result<()> {
        crate::kit::poll(timeout, Duration::from_millis(10), || {
            if pred(&self.shared.lock()) { Ok(()) } else { Err(()) }
        })
        .map_err(|()| anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"))
    }

    /// The simulator's clock: milliseconds since it started (the audit log's `t_ms`).
    pub fn clock_ms(&self) -> u64 {
        self.shared.lock().t_ms()
    }

    pub fn latency_table() -> LatencyTable {
        LatencyTable::get()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.follower.take();
        self.shutdown.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The controller loop: reconcile, then sleep until something is due or someone writes.
async fn drive(shared: SharedRef, mut shutdown: watch::Receiver<bool>) {
    loop {
        let next = shared.lock().reconcile(Instant::now());
        let now = Instant::now();
        let wait = next
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
