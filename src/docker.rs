//! Typed `docker` and `kind` commands, and parsers for what they print.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::exec::Cmd;

/// Docker's liveness probe: `docker version --format '{{.Server.Version}}'` fails whenever the
/// daemon does not answer, on every CLI release (docker/cli `cli/command/system/version.go`
/// returns the server's error: v27.5.1 `:190-193`, HEAD `:222-229`). `docker info --format`
/// does not: before 28.1 it prints the error on stderr and exits 0 (v27.5.1
/// `cli/command/system/info.go:102-123`), and from 28.1 it still does for any error that is
/// not a failure to connect (`addServerInfo`).
pub fn server_version() -> Cmd {
    Cmd::new("docker").args(["version", "--format", "{{.Server.Version}}"]).deadline(Duration::from_secs(20))
}

/// What the probe printed says the daemon answered (its version; never empty when it did).
pub fn answered(stdout: &str) -> bool {
    !stdout.trim().is_empty()
}

/// The docker CLI's words for a daemon it cannot reach, every release's: `Cannot connect to the
/// Docker daemon at …` (a socket that refuses, a timeout; moby `client/errors.go:35-41`), docker
/// 29's `failed to connect to the docker API at …` (a socket file that does not exist, a DNS
/// failure; `client/request.go:173-181`), `permission denied while trying to connect to the
/// Docker daemon socket` (before 29) / `… to the docker API` (29, `request.go:171`), and
/// `error during connect` (Windows pipes, ssh).
pub fn unreachable(stderr: &str) -> bool {
    [
        "Cannot connect to the Docker daemon",
        "failed to connect to the docker API",
        "permission denied while trying to connect to the Docker daemon",
        "permission denied while trying to connect to the docker API",
        "error during connect",
    ]
    .iter()
    .any(|words| stderr.contains(words))
}

/// The Docker endpoint the CLI would use here (`DOCKER_HOST`, else the context `DOCKER_CONTEXT`
/// or the config names), with what it needs besides its address: `docker context inspect` works
/// without a daemon.
pub fn context_inspect() -> Cmd {
    Cmd::new("docker")
        .args(["context", "inspect", "--format", "{{json .}}"])
        .deadline(Duration::from_secs(20))
}

/// A context as `docker context inspect --format '{{json .}}'` prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub name: String,
    /// `unix:///…`, `tcp://…`, `ssh://…`, `npipe://…`.
    pub host: String,
    /// The context keeps TLS material (or skips verification): its address alone is not enough.
    pub tls: bool,
}

pub fn parse_context(stdout: &str) -> Result<Context, String> {
    let v: Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("docker context inspect printed invalid JSON: {e}"))?;
    let host = v.pointer("/Endpoints/docker/Host").and_then(Value::as_str).unwrap_or("");
    if host.is_empty() {
        return Err("docker context inspect names no Docker endpoint".into());
    }
    let material = v.get("TLSMaterial").and_then(Value::as_object).is_some_and(|m| !m.is_empty());
    let skip = v.pointer("/Endpoints/docker/SkipTLSVerify").and_then(Value::as_bool).unwrap_or(false);
    Ok(Context {
        name: v.get("Name").and_then(Value::as_str).unwrap_or("").to_string(),
        host: host.to_string(),
        tls: material || skip,
    })
}

/// The socket file of a `unix://` endpoint.
pub fn socket_path(host: &str) -> Option<std::path::PathBuf> {
    host.strip_prefix("unix://").filter(|p| !p.is_empty()).map(std::path::PathBuf::from)
}

/// `docker start`: a stopped node container runs again (its kubelet restarts every pod in place).
pub fn start(container: &str) -> Cmd {
    Cmd::new("docker").args(["start", container]).deadline(Duration::from_secs(120))
}

/// The order kind brings a cluster's node containers up in: control planes first (the API the
/// others join), then the external load balancer, then the workers.
pub fn start_order(nodes: &mut [Listed]) {
    let rank = |n: &Listed| match n.role() {
        "control-plane" => 0,
        "external-load-balancer" => 1,
        _ => 2,
    };
    nodes.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name)));
}

/// Replay what the daemon still holds of one container's `die` events in `[since, until]`
/// (Unix times on Docker's own clock): the daemon's ring is emptied when it restarts, so a `die`
/// found here happened while this daemon ran.
pub fn past_dies(container: &str, since: &str, until: &str) -> Cmd {
    Cmd::new("docker")
        .args(["events", "--filter", "type=container", "--filter", &format!("container={container}")])
        .args(["--filter", "event=die", "--since", since, "--until", until, "--format", "{{json .}}"])
        .deadline(Duration::from_secs(20))
}

pub fn inspect(container: &str) -> Cmd {
    Cmd::new("docker").args(["inspect", "--type", "container", container]).deadline(Duration::from_secs(20))
}

/// Docker's event stream for the containers of a kind cluster, one JSON object a line, from
/// `since` (a Unix time, `1764156639.123456789`) when given: the daemon replays what it still has
/// since then. Runs until stopped or Docker goes away (`unexpected EOF`, exit 1).
pub fn events(cluster: &str, since: Option<&str>) -> Cmd {
    let mut cmd = Cmd::new("docker").args(["events", "--filter", "type=container"]);
    cmd = cmd.args(["--filter", &format!("label=io.x-k8s.kind.cluster={cluster}")]);
    if let Some(t) = since {
        cmd = cmd.args(["--since", t]);
    }
    cmd.args(["--format", "{{json .}}"]).not_cancellable()
}

/// Containers with exactly these names (the legacy socat proxies), running or not.
pub fn ps_named(names: &[String]) -> Cmd {
    let mut cmd = Cmd::new("docker").args(["ps", "-a"]);
    for name in names {
        cmd = cmd.args(["--filter", &format!("name=^{name}$")]);
    }
    cmd.args(["--format", "{{.Names}}"]).deadline(Duration::from_secs(20))
}

/// Every container of a kind cluster, running or not, one JSON object a line.
pub fn ps_cluster(cluster: &str) -> Cmd {
    Cmd::new("docker")
        .args(["ps", "-a", "--filter", &format!("label=io.x-k8s.kind.cluster={cluster}")])
        .args(["--format", "{{json .}}"])
        .deadline(Duration::from_secs(20))
}

/// Every running container with its published ports, one JSON object a line.
pub fn ps_running() -> Cmd {
    Cmd::new("docker").args(["ps", "--format", "{{json .}}"]).deadline(Duration::from_secs(20))
}

/// A container as `docker ps --format '{{json .}}'` prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    /// `running`, `exited`, `created`, …
    pub state: String,
    /// `Up 2 minutes`, `Exited (137) 5 seconds ago`, …
    pub status: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Published ports: (host address, host port, container port).
    pub published: Vec<(String, u16, u16)>,
}

impl Listed {
    pub fn running(&self) -> bool {
        self.state == "running"
    }

    /// kind's node role label (`control-plane`, `worker`, `external-load-balancer`).
    pub fn role(&self) -> &str {
        self.labels.get("io.x-k8s.kind.role").map(String::as_str).unwrap_or("")
    }
}

pub fn parse_ps(stdout: &str) -> Result<Vec<Listed>, String> {
    let mut out = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("docker ps printed a line that is not JSON: {e}"))?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let labels = text("Labels")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
            .collect();
        out.push(Listed {
            name: text("Names"),
            state: text("State"),
            status: text("Status"),
            labels,
            published: parse_ports(&text("Ports")),
        });
    }
    Ok(out)
}

/// `127.0.0.1:30000->30000/tcp, [::]:80-81->80-81/tcp, 8083/tcp` → the published ones.
pub fn parse_ports(text: &str) -> Vec<(String, u16, u16)> {
    let range = |r: &str| -> Option<(u16, u16)> {
        match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => r.parse().ok().map(|p| (p, p)),
        }
    };
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let Some((host, container)) = entry.split_once("->") else { continue };
        let Some((address, ports)) = host.rsplit_once(':') else { continue };
        let container = container.split('/').next().unwrap_or("");
        let (Some((h0, h1)), Some((c0, _))) = (range(ports), range(container)) else { continue };
        let address = address.trim_start_matches('[').trim_end_matches(']');
        let address = if address.is_empty() { "::" } else { address };
        for (i, h) in (h0..=h1).enumerate() {
            out.push((address.to_string(), h, c0.saturating_add(i as u16)));
        }
    }
    out
}

pub fn rm_force(names: &[String]) -> Cmd {
    Cmd::new("docker").args(["rm", "-f"]).args(names.iter().cloned()).deadline(Duration::from_secs(60))
}

/// `docker image inspect`: exit 0 when the image is present locally.
pub fn image_present(image: &str) -> Cmd {
    Cmd::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .deadline(Duration::from_secs(30))
}

/// Every image of the host's store as `repository:tag`, one a line.
pub fn image_list() -> Cmd {
    Cmd::new("docker")
        .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
        .deadline(Duration::from_secs(30))
}

/// An image reference as `docker image ls` shows it: `docker.io/` and `library/` dropped.
pub fn short_ref(name: &str) -> String {
    let name = name.trim();
    name.strip_prefix("docker.io/").unwrap_or(name).trim_start_matches("library/").to_string()
}

/// `docker pull -q`: the image into the host's store (its reference on stdout).
pub fn pull(image: &str) -> Cmd {
    Cmd::new("docker").args(["pull", "-q", image]).deadline(Duration::from_secs(1800))
}

pub fn build(image: &str, context: &str) -> Cmd {
    Cmd::new("docker").args(["build", "-t", image, context]).deadline(Duration::from_secs(1800))
}

/// `docker image save --platform <os/arch>`: only that platform's manifest (Docker API ≥ 1.48),
/// which the node's `ctr images import --all-platforms` accepts under the containerd image store.
pub fn save_platform(images: &[String], platform: &str, archive: &str) -> Cmd {
    Cmd::new("docker")
        .args(["image", "save", "--platform", platform, "-o", archive])
        .args(images.iter().cloned())
        .deadline(Duration::from_secs(600))
}

/// The daemon's platform (`linux/amd64`, `linux/arm64`): kind's node containers run natively on
/// it, so it is the node's platform too; and its API version.
pub fn server_platform() -> Cmd {
    Cmd::new("docker")
        .args(["version", "--format", "{{.Server.Os}}/{{.Server.Arch}} {{.Server.APIVersion}}"])
        .deadline(Duration::from_secs(20))
}

/// `linux/amd64 1.50` → (`linux/amd64`, `1.50`).
pub fn parse_server_platform(stdout: &str) -> (String, String) {
    let mut words = stdout.split_whitespace();
    (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string())
}

/// An API version (`1.47`) at least `major.minor`.
pub fn api_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// `docker info`'s storage driver status: the containerd image store (Docker Desktop's default
/// since 4.34, and Docker 29's) shows `io.containerd.snapshotter`.
pub fn driver_status() -> Cmd {
    Cmd::new("docker").args(["info", "--format", "{{json .DriverStatus}}"]).deadline(Duration::from_secs(20))
}

pub fn uses_containerd_store(driver_status: &str) -> bool {
    driver_status.contains("io.containerd.snapshotter")
}

/// The CLI's refusal of `save --platform`: a daemon older than API 1.48 (Docker 27), or a CLI
/// older than 28.
pub fn lacks_platform_save(stderr: &str) -> bool {
    stderr.contains("requires API version 1.48") || stderr.contains("unknown flag: --platform")
}

/// `kind create cluster` with the config on stdin (`--config -`), so the embedded default works.
pub fn kind_create_cluster(name: &str, config: crate::secret::Secret, wait: Duration) -> Cmd {
    Cmd::new("kind")
        .args(["create", "cluster", "--name", name, "--config", "-"])
        .arg(format!("--wait={}s", wait.as_secs()))
        .stdin(config)
        .deadline(wait + Duration::from_secs(600))
}

/// `kind load docker-image`: kind saves the images with `docker save` and imports the archive
/// into the node with `ctr images import --all-platforms --digests`, skipping images the node
/// already has (kubernetes-sigs/kind `pkg/cmd/kind/load/docker-image/docker-image.go`).
pub fn kind_load_images(images: &[String], cluster: &str) -> Cmd {
    Cmd::new("kind")
        .args(["load", "docker-image"])
        .args(images.iter().cloned())
        .args(["--name", cluster])
        .deadline(Duration::from_secs(900))
}

pub fn kind_load_archive(archive: &str, cluster: &str) -> Cmd {
    Cmd::new("kind")
        .args(["load", "image-archive", archive, "--name", cluster])
        .deadline(Duration::from_secs(900))
}

pub fn istioctl_version() -> Cmd {
    Cmd::new("istioctl").args(["version", "--remote=false"]).deadline(Duration::from_secs(30))
}

/// ztunnel's admin config dump on one node, read-only: istioctl port-forwards to the ztunnel
/// pod's admin port 15000, which listens on localhost only (ztunnel `src/config.rs`), so the API
/// server's pod proxy cannot reach it. `--node` finds the pod of the DaemonSet named `ztunnel`
/// in `--istio-namespace` on that node (istioctl `ztunnelconfig.go` `PodOnNodeFromDaemonset`).
pub fn istioctl_ztunnel_config(context: &str, namespace: &str, node: &str) -> Cmd {
    Cmd::new("istioctl")
        .args(["ztunnel-config", "all", "--node", node, "--istio-namespace", namespace])
        .args(["--context", context, "-o", "json"])
        .deadline(Duration::from_secs(20))
}

/// `istioctl install` with the stack's flags (`bootstrap.istio.install`, said once for this and
/// `istioctl_manifest`), on the cluster's context, without asking.
pub fn istioctl_install(context: &str, flags: &[String]) -> Cmd {
    Cmd::new("istioctl")
        .args(["install", "--context", context])
        .args(flags.iter().cloned())
        .arg("--skip-confirmation")
        .deadline(Duration::from_secs(900))
}

/// `istioctl manifest generate` with the same flags: what the install would apply (read-only,
/// no cluster needed), the images of its workloads among it.
pub fn istioctl_manifest(flags: &[String]) -> Cmd {
    Cmd::new("istioctl")
        .args(["manifest", "generate"])
        .args(flags.iter().cloned())
        .deadline(Duration::from_secs(120))
}

pub fn kind_get_clusters() -> Cmd {
    Cmd::new("kind").args(["get", "clusters"]).deadline(Duration::from_secs(30))
}

pub fn kind_delete_cluster(name: &str) -> Cmd {
    Cmd::new("kind").args(["delete", "cluster", "--name", name]).deadline(Duration::from_secs(300))
}

/// One name per line: `kind get clusters` ("No kind clusters found." goes to stderr) and
/// `docker ps --format '{{.Names}}'` print them so.
pub fn parse_names(stdout: &str) -> BTreeSet<String> {
    stdout.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// What `docker inspect` says about a kind node container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub running: bool,
    pub status: String,
    /// `State.StartedAt` (seconds since the epoch): new after every start of the container (a
    /// Docker restart, `docker restart`, a reboot); `None` if it never started.
    pub started_at: Option<u64>,
    /// `State.StartedAt` as Docker prints it (nanoseconds): two starts within a second differ.
    pub started: String,
    /// `State.FinishedAt` as Docker prints it (`0001-01-01T00:00:00Z` if it never stopped).
    pub finished: String,
    /// `State.ExitCode`.
    pub exit_code: i64,
    /// Its `io.x-k8s.kind.cluster` label: the kind cluster it is a node of (what `kind get
    /// clusters` lists).
    pub kind_cluster: Option<String>,
    /// (containerPort, hostIp, hostPort) from HostConfig.PortBindings.
    pub bindings: Vec<(u16, String, u16)>,
}

pub fn parse_inspect(stdout: &str) -> Result<Node, String> {
    let doc: Value =
        serde_json::from_str(stdout).map_err(|e| format!("docker inspect printed invalid JSON: {e}"))?;
    let c = doc.as_array().and_then(|a| a.first()).ok_or("docker inspect printed no container")?;
    let running = c.pointer("/State/Running").and_then(Value::as_bool).unwrap_or(false);
    let status = c.pointer("/State/Status").and_then(Value::as_str).unwrap_or("unknown").to_string();
    let started = c.pointer("/State/StartedAt").and_then(Value::as_str).unwrap_or("").to_string();
    let finished = c.pointer("/State/FinishedAt").and_then(Value::as_str).unwrap_or("").to_string();
    let exit_code = c.pointer("/State/ExitCode").and_then(Value::as_i64).unwrap_or(0);
    let started_at = crate::utc::parse(&started);
    let kind_cluster =
        c.pointer("/Config/Labels/io.x-k8s.kind.cluster").and_then(Value::as_str).map(String::from);
    let mut bindings = Vec::new();
    if let Some(map) = c.pointer("/HostConfig/PortBindings").and_then(Value::as_object) {
        for (key, list) in map {
            let Some(port) = key.split('/').next().and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            for b in list.as_array().into_iter().flatten() {
                let ip = b.get("HostIp").and_then(Value::as_str).unwrap_or("").to_string();
                let host =
                    b.get("HostPort").and_then(Value::as_str).and_then(|p| p.parse().ok()).unwrap_or(0);
                bindings.push((port, ip, host));
            }
        }
    }
    bindings.sort();
    Ok(Node { running, status, started_at, started, finished, exit_code, kind_cluster, bindings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_reads_state_and_bindings() {
        let doc = r#"[{"State": {"Running": true, "Status": "running", "StartedAt": "2026-12-01T08:35:19.454939593Z"},
            "HostConfig": {"PortBindings": {"30000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "30000"}],
                                             "6443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41234"}]}}}]"#;
        let node = parse_inspect(doc).unwrap();
        assert!(node.running);
        assert_eq!(node.started, "2026-12-01T08:35:19.454939593Z");
        assert_eq!(node.bindings, [(6443, "127.0.0.1".into(), 41234), (30000, "127.0.0.1".into(), 30000)]);
        assert!(parse_inspect("[]").is_err());
        assert!(parse_inspect("{").is_err());
    }

    #[test]
    fn docker_ps_json_lines_give_state_role_and_published_ports() {
        let out = concat!(
            r#"{"Names":"bookstore-control-plane","State":"exited","Status":"Exited (137) 5 seconds ago","#,
            r#""Labels":"io.x-k8s.kind.cluster=bookstore,io.x-k8s.kind.role=control-plane","#,
            r#""Ports":"127.0.0.1:41234->6443/tcp, 127.0.0.1:30000->30000/tcp"}"#,
            "\n",
            r#"{"Names":"kiali-proxy","State":"running","Status":"Up 1 hour","Labels":"","#,
            r#""Ports":"0.0.0.0:32100->32100/tcp, :::32100->32100/tcp, 8080/tcp, [::1]:9000-9001->90-91/tcp"}"#,
        );
        let listed = parse_ps(out).unwrap();
        assert_eq!(listed[0].role(), "control-plane");
        assert!(!listed[0].running());
        assert_eq!(listed[0].published[1], ("127.0.0.1".into(), 30000, 30000));
        assert!(listed[1].running());
        assert_eq!(
            listed[1].published,
            [
                ("0.0.0.0".into(), 32100, 32100),
                ("::".into(), 32100, 32100),
                ("::1".into(), 9000, 90),
                ("::1".into(), 9001, 91)
            ]
        );
        assert!(parse_ps("not json").is_err());
        assert!(parse_ps("").unwrap().is_empty());
    }

    #[test]
    fn the_daemons_platform_and_api() {
        assert_eq!(parse_server_platform("linux/arm64 1.47\n"), ("linux/arm64".into(), "1.47".into()));
        assert!(api_at_least("1.48", 1, 48) && api_at_least("1.50", 1, 48) && api_at_least("2.0", 1, 48));
        assert!(!api_at_least("1.47", 1, 48) && !api_at_least("", 1, 48));
        assert_eq!(short_ref("docker.io/library/postgres:16"), "postgres:16");
        assert_eq!(short_ref("docker.io/istio/pilot:1.26.0"), "istio/pilot:1.26.0");
        assert_eq!(short_ref("quay.io/keycloak/keycloak:26"), "quay.io/keycloak/keycloak:26");
    }

    #[test]
    fn cluster_names_one_per_line() {
        let names = parse_names("bookstore\nother\n\n");
        assert!(names.contains("bookstore") && names.contains("other") && names.len() == 2);
    }
}
