//! Typed `kubectl` commands. Every one carries `--context kind-<cluster>`, so the tool never acts
//! on whatever context happens to be current.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::secret::Secret;

#[derive(Clone, Debug)]
pub struct Kubectl {
    context: String,
}

impl Kubectl {
    pub fn new(context: String) -> Kubectl {
        Kubectl { context }
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

    pub fn restart(&self, kind: &str, names: &[&str], namespace: &str) -> Cmd {
        self.base()
            .args(["rollout", "restart"])
            .args(names.iter().map(|n| format!("{kind}/{n}")))
            .args(["-n", namespace])
    }

    pub fn rollout_status(&self, kind: &str, name: &str, namespace: &str, timeout: Duration) -> Cmd {
        self.base()
            .args(["rollout", "status", &format!("{kind}/{name}"), "-n", namespace])
            .arg(format!("--timeout={}s", timeout.as_secs().max(1)))
            .deadline(timeout + Duration::from_secs(15))
    }

    pub fn list_deployments(&self) -> Cmd {
        self.base().args(["get", "deployments", "--all-namespaces", "-o", "json"])
    }

    pub fn list_pods(&self) -> Cmd {
        self.base().args(["get", "pods", "--all-namespaces", "-o", "json"]).deadline(Duration::from_secs(30))
    }

    /// Core v1 Events of every namespace (the kubelet's and the scheduler's words about pods).
    pub fn list_events(&self) -> Cmd {
        self.base()
            .args(["get", "events", "--all-namespaces", "-o", "json"])
            .deadline(Duration::from_secs(30))
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

    /// Server-side apply of manifests sent on stdin (never in argv: they can hold secrets).
    pub fn apply(&self, manifests: Secret) -> Cmd {
        self.base()
            .args(["apply", "--server-side", "--field-manager=bookstore", "--force-conflicts", "-f", "-"])
            .stdin(manifests)
            .deadline(Duration::from_secs(120))
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
        cmd.arg(format!("--timeout={}s", timeout.as_secs().max(1)))
            .deadline(timeout + Duration::from_secs(15))
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
        let out = cmd.run().map_err(|e| self.explain(e))?;
        decode_secret(&out.stdout, keys).map_err(|problem| {
            Error::prerequisite(
                format!("secret {namespace}/{name}: {problem}"),
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

/// Where a deployment's rollout stands, by kubectl's own `rollout status` rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    Done,
    Waiting(String),
    Failed(String),
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
