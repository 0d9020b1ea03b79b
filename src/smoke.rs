//! The smoke test: every route through the host ports, retried within a deadline, every failure
//! reported (not only the first), Envoy's upstream-reset answer recognised and explained.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::stack::{Check, Stack};
use crate::ui::{Ui, human};

const ENVOY_RESET: &str = "upstream connect error or disconnect/reset before headers.";

pub fn request(stack: &Stack, check: &Check) -> Result<Request> {
    let port = stack.cluster.host_port(check.port)?;
    let path =
        if check.connectors_running { format!("{}?expand=status", check.path) } else { check.path.clone() };
    Ok(Request::get(format!("http://127.0.0.1:{port}{path}"))
        .host(check.host.clone())
        .timeout(Duration::from_secs(5)))
}

/// Judge one answer. `Ok` when the route works; `Err` says what is wrong and, when it can tell,
/// why.
pub fn judge(
    stack: &Stack,
    check: &Check,
    answer: std::result::Result<Response, String>,
) -> std::result::Result<(), String> {
    let r = match answer {
        Ok(r) => r,
        Err(e) => return Err(format!("no answer ({e})")),
    };
    if let Some(reason) = envoy_reset_reason(&r.body) {
        return Err(format!(
            "HTTP {} from the gateway, upstream reset (reason: {reason}): the signature of stale \
             Istio ambient (HBONE) registrations after a Docker restart",
            r.status
        ));
    }
    if !(200..400).contains(&r.status) {
        let first = r.body.lines().next().unwrap_or("").chars().take(160).collect::<String>();
        return Err(format!("HTTP {}: {first}", r.status));
    }
    if check.connectors_running {
        let Some(map) = r.json().and_then(|v| v.as_object().cloned()) else {
            return Err("GET /connectors?expand=status did not answer a JSON object".into());
        };
        let mut problems = Vec::new();
        for c in &stack.connect.connectors {
            match map.get(&c.name).and_then(|v| v.get("status")) {
                None => problems.push(format!("{} missing", c.name)),
                Some(status) => match crate::connect::running(status) {
                    Ok(true) => {}
                    Ok(false) => problems.push(format!("{} not RUNNING ({})", c.name, state(status))),
                    Err(trace) => problems.push(format!("{} FAILED: {}", c.name, trace.trim())),
                },
            }
        }
        if !problems.is_empty() {
            return Err(format!("connectors: {} (run `bookstore connectors`)", problems.join("; ")));
        }
    }
    Ok(())
}

/// Envoy's `upstream connect error or disconnect/reset before headers. [retried and the latest ]
/// reset reason: <reason>[, transport failure reason: …]` → the reason (kind-istio.md §2.4: match
/// the prefix, parse the reason).
pub fn envoy_reset_reason(body: &str) -> Option<String> {
    if !body.starts_with(ENVOY_RESET) {
        return None;
    }
    let reason = body.split("reset reason: ").nth(1).unwrap_or("");
    let reason = reason.split(", transport failure reason").next().unwrap_or("").trim();
    Some(if reason.is_empty() { "unknown".into() } else { reason.to_string() })
}

fn state(status: &Value) -> String {
    status.pointer("/connector/state").and_then(Value::as_str).unwrap_or("?").to_string()
}

/// Run every check until all pass or the deadline passes; then report each failing one.
pub fn run(stack: &Stack, ui: &Ui, deadline: Duration) -> Result<()> {
    let start = Instant::now();
    let mut pending: Vec<(&Check, Request, String)> = Vec::new();
    for check in &stack.smoke.checks {
        pending.push((check, request(stack, check)?, String::new()));
    }
    let mut delay = Duration::from_millis(200);
    loop {
        let results: Vec<std::result::Result<(), String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = pending
                .iter()
                .map(|(check, req, _)| scope.spawn(move || judge(stack, check, req.send())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("check panicked".into()))).collect()
        });
        let mut still = Vec::new();
        for ((check, req, _), result) in pending.into_iter().zip(results) {
            match result {
                Ok(()) => ui.ok_item(
                    &format!("{} {} ({})", check.name, req.url, human(start.elapsed())),
                    "check_passed",
                    serde_json::json!({"check": check.name, "url": req.url}),
                ),
                Err(why) => still.push((check, req, why)),
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(());
        }
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            let failures = pending
                .iter()
                .map(|(check, req, why)| {
                    let host = check.host.as_deref().map(|h| format!(" (Host: {h})")).unwrap_or_default();
                    let serves = check.serves.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
                    format!("{}{serves}: GET {}{host}: {why}", check.name, req.url)
                })
                .collect();
            for (check, req, why) in &pending {
                ui.emit(
                    "check_failed",
                    serde_json::json!({"check": check.name, "url": req.url, "reason": why}),
                );
            }
            let stale = pending.iter().any(|(_, _, why)| why.contains("Istio ambient"));
            let next = if stale {
                "run `bookstore recover` (restarts ztunnel, then every workload)".to_string()
            } else {
                format!(
                    "check the failing workloads (`kubectl --context {} get pods -A`), or run `bookstore recover`",
                    stack.cluster.context()
                )
            };
            return Err(Error::Smoke { failures, next });
        }
        crate::wait::sleep(delay.min(left))?;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{Source, load};

    #[test]
    fn envoys_reset_is_named_with_its_reason_and_likely_cause() {
        let stack = load(Source::Embedded).unwrap();
        let check = &stack.smoke.checks[0];
        let body =
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
        let why = judge(&stack, check, Ok(Response { status: 503, body: body.into() })).unwrap_err();
        assert!(why.contains("connection termination") && why.contains("ambient"), "{why}");
        assert!(judge(&stack, check, Ok(Response { status: 200, body: "<html>".into() })).is_ok());
        assert!(judge(&stack, check, Err("connection reset".into())).unwrap_err().contains("no answer"));
        let retried = "upstream connect error or disconnect/reset before headers. retried and the latest \
                       reset reason: connection failure, transport failure reason: delayed connect error: 111";
        assert_eq!(envoy_reset_reason(retried).as_deref(), Some("connection failure"));
        assert_eq!(envoy_reset_reason("no healthy upstream"), None);
    }

    #[test]
    fn the_connect_check_wants_every_connector_running() {
        let stack = load(Source::Embedded).unwrap();
        let check = stack.smoke.checks.iter().find(|c| c.connectors_running).unwrap();
        let running = r#"{"state":"RUNNING"}"#;
        let ok = format!(
            r#"{{"ecom-connector":{{"status":{{"connector":{running},"tasks":[{running}]}}}},
                "inventory-connector":{{"status":{{"connector":{running},"tasks":[{running}]}}}}}}"#
        );
        assert!(judge(&stack, check, Ok(Response { status: 200, body: ok })).is_ok());
        let why = judge(&stack, check, Ok(Response { status: 200, body: "{}".into() })).unwrap_err();
        assert!(why.contains("ecom-connector missing") && why.contains("inventory-connector missing"));
    }
}
