//! The node engine: the one room that knows which container engine runs kind's nodes (Docker in
//! any context, Podman, nerdctl), how its CLI is called and what it prints. Everything else
//! asks the engine of the run ([`Engine::for_run`]) for a command and reads its answer through
//! it, never a program's name or output format of its own.
//!
//! In two halves, as kubectl's wrapper: [`Engine`] reads (list, inspect, follow, probe) and
//! [`EngineWrite`] changes (start a node, remove a container, pull, build, save, and kind's
//! create, load and delete, which act through the engine). Only `steps/` and the watcher's heal
//! make an [`EngineWrite`].
//!
//! The engine is chosen as kind chooses its provider ([`choice::choose`]), once
//! per process, and for Docker the endpoint is resolved then too ([`endpoint`]) and passed on
//! every docker and kind call: a run, and a watcher's whole life, stays on one daemon. kind
//! finds a cluster's nodes by their labels ([`CLUSTER_LABEL`], [`ROLE_LABEL`]), never by a
//! name, and so does this room.
//!
//! Size: every command of the three engines' CLIs, one method a command with each engine's arm
//! beside the others, so their differences read at a glance; what each prints is parsed in
//! `docker.rs`, `podman.rs`, `nerdctl.rs`.

pub mod choice;
pub mod docker;
pub mod endpoint;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod nerdctl;
pub mod podman;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use crate::exec::Cmd;
use endpoint::Endpoint;

/// kind's labels on a node container: the cluster it belongs to, and its role
/// (`control-plane`, `worker`, `external-load-balancer`): kubernetes-sigs/kind
/// `pkg/cluster/internal/providers/docker/constants.go`. kind finds its nodes by these, never
/// by name (`provider.go` `ListNodes`: `<engine> ps -a --filter label=io.x-k8s.kind.cluster=<c>`).
pub const CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
pub const ROLE_LABEL: &str = "io.x-k8s.kind.role";

/// The engines kind has a provider for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Docker,
    Podman,
    /// nerdctl, finch or lima's nerdctl.lima: kind's nerdctl provider.
    Nerdctl,
}

impl Kind {
    /// kind's provider name, as a Node's `spec.providerID` says it (`kind://<provider>/…`).
    pub fn provider(self) -> &'static str {
        match self {
            Kind::Docker => "docker",
            Kind::Podman => "podman",
            Kind::Nerdctl => "nerdctl",
        }
    }

    /// As a user calls it.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Docker => "Docker",
            Kind::Podman => "Podman",
            Kind::Nerdctl => "nerdctl",
        }
    }
}

/// A container as `<engine> ps` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub id: String,
    /// `running`, `exited`, `created`, …
    pub state: String,
    /// `Up 2 minutes`, `Exited (137) 5 seconds ago`, …
    pub status: String,
    pub labels: BTreeMap<String, String>,
    /// Published ports: (host address, host port, container port).
    pub published: Vec<(String, u16, u16)>,
}

impl Listed {
    pub fn running(&self) -> bool {
        self.state == "running"
    }

    /// kind's node role label (`control-plane`, `worker`, `external-load-balancer`).
    pub fn role(&self) -> &str {
        self.labels.get(ROLE_LABEL).map(String::as_str).unwrap_or("")
    }

    /// What `ps` tells of a node: its state and the ports it publishes now (a running
    /// container's; its start takes an `inspect`).
    pub fn node(&self) -> Node {
        Node {
            name: self.name.clone(),
            id: self.id.clone(),
            role: self.role().to_string(),
            running: self.running(),
            status: self.state.clone(),
            kind_cluster: self.labels.get(CLUSTER_LABEL).cloned(),
            bindings: self.published.iter().map(|(ip, host, port)| (*port, ip.clone(), *host)).collect(),
            ..Node::default()
        }
    }
}

/// What `<engine> inspect` says about a kind node container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// The container's name: kind names the Kubernetes node after it (its hostname).
    pub name: String,
    /// The container's ID (nerdctl's events name it by this only).
    pub id: String,
    /// Its `io.x-k8s.kind.role` label (`control-plane`, `worker`, …).
    pub role: String,
    pub running: bool,
    pub status: String,
    /// `State.StartedAt` (seconds since the epoch): new after every start of the container (an
    /// engine restart, `<engine> restart`, a reboot); `None` if it never started.
    pub started_at: Option<u64>,
    /// `State.StartedAt` as the engine prints it (nanoseconds): two starts within a second
    /// differ. (nerdctl before 2.0 prints none: `pid <n>`, its process, stands for the start.)
    pub started: String,
    /// `State.FinishedAt` as the engine prints it (`0001-01-01T00:00:00Z` if it never stopped).
    pub finished: String,
    /// `State.ExitCode`.
    pub exit_code: i64,
    /// Its `io.x-k8s.kind.cluster` label: the kind cluster it is a node of (what `kind get
    /// clusters` lists).
    pub kind_cluster: Option<String>,
    /// (containerPort, hostIp, hostPort) from HostConfig.PortBindings.
    pub bindings: Vec<(u16, String, u16)>,
}

/// One container event, in Docker's words whatever the engine (`start`, `die`, `destroy`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub action: String,
    /// The container's name (empty from nerdctl, which names it by ID only).
    pub name: String,
    /// The container's ID (Docker's and podman's full ID, nerdctl's).
    pub id: String,
    /// Nanoseconds since the Unix epoch, on the engine's clock.
    pub time_nano: u128,
    /// `die`: the exit code.
    pub exit_code: Option<String>,
}

impl ContainerEvent {
    /// Whether it is about this node container (by name, or by ID where the engine gives no name).
    pub fn is_about(&self, name: &str, id: &str) -> bool {
        (!self.name.is_empty() && self.name == name)
            || (!self.id.is_empty() && !id.is_empty() && self.id == id)
    }
}

/// The node engine of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    pub kind: Kind,
    /// The program: `docker`, `podman`, `nerdctl`, `finch`, `nerdctl.lima`.
    pub program: String,
    /// Why this engine, in kind's terms (`KIND_EXPERIMENTAL_PROVIDER=podman`, ``docker -v`
    /// prints `Docker version …` ``, …).
    pub why: String,
    /// Docker's endpoint, resolved when the run started (`Err`: it could not be, and each call
    /// resolves it as the CLI would).
    pub endpoint: Option<Result<Endpoint, String>>,
    /// What the choice ignored (an unknown `KIND_EXPERIMENTAL_PROVIDER`, as kind warns).
    pub warning: Option<String>,
}

static RESOLVED: OnceLock<Engine> = OnceLock::new();

/// The probes a choice may make, in kind's order.
const PROBED: [&str; 4] = ["docker", "nerdctl", "finch", "podman"];

impl Engine {
    /// The node engine of this run: chosen as kind chooses its provider (its `-v` probes made
    /// once) and, for Docker, its endpoint resolved once; the same for the life of the process
    /// (a run, or a watcher's whole life).
    pub fn for_run() -> &'static Engine {
        RESOLVED.get_or_init(Engine::resolve)
    }

    fn resolve() -> Engine {
        let provider = std::env::var("KIND_EXPERIMENTAL_PROVIDER").ok();
        let choice = choice::choose(provider.as_deref(), &mut |program: &str| {
            which::which(program).ok()?;
            let out = probe(program).run().ok()?;
            let lines: Vec<&str> = out.stdout.lines().collect();
            (lines.len() == 1).then(|| lines[0].trim().to_string())
        });
        let endpoint = (choice.kind == Kind::Docker).then(|| {
            let host = std::env::var("DOCKER_HOST").ok();
            let context = std::env::var("DOCKER_CONTEXT").ok();
            endpoint::resolve(host.as_deref(), context.as_deref(), || {
                let out = endpoint::context_inspect().run().map_err(|e| e.headline())?;
                endpoint::parse_context(&out.stdout)
            })
        });
        Engine {
            kind: choice.kind,
            program: choice.program,
            why: choice.why,
            endpoint,
            warning: choice.ignored.map(|v| {
                format!("ignoring unknown value {v:?} for KIND_EXPERIMENTAL_PROVIDER (as kind does)")
            }),
        }
    }

    /// An engine of this kind on its default program and endpoint (tests, the simulator).
    pub fn of(kind: Kind) -> Engine {
        Engine {
            kind,
            program: kind.provider().to_string(),
            why: "given".into(),
            endpoint: None,
            warning: None,
        }
    }

    /// What [`Engine::for_run`] runs to choose (`--dry-run`): kind's probes, and Docker's
    /// context when `DOCKER_HOST` is not set.
    pub fn describe(&self, lines: &mut Vec<String>) {
        lines.push(format!("# The node engine, as kind chooses it: {} ({})", self.program, self.why));
        if !self.why.starts_with("KIND_EXPERIMENTAL_PROVIDER") {
            for program in PROBED.iter().take_while(|p| **p != self.program) {
                if which::which(program).is_ok() {
                    lines.push(format!("{}   # kind's probe", probe(program)));
                }
            }
            if which::which(&self.program).is_ok() && PROBED.contains(&self.program.as_str()) {
                lines.push(format!("{}   # kind's probe", probe(&self.program)));
            }
        }
        if let Some(Ok(e)) = &self.endpoint
            && e.context.is_some()
        {
            lines
                .push(format!("{}   # the Docker endpoint, pinned for the run", endpoint::context_inspect()));
        }
    }

    /// One line for `doctor` and `status`: `Docker (docker; context colima (unix://…), from …)`.
    pub fn summary(&self) -> String {
        let mut out = format!("{} ({}", self.kind.title(), self.program);
        match &self.endpoint {
            Some(Ok(e)) => out.push_str(&format!("; {}", e.describe())),
            Some(Err(why)) => out.push_str(&format!("; endpoint not resolved: {why}")),
            None => {}
        }
        out.push(')');
        out
    }

    /// The engine's CLI, its endpoint pinned.
    fn cli(&self) -> Cmd {
        let cmd = Cmd::new(&self.program);
        match self.pinned_context() {
            Some(name) => cmd.args(["--context", name]),
            None => cmd,
        }
    }

    /// The Docker context this run pins, if any.
    pub fn pinned_context(&self) -> Option<&str> {
        match &self.endpoint {
            Some(Ok(Endpoint { context: Some(name), .. })) => Some(name),
            _ => None,
        }
    }

    /// The Docker endpoint's address (the socket the watcher watches while the engine is away).
    pub fn host(&self) -> Option<&str> {
        match &self.endpoint {
            Some(Ok(e)) if !e.host.is_empty() => Some(&e.host),
            _ => None,
        }
    }

    /// `kind`, on this engine: kind runs the engine's CLI itself, so it is told which one
    /// (`KIND_EXPERIMENTAL_PROVIDER`) and, for Docker, which context.
    fn kind_cli(&self) -> Cmd {
        let cmd = Cmd::new("kind");
        match (self.kind, self.pinned_context()) {
            (Kind::Docker, Some(context)) => cmd.env("DOCKER_CONTEXT", context),
            (Kind::Docker, None) => cmd,
            _ => cmd.env("KIND_EXPERIMENTAL_PROVIDER", &self.program),
        }
    }

    // ---- reads ----------------------------------------------------------------------------

    /// The liveness probe: fails whenever the engine does not answer. Docker's `version
    /// --format '{{.Server.Version}}'` fails on every CLI release when the daemon is away
    /// (docker/cli `cli/command/system/version.go`; `info --format` exits 0 before 28.1);
    /// podman's falls back to the client's version when it runs locally (no server: `version.go`
    /// retries the template without `.Server.`) and fails when its machine or service is away;
    /// nerdctl's `Server` is containerd's, and it fails without containerd.
    pub fn version(&self) -> Cmd {
        let format = match self.kind {
            Kind::Docker | Kind::Podman => "{{.Server.Version}}",
            Kind::Nerdctl => "{{json .Server}}",
        };
        self.cli().args(["version", "--format", format]).deadline(Duration::from_secs(20))
    }

    /// What the probe printed says the engine answered.
    pub fn answered(&self, stdout: &str) -> bool {
        let out = stdout.trim();
        !out.is_empty() && out != "null"
    }

    /// The engine's CLI's words for an engine it cannot reach.
    pub fn unreachable(&self, stderr: &str) -> bool {
        let words: &[&str] = match self.kind {
            Kind::Docker => &docker::UNREACHABLE,
            // podman-remote (`podman machine`): pkg/bindings/connection.go.
            Kind::Podman => &["Cannot connect to Podman", "unable to connect to Podman"],
            Kind::Nerdctl => &["cannot access containerd socket", "failed to dial", "connection refused"],
        };
        words.iter().any(|w| stderr.contains(w))
    }

    /// Every container of a kind cluster, running or not (kind's `ListNodes`).
    pub fn ps_cluster(&self, cluster: &str) -> Cmd {
        self.cli()
            .args(["ps", "-a", "--filter", &format!("label={CLUSTER_LABEL}={cluster}")])
            .args(["--format", self.json_format()])
            .deadline(Duration::from_secs(20))
    }

    /// Every running container with its published ports.
    pub fn ps_running(&self) -> Cmd {
        self.cli().args(["ps", "--format", self.json_format()]).deadline(Duration::from_secs(20))
    }

    /// Containers with exactly these names (the legacy socat proxies), running or not: one name
    /// a line.
    pub fn ps_named(&self, names: &[String]) -> Cmd {
        let mut cmd = self.cli().args(["ps", "-a"]);
        for name in names {
            cmd = cmd.args(["--filter", &format!("name=^{name}$")]);
        }
        cmd.args(["--format", "{{.Names}}"]).deadline(Duration::from_secs(20))
    }

    /// podman's `ps` prints one JSON array for `json` (and for `{{json .}}`); Docker and
    /// nerdctl a JSON object a line for `{{json .}}`.
    fn json_format(&self) -> &'static str {
        match self.kind {
            Kind::Podman => "json",
            Kind::Docker | Kind::Nerdctl => "{{json .}}",
        }
    }

    pub fn parse_ps(&self, stdout: &str) -> Result<Vec<Listed>, String> {
        match self.kind {
            Kind::Docker => docker::parse_ps(stdout),
            Kind::Podman => podman::parse_ps(stdout),
            Kind::Nerdctl => nerdctl::parse_ps(stdout),
        }
    }

    /// `inspect` of these containers at once (one JSON array, in the order given).
    pub fn inspect_all(&self, containers: &[String]) -> Cmd {
        self.cli()
            .args(["inspect", "--type", "container"])
            .args(containers.iter().cloned())
            .deadline(Duration::from_secs(20))
    }

    pub fn inspect(&self, container: &str) -> Cmd {
        self.inspect_all(&[container.to_string()])
    }

    pub fn parse_inspect_all(&self, stdout: &str) -> Result<Vec<Node>, String> {
        docker::parse_inspect_all(stdout).map_err(|e| format!("{} {e}", self.program))
    }

    pub fn parse_inspect(&self, stdout: &str) -> Result<Node, String> {
        self.parse_inspect_all(stdout)?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{} inspect printed no container", self.program))
    }

    /// Every node container of the cluster, found as kind finds them (by its label, never by a
    /// guessed name), then one `inspect` of them all: each with its role, state, start and port
    /// bindings; control planes first, then by name. Empty when no container carries the label.
    pub fn nodes(&self, cluster: &str) -> Result<Vec<Node>, String> {
        self.nodes_then(cluster, |_| {})
    }

    /// [`Engine::nodes`], telling `listed` their names as soon as `ps` has listed them (before
    /// the `inspect`): what is read on each node starts then.
    pub fn nodes_then(&self, cluster: &str, listed: impl FnOnce(Vec<String>)) -> Result<Vec<Node>, String> {
        let ps = self.ps_cluster(cluster);
        let out = ps.run().map_err(|e| e.headline())?;
        let found = self.parse_ps(&out.stdout).map_err(|p| format!("`{ps}`: {p}"))?;
        let names: Vec<String> = found.into_iter().map(|l| l.name).collect();
        listed(names.clone());
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let cmd = self.inspect_all(&names);
        let out = cmd.run().map_err(|e| e.headline())?;
        let mut nodes = self.parse_inspect_all(&out.stdout).map_err(|p| format!("`{cmd}`: {p}"))?;
        start_order(&mut nodes);
        Ok(nodes)
    }

    /// The engine's events for the containers of a kind cluster, one JSON object a line, from
    /// `since` (nanoseconds on the engine's clock) when given: Docker and podman replay what
    /// they still have since then. nerdctl can filter on nothing but `start` and replays nothing
    /// (no `--since`): it is followed unfiltered, its events matched to the nodes by ID, and a
    /// start missed while the stream was down is caught by comparing each node's start on
    /// every reconnect (the watcher does so for every engine). Runs until stopped or the engine
    /// goes away.
    pub fn events(&self, cluster: &str, since: Option<u128>) -> Cmd {
        let label = format!("label={CLUSTER_LABEL}={cluster}");
        let cmd = self.cli().arg("events");
        let cmd = match self.kind {
            Kind::Docker => {
                let cmd = cmd.args(["--filter", "type=container", "--filter", &label]);
                let cmd = match since {
                    Some(t) => cmd.args(["--since", &docker::unix_time_nanos(t)]),
                    None => cmd,
                };
                cmd.args(["--format", "{{json .}}"])
            }
            Kind::Podman => {
                let cmd = cmd.args(["--filter", "type=container", "--filter", &label]);
                let cmd = match since {
                    Some(t) => cmd.args(["--since", &podman::since(t)]),
                    None => cmd,
                };
                cmd.args(["--format", "json"])
            }
            Kind::Nerdctl => cmd.args(["--format", "{{json .}}"]),
        };
        cmd.not_cancellable()
    }

    /// Whether the engine can replay past events (`--since`): Docker and podman can.
    pub fn replays(&self) -> bool {
        self.kind != Kind::Nerdctl
    }

    pub fn parse_event(&self, line: &str) -> Option<ContainerEvent> {
        match self.kind {
            Kind::Docker => docker::parse_event(line),
            Kind::Podman => podman::parse_event(line),
            Kind::Nerdctl => nerdctl::parse_event(line),
        }
    }

    /// What the engine's current run still holds of one container's exits since `since`
    /// (nanoseconds, its clock; the caller keeps those until its own bound): Docker's ring is
    /// emptied when the daemon restarts, podman's log lives on tmpfs (its `tmp_dir`), so an exit
    /// found here happened while this engine ran. `None`: nerdctl cannot replay. (podman 4.3's
    /// `--until` ends the read at once with the file backend: the bound is kept by the caller.)
    pub fn past_exits(&self, container: &str, since: u128, until: u128) -> Option<Cmd> {
        let cmd = self.cli().arg("events");
        let cmd = match self.kind {
            Kind::Docker => cmd
                .args(["--filter", "type=container", "--filter", &format!("container={container}")])
                .args(["--filter", "event=die", "--since", &docker::unix_time_nanos(since)])
                .args(["--until", &docker::unix_time_nanos(until), "--format", "{{json .}}"]),
            Kind::Podman => cmd
                .args(["--stream=false", "--filter", "type=container"])
                .args(["--filter", &format!("container={container}"), "--filter", "event=died"])
                .args(["--since", &podman::since(since), "--format", "json"]),
            Kind::Nerdctl => return None,
        };
        Some(cmd.deadline(Duration::from_secs(20)))
    }

    /// `image inspect`: exit 0 when the image is present locally.
    pub fn image_present(&self, image: &str) -> Cmd {
        self.cli()
            .args(["image", "inspect", "--format", "{{.Id}}", &self.image_name(image)])
            .deadline(Duration::from_secs(30))
    }

    /// Every image of the host's store as `repository:tag`, one a line.
    pub fn image_list(&self) -> Cmd {
        self.cli()
            .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
            .deadline(Duration::from_secs(30))
    }

    /// An image by the name the engine keeps it under. The kubelet's containerd resolves a
    /// short name as Docker does (`postgres:16` is `docker.io/library/postgres:16`); podman
    /// resolves short names by its registries.conf (and names an image it built
    /// `localhost/…`), so podman is given the full name the node will be asked for.
    pub fn image_name(&self, image: &str) -> String {
        match self.kind {
            Kind::Podman => qualified(image),
            Kind::Docker | Kind::Nerdctl => image.to_string(),
        }
    }

    /// Docker only: the daemon's platform (`linux/amd64`, `linux/arm64`) and its API version.
    pub fn server_platform(&self) -> Cmd {
        self.cli()
            .args(["version", "--format", "{{.Server.Os}}/{{.Server.Arch}} {{.Server.APIVersion}}"])
            .deadline(Duration::from_secs(20))
    }

    /// Docker only: `info`'s storage driver status (the containerd image store shows
    /// `io.containerd.snapshotter`).
    pub fn driver_status(&self) -> Cmd {
        self.cli().args(["info", "--format", "{{json .DriverStatus}}"]).deadline(Duration::from_secs(20))
    }

    /// The clusters kind finds on this engine (one a line; "No kind clusters found." on stderr).
    pub fn kind_get_clusters(&self) -> Cmd {
        self.kind_cli().args(["get", "clusters"]).deadline(Duration::from_secs(30))
    }
}

/// The order kind brings a cluster's node containers up in: control planes first (the API the
/// others join), then the external load balancer, then the workers.
pub fn start_order(nodes: &mut [Node]) {
    let rank = |n: &Node| match n.role.as_str() {
        "control-plane" => 0,
        "external-load-balancer" => 1,
        _ => 2,
    };
    nodes.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name)));
}

/// `<engine> -v`: kind's probe of an engine (`providers/*/util.go` `IsAvailable`).
fn probe(program: &str) -> Cmd {
    Cmd::new(program).arg("-v").deadline(Duration::from_secs(10))
}

/// A reference with its registry and Docker Hub's `library/` as the kubelet resolves it:
/// `postgres:16` → `docker.io/library/postgres:16`, `bitnami/kafka:3` →
/// `docker.io/bitnami/kafka:3`, `quay.io/keycloak/keycloak:26` unchanged (a first part with a
/// `.` or `:`, or `localhost`, is a registry: docker/distribution `reference/normalize.go`).
pub fn qualified(image: &str) -> String {
    let image = image.trim();
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            image.to_string()
        }
        Some(_) => format!("docker.io/{image}"),
        None => format!("docker.io/library/{image}"),
    }
}

/// An image reference as `<engine> image ls` shows it: `docker.io/` and `library/` dropped.
pub fn short_ref(name: &str) -> String {
    let name = name.trim();
    name.strip_prefix("docker.io/").unwrap_or(name).trim_start_matches("library/").to_string()
}

/// One name per line: `kind get clusters` ("No kind clusters found." goes to stderr) and
/// `<engine> ps --format '{{.Names}}'` print them so.
pub fn parse_names(stdout: &str) -> std::collections::BTreeSet<String> {
    stdout.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// The engine's changes: only `steps/` (and the watcher's heal, through them) make one.
///
/// The read half has none of these commands, nothing outside the crate can make one, and the
/// read-only context carries none: each of these fails to compile (the doc tests check that
/// they do).
///
/// ```compile_fail,E0599
/// fn reader(engine: &bookstore::engine::Engine) {
///     let _ = engine.start("bookstore-control-plane");
/// }
/// ```
///
/// ```compile_fail,E0624
/// fn reader(engine: &bookstore::engine::Engine) {
///     let _ = engine.write();
/// }
/// ```
///
/// ```compile_fail,E0609
/// fn reader(ctx: &bookstore::observe::Ctx) {
///     let _ = &ctx.engine_write;
/// }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct EngineWrite<'a> {
    engine: &'a Engine,
}

impl Engine {
    /// The change half. Only the steps call this (a tidy test holds that no read-only room
    /// names it).
    pub(crate) fn write(&self) -> EngineWrite<'_> {
        EngineWrite { engine: self }
    }
}

impl EngineWrite<'_> {
    /// `start`: a stopped node container runs again (its kubelet restarts every pod in place).
    pub fn start(&self, container: &str) -> Cmd {
        self.engine.cli().args(["start", container]).deadline(Duration::from_secs(120))
    }

    pub fn rm_force(&self, names: &[String]) -> Cmd {
        self.engine.cli().args(["rm", "-f"]).args(names.iter().cloned()).deadline(Duration::from_secs(60))
    }

    /// `pull -q`: the image into the host's store.
    pub fn pull(&self, image: &str) -> Cmd {
        self.engine
            .cli()
            .args(["pull", "-q", &self.engine.image_name(image)])
            .deadline(Duration::from_secs(1800))
    }

    pub fn build(&self, image: &str, context: &str) -> Cmd {
        self.engine
            .cli()
            .args(["build", "-t", &self.engine.image_name(image), context])
            .deadline(Duration::from_secs(1800))
    }

    /// The images into one archive kind loads (`kind load image-archive`): podman needs
    /// `--multi-image-archive` for more than one.
    pub fn save(&self, images: &[String], archive: &str) -> Cmd {
        let cmd = self.engine.cli().arg("save");
        let cmd = if self.engine.kind == Kind::Podman { cmd.arg("--multi-image-archive") } else { cmd };
        cmd.args(["-o", archive])
            .args(images.iter().map(|i| self.engine.image_name(i)))
            .deadline(Duration::from_secs(600))
    }

    /// Docker only: `image save --platform <os/arch>`: only that platform's manifest (Docker API
    /// ≥ 1.48), which the node's `ctr images import --all-platforms` accepts under the
    /// containerd image store.
    pub fn save_platform(&self, images: &[String], platform: &str, archive: &str) -> Cmd {
        self.engine
            .cli()
            .args(["image", "save", "--platform", platform, "-o", archive])
            .args(images.iter().cloned())
            .deadline(Duration::from_secs(600))
    }

    /// `kind create cluster` with the config on stdin (`--config -`), so the embedded default works.
    pub fn kind_create_cluster(&self, name: &str, config: &str, wait: Duration) -> Cmd {
        self.engine
            .kind_cli()
            .args(["create", "cluster", "--name", name, "--config", "-"])
            .arg(format!("--wait={}s", wait.as_secs()))
            .stdin(config, "the cluster config")
            .deadline(wait + Duration::from_secs(600))
    }

    /// `kind load docker-image`: kind saves the images with `docker save` (whatever its provider:
    /// `pkg/cmd/kind/load/docker-image/docker-image.go` runs `docker image inspect` and `docker
    /// save`) and imports the archive into each node with `ctr images import --all-platforms
    /// --digests`, skipping images the node already has. Docker's route; the others save with
    /// their own CLI and load the archive.
    pub fn kind_load_images(&self, images: &[String], cluster: &str) -> Cmd {
        self.engine
            .kind_cli()
            .args(["load", "docker-image"])
            .args(images.iter().cloned())
            .args(["--name", cluster])
            .deadline(Duration::from_secs(900))
    }

    /// `kind load image-archive`: the archive into every node, found through the engine.
    pub fn kind_load_archive(&self, archive: &str, cluster: &str) -> Cmd {
        self.engine
            .kind_cli()
            .args(["load", "image-archive", archive, "--name", cluster])
            .deadline(Duration::from_secs(900))
    }

    pub fn kind_delete_cluster(&self, name: &str) -> Cmd {
        self.engine.kind_cli().args(["delete", "cluster", "--name", name]).deadline(Duration::from_secs(300))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_engine_is_called_as_its_cli_wants() {
        let docker = Engine::of(Kind::Docker);
        let podman = Engine::of(Kind::Podman);
        let nerdctl = Engine { program: "finch".into(), ..Engine::of(Kind::Nerdctl) };
        assert_eq!(
            docker.ps_cluster("c").to_string(),
            "docker ps -a --filter label=io.x-k8s.kind.cluster=c --format '{{json .}}'"
        );
        assert_eq!(
            podman.ps_cluster("c").to_string(),
            "podman ps -a --filter label=io.x-k8s.kind.cluster=c --format json"
        );
        assert_eq!(nerdctl.events("c", Some(5)).to_string(), "finch events --format '{{json .}}'");
        assert!(!nerdctl.replays() && nerdctl.past_exits("n", 1, 2).is_none());
        assert_eq!(
            podman.events("c", Some(1_796_698_578_000_000_000)).to_string(),
            "podman events --filter type=container --filter label=io.x-k8s.kind.cluster=c --since 2026-12-08T02:56:18.000000000Z --format json"
        );
        assert_eq!(
            docker.events("c", Some(10_000_000_005)).to_string(),
            "docker events --filter type=container --filter label=io.x-k8s.kind.cluster=c --since 10.000000005 --format '{{json .}}'"
        );
        // kind runs the engine itself: told which one, and Docker's context.
        assert_eq!(
            podman.write().kind_load_archive("/t/a.tar", "c").to_string(),
            "KIND_EXPERIMENTAL_PROVIDER=podman kind load image-archive /t/a.tar --name c"
        );
        let pinned = Engine {
            endpoint: Some(Ok(Endpoint {
                context: Some("colima".into()),
                host: "unix:///c.sock".into(),
                tls: false,
                from: "the docker config's current context".into(),
            })),
            ..Engine::of(Kind::Docker)
        };
        assert_eq!(pinned.write().start("n").to_string(), "docker --context colima start n");
        assert_eq!(pinned.kind_get_clusters().to_string(), "DOCKER_CONTEXT=colima kind get clusters");
        assert_eq!(docker.kind_get_clusters().to_string(), "kind get clusters");
        assert!(pinned.summary().contains("context colima (unix:///c.sock)"), "{}", pinned.summary());
        assert_eq!(
            podman.write().save(&["postgres:16".into(), "bookstore/ui:dev".into()], "/t/a.tar").to_string(),
            "podman save --multi-image-archive -o /t/a.tar docker.io/library/postgres:16 docker.io/bookstore/ui:dev"
        );
    }

    #[test]
    fn images_are_named_as_the_kubelet_resolves_them() {
        assert_eq!(qualified("postgres:16"), "docker.io/library/postgres:16");
        assert_eq!(qualified("bitnami/kafka:3"), "docker.io/bitnami/kafka:3");
        assert_eq!(qualified("quay.io/keycloak/keycloak:26"), "quay.io/keycloak/keycloak:26");
        assert_eq!(qualified("localhost:5000/x:1"), "localhost:5000/x:1");
        assert_eq!(short_ref("docker.io/library/postgres:16"), "postgres:16");
        assert_eq!(short_ref("docker.io/istio/pilot:1.26.0"), "istio/pilot:1.26.0");
        assert_eq!(short_ref("quay.io/keycloak/keycloak:26"), "quay.io/keycloak/keycloak:26");
    }

    #[test]
    fn cluster_names_one_per_line() {
        let names = parse_names("bookstore\nother\n\n");
        assert!(names.contains("bookstore") && names.contains("other") && names.len() == 2);
    }

    #[test]
    fn an_event_is_about_a_node_by_name_or_by_id() {
        let e = ContainerEvent {
            action: "die".into(),
            name: String::new(),
            id: "abc".into(),
            time_nano: 1,
            exit_code: None,
        };
        assert!(e.is_about("n", "abc") && !e.is_about("n", "abd") && !e.is_about("n", ""));
        let named = ContainerEvent { name: "n".into(), id: String::new(), ..e };
        assert!(named.is_about("n", "x") && !named.is_about("m", "x"));
    }
}
