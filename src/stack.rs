//! The stack as data: `infra/stack.yaml`, the kind cluster config it names, and the connector
//! files. Loaded and validated once, before anything runs; a bad file is an input error that
//! changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The default stack, embedded so the binary works from any directory.
const EMBEDDED: &[(&str, &str)] = &[
    ("stack.yaml", include_str!("../infra/stack.yaml")),
    ("kind/cluster.yaml", include_str!("../infra/kind/cluster.yaml")),
    (
        "debezium/connectors/ecom-connector.json",
        include_str!("../infra/debezium/connectors/ecom-connector.json"),
    ),
    (
        "debezium/connectors/inventory-connector.json",
        include_str!("../infra/debezium/connectors/inventory-connector.json"),
    ),
];

/// Where the stack files come from.
#[derive(Clone, Debug)]
pub enum Source {
    Embedded,
    /// `--stack FILE`: the file and its directory, against which relative paths resolve.
    File(PathBuf),
}

impl Source {
    fn read(&self, rel: &str) -> Result<String> {
        match self {
            Source::Embedded => {
                EMBEDDED.iter().find(|(name, _)| *name == rel).map(|(_, text)| text.to_string()).ok_or_else(
                    || {
                        Error::input(
                            "stack file (embedded default)",
                            format!("names `{rel}`, which is not embedded; pass --stack infra/stack.yaml"),
                        )
                    },
                )
            }
            Source::File(stack) => {
                let path = if rel == "stack.yaml" {
                    stack.clone()
                } else {
                    stack.parent().unwrap_or(Path::new(".")).join(rel)
                };
                std::fs::read_to_string(&path)
                    .map_err(|e| Error::input(format!("file {}", path.display()), e.to_string()))
            }
        }
    }

    pub fn describe(&self, rel: &str) -> String {
        match self {
            Source::Embedded => format!("{rel} (embedded)"),
            Source::File(stack) if rel == "stack.yaml" => stack.display().to_string(),
            Source::File(stack) => stack.parent().unwrap_or(Path::new(".")).join(rel).display().to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Database,
    App,
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub role: Role,
    pub needs: Vec<String>,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Mesh {
    pub namespace: String,
    pub daemonset: String,
    pub timeout: Duration,
    pub settle: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    /// `None` when kind or Docker picks the port (`hostPort` 0, unset, or -1).
    pub host_port: Option<u16>,
    pub listen_address: String,
    pub protocol: String,
}

#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    pub control_planes: usize,
    pub ports: Vec<PortMapping>,
}

impl Cluster {
    pub fn context(&self) -> String {
        format!("kind-{}", self.name)
    }

    pub fn control_plane_container(&self) -> String {
        format!("{}-control-plane", self.name)
    }

    /// The host port mapped to a node port, or an input error naming the config.
    pub fn host_port(&self, container_port: u16) -> Result<u16> {
        let mapping = self.ports.iter().find(|m| m.container_port == container_port);
        match mapping.and_then(|m| m.host_port) {
            Some(port) => Ok(port),
            None => Err(Error::input(
                "cluster config",
                format!(
                    "no fixed hostPort for containerPort {container_port} in extraPortMappings \
                     (add `- containerPort: {container_port}` with `hostPort: {container_port}`)"
                ),
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Connector {
    pub name: String,
    /// The flat config from the file (the `config` object of the `{"name","config"}` wrapper).
    pub config: BTreeMap<String, String>,
    pub user_key: String,
    pub password_key: String,
    pub needs: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Connect {
    pub workload: String,
    pub port: u16,
    pub timeout: Duration,
    pub secret_namespace: String,
    pub secret_name: String,
    pub connectors: Vec<Connector>,
}

#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub port: u16,
    pub host: Option<String>,
    pub path: String,
    pub serves: Option<String>,
    pub connectors_running: bool,
}

#[derive(Clone, Debug)]
pub struct Smoke {
    pub timeout: Duration,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug)]
pub struct Stack {
    pub cluster: Cluster,
    pub api_timeout: Duration,
    pub mesh: Mesh,
    pub workloads: Vec<Workload>,
    pub connect: Connect,
    pub smoke: Smoke,
    pub legacy_proxies: Vec<String>,
}

// ---- the file formats -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StackFile {
    cluster: String,
    #[serde(default = "default_api_timeout")]
    api_timeout: String,
    mesh: MeshFile,
    workloads: Vec<WorkloadFile>,
    connect: ConnectFile,
    smoke: SmokeFile,
    #[serde(default)]
    legacy_proxies: Vec<String>,
}

fn default_api_timeout() -> String {
    "60s".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeshFile {
    namespace: String,
    daemonset: String,
    timeout: String,
    settle: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    name: String,
    namespace: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    needs: Vec<String>,
    timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectFile {
    workload: String,
    port: u16,
    timeout: String,
    secret: SecretRefFile,
    connectors: Vec<ConnectorRefFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRefFile {
    namespace: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectorRefFile {
    file: String,
    user_key: String,
    password_key: String,
    #[serde(default)]
    needs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmokeFile {
    timeout: String,
    checks: Vec<CheckFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFile {
    name: String,
    port: u16,
    #[serde(default)]
    host: Option<String>,
    path: String,
    #[serde(default)]
    serves: Option<String>,
    #[serde(default)]
    connectors_running: bool,
}

/// kind's `Cluster` (kind.x-k8s.io/v1alpha4): only the fields `bookstore` reads.
#[derive(Deserialize)]
struct KindCluster {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    nodes: Vec<KindNode>,
}

#[derive(Deserialize)]
struct KindNode {
    role: String,
    #[serde(default, rename = "extraPortMappings")]
    extra_port_mappings: Vec<KindPortMapping>,
}

#[derive(Deserialize)]
struct KindPortMapping {
    #[serde(rename = "containerPort")]
    container_port: u16,
    #[serde(default, rename = "hostPort")]
    host_port: Option<i32>,
    #[serde(default, rename = "listenAddress")]
    listen_address: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
}

/// A connector file in the `POST /connectors` wrapper form.
#[derive(Deserialize)]
struct ConnectorFile {
    name: String,
    config: serde_json::Map<String, serde_json::Value>,
}

// ---- loading ---------------------------------------------------------------------------------

/// Parse "500ms", "90s", "2m" (and "0").
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let value: f64 = number.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

fn duration(what: &str, text: &str) -> Result<Duration> {
    parse_duration(text).ok_or_else(|| {
        Error::input("stack file", format!("{what}: `{text}` is not a duration (use e.g. 90s, 2m, 500ms)"))
    })
}

pub fn load(source: Source) -> Result<Stack> {
    let stack_text = source.read("stack.yaml")?;
    let file: StackFile = serde_saphyr::from_str(&stack_text)
        .map_err(|e| Error::input(format!("stack file {}", source.describe("stack.yaml")), e.to_string()))?;
    let cluster_text = source.read(&file.cluster)?;
    let cluster = parse_cluster(&cluster_text).map_err(|problem| {
        Error::input(format!("cluster config {}", source.describe(&file.cluster)), problem)
    })?;

    let mut workloads = Vec::new();
    for w in &file.workloads {
        let role = match w.role.as_deref() {
            None | Some("app") => Role::App,
            Some("database") => Role::Database,
            Some(other) => {
                return Err(Error::input(
                    "stack file",
                    format!("workload {}: role `{other}` is not `database` or `app`", w.name),
                ));
            }
        };
        workloads.push(Workload {
            name: w.name.clone(),
            namespace: w.namespace.clone(),
            role,
            needs: w.needs.clone(),
            timeout: duration(&format!("workload {} timeout", w.name), &w.timeout)?,
        });
    }

    let mut connectors = Vec::new();
    for c in &file.connect.connectors {
        let text = source.read(&c.file)?;
        let what = format!("connector file {}", source.describe(&c.file));
        let (name, config) = parse_connector(&text).map_err(|problem| Error::input(&what, problem))?;
        connectors.push(Connector {
            name,
            config,
            user_key: c.user_key.clone(),
            password_key: c.password_key.clone(),
            needs: c.needs.clone(),
        });
    }

    let stack = Stack {
        cluster,
        api_timeout: duration("api_timeout", &file.api_timeout)?,
        mesh: Mesh {
            namespace: file.mesh.namespace.clone(),
            daemonset: file.mesh.daemonset.clone(),
            timeout: duration("mesh.timeout", &file.mesh.timeout)?,
            settle: duration("mesh.settle", &file.mesh.settle)?,
        },
        workloads,
        connect: Connect {
            workload: file.connect.workload.clone(),
            port: file.connect.port,
            timeout: duration("connect.timeout", &file.connect.timeout)?,
            secret_namespace: file.connect.secret.namespace.clone(),
            secret_name: file.connect.secret.name.clone(),
            connectors,
        },
        smoke: Smoke {
            timeout: duration("smoke.timeout", &file.smoke.timeout)?,
            checks: file
                .smoke
                .checks
                .iter()
                .map(|c| Check {
                    name: c.name.clone(),
                    port: c.port,
                    host: c.host.clone(),
                    path: c.path.clone(),
                    serves: c.serves.clone(),
                    connectors_running: c.connectors_running,
                })
                .collect(),
        },
        legacy_proxies: file.legacy_proxies.clone(),
    };
    validate(&stack)?;
    Ok(stack)
}

pub fn parse_cluster(text: &str) -> std::result::Result<Cluster, String> {
    let file: KindCluster = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if file.kind != "Cluster" || !file.api_version.starts_with("kind.x-k8s.io/") {
        return Err(format!(
            "not a kind cluster config (kind: {}, apiVersion: {}); expected kind: Cluster, \
             apiVersion: kind.x-k8s.io/v1alpha4",
            file.kind, file.api_version
        ));
    }
    let control_planes = file.nodes.iter().filter(|n| n.role == "control-plane").count();
    let mut ports: Vec<PortMapping> = Vec::new();
    for node in file.nodes.iter().filter(|n| n.role == "control-plane") {
        for m in &node.extra_port_mappings {
            let host_port = match m.host_port {
                None | Some(0) | Some(-1) => None,
                Some(p) => {
                    Some(u16::try_from(p).map_err(|_| format!("hostPort {p} is not a valid port number"))?)
                }
            };
            ports.push(PortMapping {
                container_port: m.container_port,
                host_port,
                listen_address: m.listen_address.clone().unwrap_or_else(|| "0.0.0.0".into()),
                protocol: m.protocol.clone().unwrap_or_else(|| "TCP".into()).to_uppercase(),
            });
        }
    }
    Ok(Cluster {
        name: file.name.unwrap_or_else(|| "kind".into()),
        control_planes: control_planes.max(usize::from(file.nodes.is_empty())),
        ports,
    })
}

pub fn parse_connector(text: &str) -> std::result::Result<(String, BTreeMap<String, String>), String> {
    let file: ConnectorFile = serde_json::from_str(text).map_err(|e| {
        format!("{e} (expected the POST /connectors form: {{\"name\": \"...\", \"config\": {{...}}}})")
    })?;
    if file.name.trim().is_empty() {
        return Err("`name` is empty".into());
    }
    let mut config = BTreeMap::new();
    for (key, value) in file.config {
        // Kafka Connect coerces scalars to strings; anything else is rejected by it too.
        let value = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => {
                return Err(format!("config `{key}` must be a string, found {other}"));
            }
        };
        config.insert(key, value);
    }
    if let Some(inner) = config.get("name")
        && inner != &file.name
    {
        return Err(format!(
            "config.name `{inner}` does not match name `{}` (Connect would answer 400)",
            file.name
        ));
    }
    if !config.contains_key("connector.class") {
        return Err("config has no `connector.class`".into());
    }
    Ok((file.name, config))
}

fn validate(stack: &Stack) -> Result<()> {
    let bad = |problem: String| Err(Error::input("stack file", problem));
    if stack.cluster.control_planes > 1 {
        return bad(format!(
            "the cluster config has {} control-plane nodes; kind clusters with more than one do not \
             survive a Docker restart (kubernetes-sigs/kind#1689): use one",
            stack.cluster.control_planes
        ));
    }
    let mut names = BTreeSet::new();
    for w in &stack.workloads {
        if !names.insert(w.name.as_str()) {
            return bad(format!("workload `{}` is listed twice", w.name));
        }
    }
    for w in &stack.workloads {
        for need in &w.needs {
            if !names.contains(need.as_str()) {
                return bad(format!("workload `{}` needs `{need}`, which is not a workload", w.name));
            }
        }
    }
    if let Some(cycle) = find_cycle(&stack.workloads) {
        return bad(format!("dependency cycle: {}", cycle.join(" → ")));
    }
    if !names.contains(stack.connect.workload.as_str()) {
        return bad(format!("connect.workload `{}` is not a workload", stack.connect.workload));
    }
    let mut connector_names = BTreeSet::new();
    for c in &stack.connect.connectors {
        if !connector_names.insert(c.name.as_str()) {
            return bad(format!("connector `{}` is listed twice", c.name));
        }
        for need in &c.needs {
            if !names.contains(need.as_str()) {
                return bad(format!("connector `{}` needs `{need}`, which is not a workload", c.name));
            }
        }
    }
    stack.cluster.host_port(stack.connect.port)?;
    for check in &stack.smoke.checks {
        stack.cluster.host_port(check.port)?;
        if !check.path.starts_with('/') {
            return bad(format!("smoke check `{}`: path must start with /", check.name));
        }
    }
    Ok(())
}

/// A dependency cycle among workloads, if any, as the names along it.
fn find_cycle(workloads: &[Workload]) -> Option<Vec<String>> {
    fn visit<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a Workload>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(name) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(name, 1);
        path.push(name);
        if let Some(w) = by_name.get(name) {
            for need in &w.needs {
                if let Some(cycle) = visit(need, by_name, state, path) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        state.insert(name, 2);
        None
    }
    let by_name: BTreeMap<&str, &Workload> = workloads.iter().map(|w| (w.name.as_str(), w)).collect();
    let mut state = BTreeMap::new();
    for w in workloads {
        if let Some(cycle) = visit(&w.name, &by_name, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_loads() {
        let stack = load(Source::Embedded).unwrap();
        assert_eq!(stack.cluster.name, "bookstore");
        assert_eq!(stack.cluster.context(), "kind-bookstore");
        for port in [30000, 31111, 32000, 32100, 32200, 32300] {
            assert_eq!(stack.cluster.host_port(port).unwrap(), port);
        }
        assert_eq!(stack.workloads.len(), 16);
        assert_eq!(stack.connect.connectors.len(), 2);
        assert_eq!(stack.mesh.timeout, Duration::from_secs(90));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "s", "10", "10h", "-1s", "1e999s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn connector_files_must_be_the_wrapper_form() {
        assert!(parse_connector(r#"{"connector.class":"x"}"#).unwrap_err().contains("POST /connectors"));
        assert!(parse_connector(r#"{"name":"a","config":{"connector.class":"x","n":{"a":1}}}"#).is_err());
        assert!(
            parse_connector(r#"{"name":"a","config":{"connector.class":"x","name":"b"}}"#)
                .unwrap_err()
                .contains("does not match")
        );
        let (name, config) =
            parse_connector(r#"{"name":"a","config":{"connector.class":"x","tasks.max":1}}"#).unwrap();
        assert_eq!(name, "a");
        assert_eq!(config["tasks.max"], "1");
    }

    #[test]
    fn cluster_configs_are_checked() {
        assert!(parse_cluster("kind: Pod\napiVersion: v1\n").unwrap_err().contains("not a kind cluster"));
        assert!(parse_cluster(": : :").is_err());
        let c = parse_cluster(
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  \
             extraPortMappings:\n  - containerPort: 80\n    hostPort: -1\n",
        )
        .unwrap();
        assert_eq!(c.name, "kind");
        assert_eq!(c.ports[0].host_port, None);
        assert!(c.host_port(80).is_err());
    }

    #[test]
    fn cycles_are_named() {
        let w = |name: &str, needs: &[&str]| Workload {
            name: name.into(),
            namespace: "ns".into(),
            role: Role::App,
            needs: needs.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(1),
        };
        let cycle = find_cycle(&[w("a", &["b"]), w("b", &["c"]), w("c", &["a"])]).unwrap();
        assert_eq!(cycle, ["a", "b", "c", "a"]);
        assert!(find_cycle(&[w("a", &[]), w("b", &["a"])]).is_none());
    }
}
