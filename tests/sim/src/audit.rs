//! The audit log: every request each room served, every stand-in run, every controller event.

use serde::{Deserialize, Serialize};

/// Which part of the world wrote an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A kube-apiserver request.
    Kube,
    /// A Docker Engine API request.
    Docker,
    /// A Kafka Connect REST request (host port mapped to the connect port).
    Connect,
    /// An HTTP request on a host port other than Connect (gateway, NodePorts).
    Http,
    /// A `kind` / `istioctl` stand-in invocation.
    Standin,
    /// Something the simulated controllers, kubelet, mesh or Kafka did.
    Controller,
    /// A test-control action (docker restart, fault, ...).
    Control,
}

/// One audit entry. `t_ms` is monotonic milliseconds since the simulator started.
///
/// Requests: `verb` is the HTTP method, `path` includes the query, `status` the answer.
/// Controller events: `verb` is the event name and `path` its subject:
/// `pod-started ns/pod`, `pod-ready ns/pod`, `pod-crashed ns/pod`, `pod-deleted ns/pod`,
/// `rollout-observed ns/name`, `rollout-complete ns/name` (kind in `detail`), `docker-restart`,
/// `docker-stop`, `docker-start`, `kafka-topics-lost`, `connector-stored name`, the mesh's (`kindnet-rewrite`, `istio-cni-agent-started`, `ztunnel-connected`, `sandbox-uncaptured`, `mesh-outside`).
/// Stand-ins: `verb` is the tool, `path` the argv joined by spaces, `body` the argv as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub t_ms: u64,
    pub source: Source,
    pub verb: String,
    pub path: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: String,
}

impl AuditEntry {
    /// `path` without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    pub fn is_event(&self, verb: &str, subject: &str) -> bool {
        self.source == Source::Controller && self.verb == verb && self.path == subject
    }

    /// A request or stand-in run that changes the world: a kube, Docker or Connect request
    /// other than GET/HEAD, `kind create|delete|load|export`, `istioctl install`.
    pub fn is_write(&self) -> bool {
        match self.source {
            Source::Kube | Source::Docker | Source::Connect => !matches!(self.verb.as_str(), "GET" | "HEAD"),
            Source::Standin => {
                let first = self.path.split_whitespace().next().unwrap_or("");
                match self.verb.as_str() {
                    "kind" => matches!(first, "create" | "delete" | "load" | "export"),
                    "istioctl" => first == "install",
                    _ => true,
                }
            }
            Source::Http | Source::Controller | Source::Control => false,
        }
    }

    /// A kube PATCH whose path ends with `/<resource>/<name>` (query ignored).
    pub fn is_kube_patch_of(&self, resource: &str, name: &str) -> bool {
        self.source == Source::Kube
            && self.verb == "PATCH"
            && self.path_only().ends_with(&format!("/{resource}/{name}"))
    }
}
