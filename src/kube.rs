//! Typed `kubectl` commands. Every one carries `--context kind-<cluster>`, so the tool never acts
//! on whatever context happens to be current.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::cluster::PodRestart;
use crate::error::{Error, Result};
use crate::exec::{Cmd, Output};
use crate::secret::Secret;
use crate::wait::{Attempt, Poll};

#[derive(Clone, Debug)]
pub struct Kubectl {
    context: String,
    /// How long a command is retried while the apiserver fails transiently.
    retry_for: Duration,
    /// `kubectl rollout restart -f -` started ahead of need ([`Kubectl::warm_restarts`]), shared
    /// by every clone: a restart takes one instead of starting kubectl.
    warm: Warm,
}

/// Children waiting for their objects on stdin; dropped unused, they are killed and reaped.
#[derive(Clone, Default)]
struct Warm(std::sync::Arc<std::sync::Mutex<Vec<crate::exec::Early>>>);

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|w| w.len()).unwrap_or(0);
        write!(f, "Warm({n})")
    }
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

/// The objects (kind, namespace, name) as the List `kubectl rollout restart -f -` reads on stdin.
fn restart_items(targets: &[(&str, &str, &str)]) -> String {
    let items: Vec<serde_json::Value> = targets
        .iter()
        .map(|(kind, ns, name)| {
            let kind = if *kind == "daemonset" { "DaemonSet" } else { "Deployment" };
            serde_json::json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}})
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// The objects `kubectl rollout restart` reports as restarted (`deployment.apps/x restarted`).
pub fn restarted(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_suffix(" restarted"))
        .filter_map(|obj| obj.rsplit_once('/').map(|(_, name)| name.to_string()))
        .collect()
}

impl Kubectl {
    pub fn new(context: String, retry_for: Duration) -> Kubectl {
        Kubectl { context, retry_for, warm: Warm::default() }
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

    /// `rollout restart` of every target (kind, namespace, name), in as many namespaces as given,
    /// with one kubectl call: the objects are named on stdin, so kubectl takes each one's
    /// namespace from there. Transient apiserver failures are retried for the targets not yet
    /// restarted (kubectl reports each `… restarted`), as is kubectl's refusal of a second restart
    /// within one second (a rerun right after an interrupted run meets it).
    /// A warm kubectl ([`Kubectl::warm_restarts`]) makes the first attempt when there is one.
    pub fn restart_all(&self, targets: &[(&str, &str, &str)]) -> Result<()> {
        let mut left: Vec<(String, String, String)> =
            targets.iter().map(|(k, ns, n)| (k.to_string(), ns.to_string(), n.to_string())).collect();
        let what = format!("{} (the Kubernetes API kept failing)", self.restart_list(targets));
        let next = self.api_hint();
        let mut early = self.take_warm(&self.restart_list(targets));
        Poll::new(&what, self.retry_for, &next).run(|| {
            let refs: Vec<(&str, &str, &str)> =
                left.iter().map(|(k, ns, n)| (k.as_str(), ns.as_str(), n.as_str())).collect();
            let cmd = self.restart_list(&refs);
            let ran = match early.take() {
                Some(e) if e.cmd().same_argv(&cmd) => e.feed(restart_items(&refs)),
                _ => cmd.run_unchecked(),
            };
            let out = match ran {
                Ok(out) => out,
                Err(e) => return Attempt::Fail(e),
            };
            // Names are unique across the stack (checked when it loads).
            let done = restarted(&out.stdout);
            left.retain(|(_, _, n)| !done.contains(n));
            let too_soon = out.stderr.contains("already been triggered within the past second");
            if out.status.success() || left.is_empty() {
                Attempt::Done(())
            } else if transient(&out.stderr) || too_soon {
                Attempt::Retry(crate::exec::tail(&out.stderr, 1))
            } else {
                let status = out.status.code().map_or("killed by a signal".into(), |c| format!("exit {c}"));
                Attempt::Fail(self.explain(cmd.failure(&status, &out.stderr)))
            }
        })
    }

    /// Keep `n` `kubectl rollout restart -f -` started, waiting for their objects on stdin
    /// (kubectl's start-up and kubeconfig done): the next restarts cost no process start-up.
    /// Started while what a restart waits for becomes Ready, never on the critical path.
    pub fn warm_restarts(&self, n: usize) {
        let Ok(mut warm) = self.warm.0.lock() else { return };
        while warm.len() < n {
            match self.base().args(["rollout", "restart", "-f", "-"]).start_early() {
                Ok(early) => warm.push(early),
                Err(_) => return,
            }
        }
    }

    /// A warm kubectl that runs `cmd`'s argv, if one is waiting.
    fn take_warm(&self, cmd: &Cmd) -> Option<crate::exec::Early> {
        let mut warm = self.warm.0.lock().ok()?;
        let i = warm.iter().position(|e| e.cmd().same_argv(cmd))?;
        Some(warm.swap_remove(i))
    }

    /// Kill and reap the warm kubectls no restart took.
    pub fn cool(&self) {
        let unused = self.warm.0.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default();
        drop(unused);
    }

    /// `kubectl rollout restart` of the objects (kind, namespace, name): one DaemonSet (ztunnel)
    /// as `daemonset/<name> -n <ns>`, the guide's line; deployments always as `-f -` with them as
    /// a List on stdin, one call for all of them in any namespaces, so the command the rollout
    /// runs is the one `--dry-run` shows whichever restarts fall due together.
    pub fn restart_list(&self, targets: &[(&str, &str, &str)]) -> Cmd {
        if let [(kind @ "daemonset", ns, name)] = targets {
            return self.base().args(["rollout", "restart", &format!("{kind}/{name}"), "-n", ns]);
        }
        self.base().args(["rollout", "restart", "-f", "-"]).stdin_text(restart_items(targets))
    }

    /// Restart one pod by deleting it: its controller recreates it ([`PodRestart`]: the only
    /// deletion outside `down`). `--wait=false`: the caller waits for the replacement (a pod
    /// that is not this one, by its UID), not for this one's graceful termination.
    pub fn delete_pod(&self, pod: &PodRestart) -> Cmd {
        self.base()
            .args(["delete", "pod", pod.name(), "-n", pod.namespace(), "--wait=false"])
            .deadline(Duration::from_secs(30))
    }

    pub fn context(&self) -> &str {
        &self.context
    }

    fn base(&self) -> Cmd {
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

    /// The last `tail` lines of a workload's pod (`daemonset/ztunnel`: kubectl picks its pod; a
    /// kind cluster of one node has exactly one).
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

    /// Server-side apply of manifests sent on stdin (never in argv: they can hold secrets).
    pub fn apply(&self, manifests: Secret) -> Cmd {
        self.base()
            .args(["apply", "--server-side", "--field-manager=bookstore", "--force-conflicts", "-f", "-"])
            .stdin(manifests)
            .deadline(Duration::from_secs(120))
    }

    /// Server-side apply of a stream of manifests, printing the objects as applied (a `List`
    /// of them, or the one object), so their generations are known.
    pub fn apply_objects(&self, manifests: Secret) -> Cmd {
        self.apply(manifests).args(["-o", "json"])
    }

    /// Server-side apply of a remote manifest (kubectl fetches it).
    pub fn apply_url(&self, url: &str) -> Cmd {
        self.base()
            .args(["apply", "--server-side", "--field-manager=bookstore", "--force-conflicts", "-f", url])
            .deadline(Duration::from_secs(180))
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

/// Decode the named keys of a `kubectl get secret -o json` document.
pub fn decode_secret(json: &str, keys: &[&str]) -> std::result::Result<BTreeMap<String, Secret>, String> {
    let doc: Value = serde_json::from_str(json).map_err(|e| format!("kubectl printed invalid JSON: {e}"))?;
    let data = doc.get("data").and_then(Value::as_object);
    let mut missing = Vec::new();
    let mut out = BTreeMap::new();
    for key in keys {
        let Some(encoded) = data.and_then(|d| d.get(*key)).and_then(Value::as_str) else {
            missing.push(*key);
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| format!("key {key} is not valid base64"))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("key {key} is not UTF-8 text"))?;
        if text.is_empty() {
            missing.push(*key);
            continue;
        }
        out.insert(key.to_string(), Secret::new(text));
    }
    if !missing.is_empty() {
        return Err(format!("missing or empty key(s): {}", missing.join(", ")));
    }
    Ok(out)
}

/// One line per pod of a `kubectl get pods -o json` list: phase, readiness, why a container
/// waits (CrashLoopBackOff, ImagePullBackOff and their messages), restarts, the last exit.
pub fn pod_states(json: &str) -> std::result::Result<Vec<String>, String> {
    let doc: Value = serde_json::from_str(json).map_err(|e| format!("kubectl printed invalid JSON: {e}"))?;
    let items = doc.get("items").and_then(Value::as_array).ok_or("no `items` list")?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = Vec::new();
    for pod in items {
        let name = text(pod.pointer("/metadata/name"));
        let phase = text(pod.pointer("/status/phase"));
        let ready = pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
        let mut parts = vec![
            if phase.is_empty() { "unknown phase".to_string() } else { phase },
            if ready { "Ready" } else { "not Ready" }.to_string(),
        ];
        let mut restarts = 0i64;
        let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array);
        for c in statuses.into_iter().flatten() {
            restarts = restarts.saturating_add(c.get("restartCount").and_then(Value::as_i64).unwrap_or(0));
            if let Some(w) = c.pointer("/state/waiting") {
                let reason = text(w.get("reason"));
                let message: String = text(w.get("message")).chars().take(160).collect();
                let shown = if message.is_empty() { reason } else { format!("{reason} ({message})") };
                parts.push(format!("waiting: {shown}"));
            }
            if let Some(t) = c.pointer("/lastState/terminated") {
                let code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
                parts.push(format!("last exit: {} (exit code {code})", text(t.get("reason"))));
            }
        }
        if restarts > 0 {
            parts.push(format!("restarted {restarts} time{}", if restarts == 1 { "" } else { "s" }));
        }
        out.push(format!("{name}: {}", parts.join(", ")));
    }
    Ok(out)
}

/// Where a deployment's rollout stands, by kubectl's own `rollout status` rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    Done,
    Waiting(String),
    Failed(String),
}

/// (namespace, name) → metadata.generation of every Deployment in `kubectl apply -o json`'s
/// output (one object, or a `List` of them).
pub fn applied_generations(stdout: &str) -> std::result::Result<BTreeMap<(String, String), i64>, String> {
    let mut out = BTreeMap::new();
    for doc in serde_json::Deserializer::from_str(stdout).into_iter::<Value>() {
        let doc = doc.map_err(|e| format!("invalid JSON: {e}"))?;
        let items = match doc.get("items").and_then(Value::as_array) {
            Some(items) => items.clone(),
            None => vec![doc],
        };
        for item in items {
            if item.get("kind").and_then(Value::as_str) != Some("Deployment") {
                continue;
            }
            let meta =
                |k: &str| item.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).map(String::from);
            if let (Some(ns), Some(name)) = (meta("namespace"), meta("name")) {
                let generation = item.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
                out.insert((ns, name), generation);
            }
        }
    }
    Ok(out)
}

/// kubectl's `rollout status` rules for a Deployment (pkg/polymorphichelpers/rollout_status.go).
pub fn deployment_rollout(obj: &Value) -> Rollout {
    let int = |path: &[&str]| {
        let mut v = obj;
        for key in path {
            match v.get(key) {
                Some(next) => v = next,
                None => return 0,
            }
        }
        v.as_i64().unwrap_or(0)
    };
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?");
    let generation = int(&["metadata", "generation"]);
    let observed = int(&["status", "observedGeneration"]);
    if generation > observed {
        return Rollout::Waiting("waiting for the deployment spec update to be observed".into());
    }
    let deadline_exceeded = obj.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Progressing")
                && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
        })
    });
    if deadline_exceeded {
        return Rollout::Failed(format!("deployment {name:?} exceeded its progress deadline"));
    }
    let replicas = obj.pointer("/spec/replicas").and_then(Value::as_i64);
    let updated = int(&["status", "updatedReplicas"]);
    let total = int(&["status", "replicas"]);
    let available = int(&["status", "availableReplicas"]);
    if let Some(wanted) = replicas
        && updated < wanted
    {
        return Rollout::Waiting(format!("{updated} out of {wanted} new replicas have been updated"));
    }
    if total > updated {
        return Rollout::Waiting(format!("{} old replicas are pending termination", total - updated));
    }
    if available < updated {
        return Rollout::Waiting(format!("{available} of {updated} updated replicas are available"));
    }
    Rollout::Done
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

/// `istioctl install` with the stack's flags (`bootstrap.istio.install`, said once for this and
/// `istioctl_manifest`), on the cluster's context, like every kubectl call, without asking.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollout_rules_match_kubectls() {
        let d = |generation: i64, observed: i64, updated: i64, total: i64, available: i64| {
            json!({"metadata": {"name": "x", "generation": generation}, "spec": {"replicas": 1},
                   "status": {"observedGeneration": observed, "updatedReplicas": updated,
                              "replicas": total, "availableReplicas": available}})
        };
        assert!(matches!(deployment_rollout(&d(3, 2, 1, 1, 1)), Rollout::Waiting(_)));
        assert!(matches!(deployment_rollout(&d(3, 3, 0, 1, 1)), Rollout::Waiting(_)));
        assert!(matches!(deployment_rollout(&d(3, 3, 1, 2, 1)), Rollout::Waiting(_)));
        assert!(matches!(deployment_rollout(&d(3, 3, 1, 1, 0)), Rollout::Waiting(_)));
        assert_eq!(deployment_rollout(&d(3, 3, 1, 1, 1)), Rollout::Done);
        let stuck = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
            "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}});
        assert!(matches!(deployment_rollout(&stuck), Rollout::Failed(_)));
    }

    #[test]
    fn pod_states_name_why_a_pod_is_not_ready() {
        let list = json!({"items": [
            {"metadata": {"name": "a-1"}, "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                    "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]}},
            {"metadata": {"name": "b-2"}, "status": {"phase": "Pending",
                "containerStatuses": [{"restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": "Back-off pulling image \"x:1\""}}}]}},
            {"metadata": {"name": "c-3"}, "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}]}}
        ]});
        let states = pod_states(&list.to_string()).unwrap();
        assert_eq!(
            states,
            [
                "a-1: Running, not Ready, waiting: CrashLoopBackOff (back-off 40s), last exit: Error (exit code 1), restarted 3 times",
                "b-2: Pending, not Ready, waiting: ImagePullBackOff (Back-off pulling image \"x:1\")",
                "c-3: Running, Ready",
            ]
        );
        assert!(pod_states("[]").is_err());
    }

    #[test]
    fn transient_api_failures_are_told_apart() {
        assert!(transient(
            "Error from server (ServiceUnavailable): the server is currently unable to handle the request"
        ));
        assert!(transient(
            "Error from server (InternalError): an error on the server (\"unknown\") has prevented the request from succeeding"
        ));
        assert!(transient(
            "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"
        ));
        assert!(transient("error: failed to patch: Internal error occurred: etcdserver: request timed out"));
        assert!(!transient("Error from server (NotFound): deployments.apps \"x\" not found"));
        assert!(!transient("error: context \"kind-x\" does not exist"));
    }

    #[test]
    fn restarted_objects_are_read_from_stdout() {
        let out = "deployment.apps/ecom-db restarted\ndeployment.apps/ecom-service restarted\n";
        assert_eq!(restarted(out), ["ecom-db", "ecom-service"]);
        assert_eq!(restarted("daemonset.apps/ztunnel restarted"), ["ztunnel"]);
        assert!(restarted("Error from server").is_empty());
    }

    #[test]
    fn secrets_decode_in_process_and_name_missing_keys() {
        let doc = r#"{"data": {"U": "dXNlcg==", "P": "cCdhIiQgXCDDvA==", "BAD": "%%%"}}"#;
        let got = decode_secret(doc, &["U", "P"]).unwrap();
        assert_eq!(got["U"].expose(), "user");
        assert_eq!(got["P"].expose(), "p'a\"$ \\ ü");
        assert!(decode_secret(doc, &["U", "NOPE"]).unwrap_err().contains("NOPE"));
        assert!(decode_secret(doc, &["BAD"]).unwrap_err().contains("base64"));
        assert!(decode_secret("not json", &["U"]).is_err());
    }
}
