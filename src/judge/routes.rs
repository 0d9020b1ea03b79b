//! Whether a route works: how one answer is judged (Envoy's upstream reset, an error status, the
//! connectors not all RUNNING). Said once here: `smoke` retries it, `status` tabulates it,
//! `doctor` and the planner read it as evidence, `watch`'s check reports it. The probing itself
//! (IO) is `observe::routes`.

use crate::http::Response;
use crate::observe::routes::Probe;
use crate::stack::{Check, Stack};

const ENVOY_RESET: &str = "upstream connect error or disconnect/reset before headers.";

/// What one route's answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A 2xx or 3xx answer (for Connect's route: every connector RUNNING).
    Works,
    /// The gateway's Envoy answered with its upstream reset: the workload behind it cannot be
    /// reached (the signature of stale Istio ambient registrations).
    Reset { status: u16, reason: String },
    /// Another error status, with the answer cut to one line.
    Status { status: u16, summary: String },
    /// No answer at all (refused, reset, timed out).
    NoAnswer(String),
    /// Connect answered, but not every stack connector is RUNNING (what is wrong with each).
    Connectors(String),
}

impl Route {
    pub fn works(&self) -> bool {
        *self == Route::Works
    }

    /// Envoy's reset reason, when the gateway answered with its upstream reset.
    pub fn reset(&self) -> Option<&str> {
        match self {
            Route::Reset { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// What is wrong and, when it can tell, why (`None` when the route works).
    pub fn why(&self) -> Option<String> {
        match self {
            Route::Works => None,
            Route::Reset { status, reason } => Some(format!(
                "HTTP {status} from the gateway, upstream reset (reason: {reason}): the signature of stale \
                 Istio ambient (HBONE) registrations after a Docker restart"
            )),
            Route::Status { status, summary } => Some(format!("HTTP {status}: {summary}")),
            Route::NoAnswer(e) => Some(format!("no answer ({e})")),
            Route::Connectors(problems) => {
                Some(format!("connectors: {problems} (run `bookstore connectors`)"))
            }
        }
    }
}

/// Judge one answer to a route's request.
pub fn judge(stack: &Stack, check: &Check, answer: &std::result::Result<Response, String>) -> Route {
    let r = match answer {
        Ok(r) => r,
        Err(e) => return Route::NoAnswer(e.clone()),
    };
    if let Some(reason) = envoy_reset_reason(&r.body) {
        return Route::Reset { status: r.status, reason };
    }
    if !(200..400).contains(&r.status) {
        return Route::Status { status: r.status, summary: r.summary() };
    }
    if check.connectors_running {
        let Some(listed) = r.json().as_ref().and_then(crate::connect::states) else {
            return Route::Connectors("GET /connectors?expand=status did not answer a JSON object".into());
        };
        let problems: Vec<String> = stack
            .connect
            .connectors
            .iter()
            .filter_map(|c| match listed.get(&c.name) {
                None => Some(format!("{} missing", c.name)),
                Some(s) if s.running() => None,
                Some(s) if s.failed() => Some(format!("{} {}", c.name, s.summary())),
                Some(s) => Some(format!("{} not RUNNING ({})", c.name, s.summary())),
            })
            .collect();
        if !problems.is_empty() {
            return Route::Connectors(problems.join("; "));
        }
    }
    Route::Works
}

/// Judge a probe's answer.
pub fn probe(stack: &Stack, probe: &Probe) -> Route {
    judge(stack, &probe.check, &probe.answer)
}

/// Connect's own route: the stack's check that lists the connectors (`connectors_running`), the
/// one place its answer is looked up.
pub fn connect(probes: &[Probe]) -> Option<&Probe> {
    probes.iter().find(|p| p.check.connectors_running)
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
        let why = judge(&stack, check, &Ok(Response { status: 503, body: body.into() }));
        assert_eq!(why.reset(), Some("connection termination"));
        let why = why.why().unwrap();
        assert!(why.contains("connection termination") && why.contains("ambient"), "{why}");
        assert!(judge(&stack, check, &Ok(Response { status: 200, body: "<html>".into() })).works());
        let none = judge(&stack, check, &Err("connection reset".into()));
        assert!(none.why().unwrap().contains("no answer"));
        let failing = judge(&stack, check, &Ok(Response { status: 500, body: "oops\nmore".into() }));
        assert_eq!(failing.why().as_deref(), Some("HTTP 500: oops"));
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
        assert!(judge(&stack, check, &Ok(Response { status: 200, body: ok })).works());
        let why = judge(&stack, check, &Ok(Response { status: 200, body: "{}".into() })).why().unwrap();
        assert!(why.contains("ecom-connector missing") && why.contains("inventory-connector missing"));
        let paused = format!(
            r#"{{"ecom-connector":{{"status":{{"connector":{{"state":"PAUSED"}},"tasks":[{running}]}}}},
                "inventory-connector":{{"status":{{"connector":{running},"tasks":[{{"id":0,"state":"FAILED","trace":"boom\nat"}}]}}}}}}"#
        );
        let why = judge(&stack, check, &Ok(Response { status: 200, body: paused })).why().unwrap();
        assert!(why.contains("ecom-connector not RUNNING (PAUSED (1/1 tasks running))"), "{why}");
        assert!(why.contains("inventory-connector task 0 FAILED: boom"), "{why}");
    }
}
