//! The routes: how one is probed (a GET through its host port with its Host header), every route
//! at once. What an answer means is judged in `judge::routes`.

use std::time::Duration;

use crate::error::Result;
use crate::http::{Request, Response};
use crate::stack::{Check, Stack};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{Source, load};

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
