//! The stack as data: `infra/stack.yaml`, the kind cluster config and the connector files.
//!
//! The simulator reads the same files the product reads (from its own copy of `infra/`), so the
//! workload list, the hard dependencies, the routes and the host ports are never hard-coded here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Stack {
    pub cluster: String,
    pub mesh: Mesh,
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    pub connect: ConnectSpec,
    pub smoke: Smoke,
    #[serde(default)]
    pub legacy_proxies: Vec<String>,
    #[serde(default)]
    pub bootstrap: Option<BootstrapSpec>,
}

/// What the simulator reads of `bootstrap`: where the manifests are, and our images.
#[derive(Debug, Clone, Deserialize)]
pub struct BootstrapSpec {
    #[serde(default)]
    pub images: Vec<ImageSpec>,
    #[serde(default)]
    pub tiers: Vec<TierSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageSpec {
    pub image: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TierSpec {
    pub dir: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Mesh {
    pub namespace: String,
    pub daemonset: String,
    /// Pause after ztunnel's rollout (`"1s"`), as the product reads it.
    #[serde(default)]
    pub settle: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkloadSpec {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConnectSpec {
    pub workload: String,
    pub port: u16,
    pub secret: SecretRef,
    #[serde(default)]
    pub connectors: Vec<ConnectorSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorSpec {
    pub file: String,
    pub user_key: String,
    pub password_key: String,
    #[serde(default)]
    pub needs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Smoke {
    #[serde(default)]
    pub checks: Vec<SmokeCheck>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SmokeCheck {
    pub name: String,
    pub port: u16,
    #[serde(default)]
    pub host: Option<String>,
    pub path: String,
    pub serves: String,
    /// The check also requires every connector RUNNING (`GET /connectors?expand=status`).
    #[serde(default)]
    pub connectors_running: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KindCluster {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub nodes: Vec<KindNode>,
    /// kubeadm config patches (a `KubeletConfiguration` one sets the kubelet's image puller).
    #[serde(default, rename = "kubeadmConfigPatches")]
    pub kubeadm_config_patches: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KindNode {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default, rename = "kubeadmConfigPatches")]
    pub kubeadm_config_patches: Vec<String>,
    #[serde(default, rename = "extraPortMappings")]
    pub extra_port_mappings: Vec<PortMapping>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    #[serde(default, rename = "hostPort")]
    pub host_port: Option<u16>,
    #[serde(default, rename = "listenAddress")]
    pub listen_address: Option<String>,
}

impl KindCluster {
    pub fn load(path: &Path) -> Result<KindCluster> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading kind config {}", path.display()))?;
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The cluster name (`kind`'s default when the file has none).
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| "kind".to_string())
    }

    /// Every kubeadm config patch: the cluster's, then the control-plane node's.
    pub fn patches(&self) -> Vec<String> {
        let node =
            self.nodes.iter().filter(|n| n.role.as_deref().unwrap_or("control-plane") == "control-plane");
        self.kubeadm_config_patches
            .iter()
            .chain(node.flat_map(|n| n.kubeadm_config_patches.iter()))
            .cloned()
            .collect()
    }

    /// containerPort → hostPort of the control-plane node.
    pub fn port_map(&self) -> BTreeMap<u16, u16> {
        self.nodes
            .iter()
            .filter(|n| n.role.as_deref().unwrap_or("control-plane") == "control-plane")
            .flat_map(|n| n.extra_port_mappings.iter())
            .map(|m| (m.container_port, m.host_port.unwrap_or(m.container_port)))
            .collect()
    }
}

/// A connector file as shipped (`{"name", "config"}`).
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorFile {
    pub name: String,
    pub config: BTreeMap<String, String>,
}

/// Everything the world needs from `infra/`, loaded once.
#[derive(Debug, Clone)]
pub struct Infra {
    pub dir: PathBuf,
    pub stack: Stack,
    pub cluster_path: PathBuf,
    pub cluster: KindCluster,
    pub connectors: Vec<(ConnectorSpec, ConnectorFile)>,
}

impl Infra {
    pub fn load(dir: &Path) -> Result<Infra> {
        let stack_path = dir.join("stack.yaml");
        let text = std::fs::read_to_string(&stack_path)
            .with_context(|| format!("reading {}", stack_path.display()))?;
        let stack: Stack =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", stack_path.display()))?;
        let cluster_path = dir.join(&stack.cluster);
        let cluster = KindCluster::load(&cluster_path)?;
        let mut connectors = Vec::new();
        for spec in &stack.connect.connectors {
            let path = dir.join(&spec.file);
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let file: ConnectorFile =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            connectors.push((spec.clone(), file));
        }
        Ok(Infra { dir: dir.to_path_buf(), stack, cluster_path, cluster, connectors })
    }

    /// Every Deployment of the tiers' manifests: (namespace, name, images of its pod template).
    pub fn deployments(&self) -> Result<Vec<(String, String, Vec<String>)>> {
        let mut out = Vec::new();
        let tiers = self.stack.bootstrap.as_ref().map(|b| b.tiers.clone()).unwrap_or_default();
        for tier in tiers {
            let dir = self.dir.join(&tier.dir);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file)?;
                for doc in text.split("\n---") {
                    let Ok(v) = serde_saphyr::from_str::<serde_json::Value>(doc) else { continue };
                    if v.get("kind").and_then(|k| k.as_str()) != Some("Deployment") {
                        continue;
                    }
                    let meta =
                        |k: &str| v.pointer(&format!("/metadata/{k}")).and_then(|x| x.as_str()).unwrap_or("");
                    let images = ["initContainers", "containers"]
                        .iter()
                        .filter_map(|k| {
                            v.pointer(&format!("/spec/template/spec/{k}")).and_then(|c| c.as_array())
                        })
                        .flatten()
                        .filter_map(|c| c.get("image").and_then(|i| i.as_str()).map(String::from))
                        .collect();
                    out.push((meta("namespace").to_string(), meta("name").to_string(), images));
                }
            }
        }
        Ok(out)
    }

    pub fn workload(&self, name: &str) -> Option<&WorkloadSpec> {
        self.stack.workloads.iter().find(|w| w.name == name)
    }

    /// The ambient namespaces: every namespace that holds a stack workload.
    pub fn app_namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for w in &self.stack.workloads {
            if !v.contains(&w.namespace) {
                v.push(w.namespace.clone());
            }
        }
        v
    }
}

/// Copy a directory tree.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Rewrite the `hostPort:` values of a kind config text, keeping comments and layout.
/// `ports` maps containerPort → new hostPort.
pub fn rewrite_host_ports(text: &str, ports: &BTreeMap<u16, u16>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut current: Option<u16> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(v) = value_of(trimmed, "containerPort:") {
            current = v.parse().ok();
        }
        if let Some(v) = value_of(trimmed, "hostPort:") {
            let Some(cp) = current else { bail!("hostPort before containerPort in kind config") };
            let new = ports.get(&cp).copied().unwrap_or(cp);
            let at = line.find("hostPort:").unwrap_or(0);
            let rest = &line[at + "hostPort:".len()..];
            let lead = rest.len() - rest.trim_start().len();
            let after = &rest[lead + v.len()..];
            out.push_str(&line[..at]);
            out.push_str("hostPort:");
            out.push_str(&rest[..lead]);
            out.push_str(&new.to_string());
            out.push_str(after);
            continue;
        }
        out.push_str(line);
    }
    Ok(out)
}

/// The stack file with its GitHub downloads (the Gateway API CRDs) pointed at the simulator's
/// control endpoint, which serves them from `fixtures/` (`control::DOWNLOADS`).
pub fn rewrite_downloads(text: &str, control_port: u16) -> String {
    text.replace("https://github.com/", &format!("http://127.0.0.1:{control_port}/github.com/"))
}

fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?;
    let v = rest.trim_start();
    let end = v.find(|c: char| !c.is_ascii_digit() && c != '-').unwrap_or(v.len());
    Some(&v[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_host_ports_keeping_comments() {
        let text = "nodes:\n  - role: control-plane\n    extraPortMappings:\n      - containerPort: 30000 # gw\n        hostPort: 30000\n        listenAddress: \"127.0.0.1\"\n      - containerPort: 31111\n        hostPort: 31111 # pg\n";
        let ports = BTreeMap::from([(30000, 40001), (31111, 40002)]);
        let out = rewrite_host_ports(text, &ports).unwrap();
        assert!(out.contains("hostPort: 40001\n"));
        assert!(out.contains("hostPort: 40002 # pg\n"));
        assert!(out.contains("containerPort: 30000 # gw"));
        let parsed: KindCluster = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(parsed.port_map().get(&31111), Some(&40002));
    }
}
