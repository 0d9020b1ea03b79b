//! The routes: how one is probed (a GET through its host port with its Host header) and how its
//! answer is judged (Envoy's upstream reset, an error status, connectors not RUNNING). Said once
//! here; `smoke` retries it, `status` tabulates it, `doctor` and the planner read it as evidence.

use std::time::Duration;

use serde_json::Value;

use crate::error::Result;
use crate::http::{Request, Response};
use crate::stack::{Check, Stack};

const ENVOY_RESET: &str = "upstream connect error or disconnect/reset before headers.";

/// How long one probe waits for its answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The request that probes a route.
pub fn request(stack: &Stack, check: &Check) -> Result<Request> {
    let port = stack.cluster.host_port(check.port)?;
    let path =
        if check.connectors_running { format!("{}?expand=status", check.path) } else { check.path.clone() };
    Ok(Request::get(format!("http://127.0.0.1:{port}{path}")).host(check.host.clone()).timeout(PROBE_TIMEOUT))
}

/// One route's answer.
#[derive(Clone, Debug)]
pub struct Probe {
    pub check: Check,
    pub url: String,
    pub answer: std::result::Result<Response, String>,
}

impl Probe {
    /// `Ok` when the route works; `Err` says what is wrong and, when it can tell, why.
    pub fn judge(&self, stack: &Stack) -> std::result::Result<(), String> {
        judge(stack, &self.check, self.answer.clone())
    }

    /// Envoy's reset reason, when the gateway answered with its upstream reset.
    pub fn reset_reason(&self) -> Option<String> {
        self.answer.as_ref().ok().and_then(|r| envoy_reset_reason(&r.body))
    }

    /// One line: `GET http://127.0.0.1:30000/ (Host: myecom.net) → 503 upstream connect error …`.
    pub fn line(&self) -> String {
        let host = self.check.host.as_deref().map(|h| format!(" (Host: {h})")).unwrap_or_default();
        let answer = match &self.answer {
            Ok(r) => format!("{} {}", r.status, r.summary()).trim_end().to_string(),
            Err(e) => format!("no answer ({e})"),
        };
        format!("GET {}{host} → {answer}", self.url)
    }
}

/// Probe these routes once, all at once. A route whose port has no fixed host port is left out.
pub fn probe_all<'a>(stack: &Stack, checks: impl IntoIterator<Item = &'a Check>) -> Vec<Probe> {
    let requests: Vec<(&Check, Request)> =
        checks.into_iter().filter_map(|c| request(stack, c).ok().map(|r| (c, r))).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(check, req)| {
                scope.spawn(move || Probe {
                    check: (*check).clone(),
                    url: req.url.clone(),
                    answer: req.send(),
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
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
        return Err(format!("HTTP {}: {}", r.status, r.summary()));
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

    #[test]
    fn a_probe_reads_as_one_pasteable_line() {
        let stack = load(Source::Embedded).unwrap();
        let probe = Probe {
            check: stack.smoke.checks[0].clone(),
            url: "http://127.0.0.1:30000/".into(),
            answer: Ok(Response { status: 503, body: "no healthy upstream\nmore".into() }),
        };
        assert_eq!(probe.line(), "GET http://127.0.0.1:30000/ (Host: myecom.net) → 503 no healthy upstream");
        let none = Probe { answer: Err("io: Peer disconnected".into()), ..probe };
        assert!(none.line().ends_with("→ no answer (io: Peer disconnected)"));
    }
}
