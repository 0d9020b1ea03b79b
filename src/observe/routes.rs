//! The routes: how one is probed (a GET through its host port with its Host header), every route
//! at once. What an answer means is judged in `judge::routes`.

use std::time::Duration;

use crate::error::Result;
use crate::http::{Request, Response};
use crate::stack::{Check, Stack};

/// How long one probe waits for its answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The request that probes a route (on a shared cluster, as printed: its port is a port-forward's).
pub fn request(stack: &Stack, check: &Check) -> Result<Request> {
    Ok(request_at(&crate::ports::shown(stack, check.port)?, check))
}

/// The request that probes a route at `base` (`http://127.0.0.1:<port>`).
fn request_at(base: &str, check: &Check) -> Request {
    let path =
        if check.connectors_running { format!("{}?expand=status", check.path) } else { check.path.clone() };
    Request::get(format!("{base}{path}")).host(check.host.clone()).timeout(PROBE_TIMEOUT)
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

/// Probe these routes once, all at once. A route whose port has no fixed host port is left out;
/// on a shared cluster each port is a port-forward, opened for these probes (all at once) and
/// stopped after them, and a route whose forward did not listen answers with why.
pub fn probe_all<'a>(stack: &Stack, checks: impl IntoIterator<Item = &'a Check>) -> Vec<Probe> {
    let checks: Vec<&Check> = checks.into_iter().collect();
    let mut ports: Vec<u16> = checks.iter().map(|c| c.port).collect();
    ports.sort_unstable();
    ports.dedup();
    let opened: Vec<(u16, std::result::Result<crate::ports::Port, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ports
            .iter()
            .map(|p| (*p, scope.spawn(move || crate::ports::open(stack, *p).map_err(|e| e.headline()))))
            .collect();
        handles.into_iter().map(|(p, h)| (p, h.join().unwrap_or_else(|_| Err("panicked".into())))).collect()
    });
    let shared = stack.cluster.shared();
    let mut requests: Vec<(&Check, Request)> = Vec::new();
    let mut failed: Vec<Probe> = Vec::new();
    for check in checks {
        match opened.iter().find(|(p, _)| *p == check.port).map(|(_, o)| o) {
            Some(Ok(port)) => {
                requests.push((check, request_at(&format!("http://127.0.0.1:{}", port.local), check)))
            }
            Some(Err(e)) if shared => {
                let url = request(stack, check).map(|r| r.url).unwrap_or_default();
                failed.push(Probe {
                    check: check.clone(),
                    url,
                    answer: Err(format!("no port-forward: {e}")),
                });
            }
            _ => {}
        }
    }
    let mut probes = std::thread::scope(|scope| {
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
        handles.into_iter().filter_map(|h| h.join().ok()).collect::<Vec<Probe>>()
    });
    probes.extend(failed);
    drop(opened);
    probes
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
