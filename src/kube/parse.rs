//! What kubectl prints, read: a secret's keys decoded in-process, pods' states, the generations
//! an apply left, a deployment's rollout by kubectl's own rules. Pure.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use crate::secret::Secret;

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
