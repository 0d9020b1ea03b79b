//! Typed `kubectl` commands, in two halves: [`Kubectl`] reads (get, logs, watch, wait) and
//! [`KubectlWrite`] changes (apply, rollout restart). The read-only rooms (`observe`, `doctor`,
//! `status`, `smoke`) are given only the read half, so that they cannot change anything is a
//! type, not a rule. Every command carries `--context kind-<cluster>`, so the tool never acts on
//! whatever context happens to be current. Here the read half; `kube/write.rs` the change half,
//! `kube/parse.rs` what kubectl prints, read.

use std::collections::BTreeMap;
use std::time::Duration;

mod parse;
mod write;

pub use parse::{Rollout, applied_generations, decode_secret, deployment_rollout, pod_states};
pub use write::{KubectlWrite, restarted};

use crate::error::{Error, Result};
use crate::exec::{Cmd, Output};
use crate::secret::Secret;
use crate::wait::{Attempt, Poll};

/// kubectl's reads.
#[derive(Clone, Debug)]
pub struct Kubectl {
    context: String,
    /// How long a command is retried while the apiserver fails transiently.
    retry_for: Duration,
}

/// kubectl's stderr for an apiserver failure that passes on its own (a 503 or 500 while it
/// starts, a refused or reset connection right after a Docker restart): worth retrying.
pub fn transient(stderr: &str) -> bool {
    [
        "ServiceUnavailable",
        "the server is currently unable to handle the request",
        "InternalError",
        // The apiserver's 500 message (NewInternalError), which `rollout restart` prints without
        // the reason: `error: failed to patch: Internal error occurred: …`.
        "Internal error occurred",
        "an error on the server",
        "TooManyRequests",
        "was refused",
        "connection refused",
        "connection reset by peer",
        "TLS handshake timeout",
        "i/o timeout",
        "unexpected EOF",
        "http2: client connection lost",
    ]
    .iter()
    .any(|m| stderr.contains(m))
}

/// A deadline as kubectl's `--timeout=<n>s`: rounded up (a wait given 19.998 s of a 20 s deadline
/// asks for 20 s, the deadline it prints), at least 1.
fn whole_seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

impl Kubectl {
    pub fn new(context: String, retry_for: Duration) -> Kubectl {
        Kubectl { context, retry_for }
    }

    /// Run a command, retrying transient apiserver failures for a while; other failures are
    /// explained at once.
    pub fn run(&self, cmd: &Cmd) -> Result<Output> {
        let what = format!("`{cmd}` (the Kubernetes API kept failing)");
        let next = self.api_hint();
        Poll::new(&what, self.retry_for, &next).run(|| match cmd.run() {
            Ok(out) => Attempt::Done(out),
            Err(Error::Command { stderr_tail, .. }) if transient(&stderr_tail) => {
                Attempt::Retry(stderr_tail.lines().last().unwrap_or("").to_string())
            }
            Err(e) => Attempt::Fail(self.explain(e)),
        })
    }

    fn api_hint(&self) -> String {
        format!(
            "check the node container (`docker ps`) and the API (`kubectl --context {} get --raw /readyz`), \
             then run again",
            self.context
        )
    }

    pub fn context(&self) -> &str {
        &self.context
    }

    pub(crate) fn base(&self) -> Cmd {
        Cmd::new("kubectl").args(["--context", self.context.as_str()])
    }

    pub fn readyz(&self) -> Cmd {
        self.base()
            .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
            .deadline(Duration::from_secs(10))
    }

    pub fn rollout_status(&self, kind: &str, name: &str, namespace: &str, timeout: Duration) -> Cmd {
        self.base()
            .args(["rollout", "status", &format!("{kind}/{name}"), "-n", namespace])
            .arg(format!("--timeout={}s", whole_seconds(timeout)))
            .deadline(timeout + Duration::from_secs(15))
    }

    pub fn list_deployments(&self) -> Cmd {
        self.base().args(["get", "deployments", "--all-namespaces", "-o", "json"])
    }

    /// Every deployment and every pod, in one call (kubectl lists both and prints one List).
    pub fn list_deployments_and_pods(&self) -> Cmd {
        self.base()
            .args(["get", "deployments,pods", "--all-namespaces", "-o", "json"])
            .deadline(Duration::from_secs(30))
    }

    /// Core v1 Events of every namespace (the kubelet's and the scheduler's words about pods).
    pub fn list_events(&self) -> Cmd {
        self.base()
            .args(["get", "events", "--all-namespaces", "-o", "json"])
            .deadline(Duration::from_secs(30))
    }

    /// Every Node (each one's `spec.providerID` names the engine kind built it with; on a shared
    /// cluster its restarts are read from them: bootID, Ready).
    pub fn list_nodes(&self) -> Cmd {
        self.base().args(["get", "nodes", "-o", "json"]).deadline(Duration::from_secs(30))
    }

    /// The events on Nodes (the kubelet's `Starting` and `Rebooted`), of every namespace.
    pub fn list_node_events(&self) -> Cmd {
        self.base()
            .args([
                "get",
                "events",
                "--all-namespaces",
                "--field-selector",
                "involvedObject.kind=Node",
                "-o",
                "json",
            ])
            .deadline(Duration::from_secs(30))
    }

    /// Every Node, then each change, one JSON object a line (`watch` on a shared cluster).
    pub fn watch_nodes(&self) -> Cmd {
        self.base().args(["get", "nodes", "--watch", "--output-watch-events", "-o", "json"]).not_cancellable()
    }

    /// `kubectl port-forward` to a Service's port, on a local port kubectl picks (`:PORT`), on
    /// 127.0.0.1 only: it prints `Forwarding from 127.0.0.1:<local> -> <target>` once it listens.
    /// A Service with no running pod fails in 5 s (`--pod-running-timeout`; kubectl's default
    /// waits a minute), well inside the tool's own deadline for it to listen.
    pub fn port_forward(&self, namespace: &str, service: &str, port: u16) -> Cmd {
        self.base().args([
            "port-forward",
            "--pod-running-timeout=5s",
            "--address",
            "127.0.0.1",
            "-n",
            namespace,
            &format!("service/{service}"),
            &format!(":{port}"),
        ])
    }

    /// The last `tail` lines of every container of one pod.
    pub fn pod_logs(&self, namespace: &str, pod: &str, tail: usize) -> Cmd {
        self.base()
            .args(["logs", pod, "-n", namespace, "--all-containers=true"])
            .arg(format!("--tail={tail}"))
            .deadline(Duration::from_secs(20))
    }

    /// The last `tail` lines of each pod of a DaemonSet (one per node: ztunnel logs a failed
    /// HBONE connection on the node it left from, istio-cni a failed reconcile on the pod's
    /// node), each line prefixed `[pod/<pod>/<container>] `. `--all-pods` is kubectl ≥ 1.31's
    /// (kubernetes#124732); [`Kubectl::workload_logs`] is what an older one can read.
    pub fn daemonset_logs(&self, name: &str, namespace: &str, tail: usize) -> Cmd {
        self.workload_logs("daemonset", name, namespace, tail).arg("--all-pods=true")
    }

    /// kubectl's refusal of a flag it does not know yet (an older release).
    pub fn unknown_flag(stderr: &str, flag: &str) -> bool {
        stderr.contains(&format!("unknown flag: {flag}"))
    }

    /// The last `tail` lines of a workload's pod (`daemonset/ztunnel`: kubectl picks one pod).
    pub fn workload_logs(&self, kind: &str, name: &str, namespace: &str, tail: usize) -> Cmd {
        self.base()
            .args(["logs", &format!("{kind}/{name}"), "-n", namespace])
            .arg(format!("--tail={tail}"))
            .deadline(Duration::from_secs(30))
    }

    /// One watch serves every readiness wait: the current state first, then each change.
    /// Every pod, then each change: what the fail-fast check of the readiness waits reads.
    pub fn watch_pods(&self) -> Cmd {
        self.base().args([
            "get",
            "pods",
            "--all-namespaces",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
    }

    pub fn watch_deployments(&self) -> Cmd {
        self.base().args([
            "get",
            "deployments",
            "--all-namespaces",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
    }

    pub fn pods(&self, namespace: &str, selector: &str) -> Cmd {
        self.base()
            .args(["get", "pods", "-n", namespace, "-l", selector, "-o", "json"])
            .deadline(Duration::from_secs(15))
    }

    pub fn logs(&self, namespace: &str, selector: &str, lines: u32) -> Cmd {
        self.base()
            .args(["logs", "-n", namespace, "-l", selector, "--prefix"])
            .arg(format!("--tail={lines}"))
            .deadline(Duration::from_secs(15))
    }

    /// Why a workload (pods labelled `app=<app>`) is not Ready: each pod's state and the last
    /// log lines. Best effort, for an error message: a failure to look is shown, not raised.
    pub fn diagnose(&self, namespace: &str, app: &str) -> String {
        let selector = format!("app={app}");
        let mut out = Vec::new();
        let pods = self.pods(namespace, &selector);
        match pods.run().map_err(|e| e.to_string()).and_then(|o| pod_states(&o.stdout)) {
            Ok(states) if states.is_empty() => out.push(format!("no pods ({pods})")),
            Ok(states) => {
                out.push(format!("pods ({pods}):"));
                out.extend(states.into_iter().map(|s| format!("  {s}")));
            }
            Err(e) => out.push(format!("pods: could not list them: {}", e.lines().next().unwrap_or(""))),
        }
        let logs = self.logs(namespace, &selector, 5);
        match logs.run_unchecked() {
            Ok(raw) => {
                let mut lines: Vec<String> = raw.stdout.lines().map(|l| format!("  {l}")).collect();
                lines.extend(raw.stderr.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("  {l}")));
                if !lines.is_empty() {
                    out.push(format!("last log lines ({logs}):"));
                    let start = lines.len().saturating_sub(12);
                    out.extend(lines.drain(start..));
                }
            }
            Err(e) => out.push(format!("logs: {}", e.to_string().lines().next().unwrap_or(""))),
        }
        crate::secret::redact(&out.join("\n"))
    }

    /// `kubectl wait --for=condition=<condition>` on the named objects.
    pub fn wait_condition(
        &self,
        condition: &str,
        objects: &[String],
        namespace: Option<&str>,
        timeout: Duration,
    ) -> Cmd {
        let mut cmd =
            self.base().args(["wait", &format!("--for=condition={condition}")]).args(objects.iter().cloned());
        if let Some(ns) = namespace {
            cmd = cmd.args(["-n", ns]);
        }
        cmd.arg(format!("--timeout={}s", whole_seconds(timeout))).deadline(timeout + Duration::from_secs(15))
    }

    /// `kubectl wait` until a Gateway API Gateway is `Programmed` (by its full name: [`gateway`]).
    pub fn wait_programmed(&self, namespace: &str, name: &str, timeout: Duration) -> Cmd {
        self.wait_condition("Programmed", &[gateway(name)], Some(namespace), timeout)
    }

    /// `<namespace>/<name>` of every Secret (names only; no data is printed).
    pub fn secret_names(&self) -> Cmd {
        self.base().args([
            "get",
            "secrets",
            "--all-namespaces",
            "--no-headers",
            "-o",
            "custom-columns=NS:.metadata.namespace,NAME:.metadata.name",
        ])
    }

    pub fn get_secret(&self, namespace: &str, name: &str) -> Cmd {
        self.base().args(["get", "secret", name, "-n", namespace, "-o", "json"])
    }

    /// Read a secret's keys and decode them in-process. The values never pass through argv or
    /// the terminal; each is registered with the redactor as it is decoded.
    pub fn read_secret(
        &self,
        namespace: &str,
        name: &str,
        keys: &[&str],
    ) -> Result<BTreeMap<String, Secret>> {
        let cmd = self.get_secret(namespace, name);
        let out = self.run(&cmd).map_err(|e| match &e {
            Error::Command { stderr_tail, .. } if stderr_tail.contains("NotFound") => Error::prerequisite(
                format!("secret {namespace}/{name} not found (`{cmd}`); nothing was restarted"),
                format!(
                    "restore it with the keys {} (the databases' credentials), e.g. `kubectl --context {} \
                     -n {namespace} create secret generic {name} --from-env-file=<file of KEY=value lines>`, \
                     then run again",
                    keys.join(", "),
                    self.context
                ),
            ),
            _ => e,
        })?;
        decode_secret(&out.stdout, keys).map_err(|problem| {
            Error::prerequisite(
                format!("secret {namespace}/{name}: {problem}; nothing was restarted"),
                format!(
                    "check the secret with `kubectl --context {} describe secret {name} -n {namespace}` \
                     (it must have the keys {})",
                    self.context,
                    keys.join(", ")
                ),
            )
        })
    }

    /// Turn kubectl's well-known failures into errors that say what to do.
    pub fn explain(&self, err: Error) -> Error {
        let Error::Command { stderr_tail, .. } = &err else {
            return err;
        };
        let text = stderr_tail.clone();
        if text.contains("does not exist") && text.contains("context")
            || text.contains("context was not found")
        {
            let cluster = self.context.strip_prefix("kind-").unwrap_or(&self.context);
            return Error::prerequisite(
                format!("kube context `{}` is not in your kubeconfig", self.context),
                format!("run `kind export kubeconfig --name {cluster}`, then run again"),
            );
        }
        if text.contains("NotFound") {
            return err.with_next(
                "the stack file names an object the cluster does not have: check the \
                 namespace and name, or run `bookstore down && bookstore up` to rebuild the stack",
            );
        }
        err
    }
}

/// A Gateway API Gateway by its full resource name: Istio serves a `gateway` kind too
/// (networking.istio.io), and `gateway/<name>` leaves kubectl to pick one (istio/istio#44354).
fn gateway(name: &str) -> String {
    format!("gateways.gateway.networking.k8s.io/{name}")
}

/// `istioctl version --remote=false`: the client's release (the tag of Istio's images).
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

/// `istioctl manifest generate` with the same flags: what the install would apply (read-only,
/// no cluster needed), the images of its workloads among it.
pub fn istioctl_manifest(flags: &[String]) -> Cmd {
    Cmd::new("istioctl")
        .args(["manifest", "generate"])
        .args(flags.iter().cloned())
        .deadline(Duration::from_secs(120))
}

#[cfg(test)]
mod tests;
