//! The stack as data, read through the product's own library (`bookstore::stack`): the
//! simulator reads the same files the product reads (from its own copy of `infra/`), with the
//! product's parser, so the workload list, the hard dependencies, the routes, the connectors and
//! the host ports are never hard-coded or re-parsed here. Data only: every verdict (what is
//! healthy, stale, rolled out) stays the simulator's own.
//!
//! The kind cluster config is the exception: `kind create cluster --config` reads it, and the
//! simulator models kind ([`KindCluster`]: its nodes, port mappings and kubeadm patches as kind
//! reads them), so a mistake in the product's reading of that file cannot hide in the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

pub use bookstore::stack::{Check, Connector, Role, Stack, Workload};

/// A node as kind makes it: its container's name, its role, its port mappings (containerPort,
/// hostPort).
pub type NodeSpec = (String, &'static str, Vec<(u16, u16)>);

/// What kind reads of its cluster config.
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

    /// The nodes kind makes of it, in its order: (container name, role, its port mappings as
    /// (containerPort, hostPort)). kind names the first node of a role `<cluster>-<role>`, the
    /// next ones `<cluster>-<role>2`, `3`, … (`pkg/cluster/internal/providers/common/namer.go`);
    /// no `nodes` is one control plane.
    pub fn kind_nodes(&self, cluster: &str) -> Vec<NodeSpec> {
        if self.nodes.is_empty() {
            return vec![(format!("{cluster}-control-plane"), "control-plane", Vec::new())];
        }
        let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut out: Vec<NodeSpec> = self
            .nodes
            .iter()
            .map(|n| {
                let role = match n.role.as_deref().unwrap_or("control-plane") {
                    "worker" => "worker",
                    _ => "control-plane",
                };
                let count = seen.entry(role).or_insert(0);
                *count += 1;
                let suffix = if *count == 1 { String::new() } else { count.to_string() };
                let ports = n
                    .extra_port_mappings
                    .iter()
                    .map(|m| (m.container_port, m.host_port.unwrap_or(m.container_port)))
                    .collect();
                (format!("{cluster}-{role}{suffix}"), role, ports)
            })
            .collect();
        out.sort_by_key(|(_, role, _)| *role != "control-plane");
        out
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

/// Everything the world needs from `infra/`, loaded once.
#[derive(Debug, Clone)]
pub struct Infra {
    pub dir: PathBuf,
    /// The stack as the product loads it (`bookstore::stack::load_for_diagnosis`: a port without
    /// a fixed host port is the product's error to report, not the simulator's).
    pub stack: Stack,
    pub cluster_path: PathBuf,
    pub cluster: KindCluster,
}

impl Infra {
    pub fn load(dir: &Path) -> Result<Infra> {
        let source = bookstore::stack::Source::File(dir.join("stack.yaml"));
        let stack = bookstore::stack::load_for_diagnosis(source).map_err(|e| anyhow!("{e}"))?;
        let cluster_path = dir.join(&stack.cluster_file);
        let cluster = KindCluster::load(&cluster_path)?;
        Ok(Infra { dir: dir.to_path_buf(), stack, cluster_path, cluster })
    }

    /// The connectors of the stack, each with its file's config.
    pub fn connectors(&self) -> &[Connector] {
        &self.stack.connect.connectors
    }

    /// Every Deployment of the tiers' manifests: (namespace, name, images of its pod template).
    pub fn deployments(&self) -> Vec<(String, String, Vec<String>)> {
        let docs = self.stack.bootstrap.tiers.iter().flat_map(|t| &t.docs);
        docs.filter_map(|d| {
            d.deployment().map(|(ns, name)| (ns.to_string(), name.to_string(), d.images.clone()))
        })
        .collect()
    }

    pub fn workload(&self, name: &str) -> Option<&Workload> {
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
