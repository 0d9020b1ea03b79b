//! The stack file's format and its loading: `infra/stack.yaml` into a [`Stack`], the kind
//! cluster config it names, the connector files; the bootstrap's part in `bootstrap.rs`, the
//! cross-checks in `validate.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};

use super::bootstrap::{BootstrapFile, load_bootstrap};
use super::validate::{validate, validate_ports};
use super::*;

// ---- the file formats -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StackFile {
    cluster: String,
    #[serde(default = "default_api_timeout")]
    api_timeout: String,
    mesh: MeshFile,
    workloads: Vec<WorkloadFile>,
    connect: ConnectFile,
    smoke: SmokeFile,
    #[serde(default)]
    legacy_proxies: Vec<String>,
    bootstrap: BootstrapFile,
    #[serde(default)]
    pub(super) allow_contexts: Vec<AllowFile>,
}

/// An `allow_contexts:` entry: a context name, or `{name, bootstrap}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum AllowFile {
    Name(String),
    Entry(AllowEntry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AllowEntry {
    name: String,
    #[serde(default)]
    bootstrap: bool,
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
    #[serde(default)]
    ready_in: Option<String>,
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

pub fn load(source: Source) -> Result<Stack> {
    let stack = load_unchecked_ports(source)?;
    validate_ports(&stack)?;
    Ok(stack)
}

/// Like [`load`], but a route or Connect port without a fixed `hostPort` is not an input error:
/// `doctor` and `status` report it instead of refusing to look.
pub fn load_for_diagnosis(source: Source) -> Result<Stack> {
    load_unchecked_ports(source)
}

fn load_unchecked_ports(source: Source) -> Result<Stack> {
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
            ready_in: match &w.ready_in {
                Some(d) => duration(&format!("workload {} ready_in", w.name), d)?,
                None => DEFAULT_READY_IN,
            },
        });
    }

    let mut connectors = Vec::new();
    for c in &file.connect.connectors {
        let text = source.read(&c.file)?;
        let what = format!("connector file {}", source.describe(&c.file));
        let (name, config) = parse_connector(&text).map_err(|problem| Error::input(&what, problem))?;
        check_connector_name(&c.file, &name).map_err(|problem| Error::input(&what, problem))?;
        connectors.push(Connector {
            name,
            file: c.file.clone(),
            config,
            user_key: c.user_key.clone(),
            password_key: c.password_key.clone(),
            needs: c.needs.clone(),
        });
    }

    let bootstrap = load_bootstrap(&source, &file.bootstrap, &workloads)?;
    let stack = Stack {
        source: source.clone(),
        cluster_file: file.cluster.clone(),
        bootstrap,
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
        allow_contexts: file
            .allow_contexts
            .iter()
            .map(|a| match a {
                AllowFile::Name(name) => Allowed { context: name.clone(), bootstrap: false },
                AllowFile::Entry(e) => Allowed { context: e.name.clone(), bootstrap: e.bootstrap },
            })
            .collect(),
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
    let workers = file.nodes.iter().filter(|n| n.role == "worker").count();
    let mut ports: Vec<PortMapping> = Vec::new();
    // kind documents the mappings on the control plane; a worker's are published by its own
    // container, and count the same (a node port answers on every node).
    for node in &file.nodes {
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
                host_port_raw: m.host_port,
                listen_address: m.listen_address.clone().unwrap_or_else(|| "0.0.0.0".into()),
                protocol: m.protocol.clone().unwrap_or_else(|| "TCP".into()).to_uppercase(),
            });
        }
    }
    Ok(Cluster {
        raw: text.to_string(),
        name: file.name.unwrap_or_else(|| "kind".into()),
        control_planes: control_planes.max(usize::from(file.nodes.is_empty())),
        workers,
        ports,
        target: Target::Kind,
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

/// A connector is registered under its file's name (the guide's `${connector}.json` →
/// `PUT /connectors/${connector}/config`): a `name` that differs is a mistake in the file.
pub(super) fn check_connector_name(file: &str, name: &str) -> std::result::Result<(), String> {
    let stem = Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem == name {
        return Ok(());
    }
    Err(format!(
        "`name` is `{name}`, but the file is named `{stem}`: rename one so they match (each connector \
         is registered under its file's name)"
    ))
}
