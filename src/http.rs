//! The only module that speaks HTTP (Kafka Connect REST and the smoke checks).
//!
//! A [`Request`] is a value that prints as a pasteable `curl` line with secrets masked. Sending one
//! never treats an HTTP status as an error (callers decide), never uses a proxy (every target is
//! on 127.0.0.1), and always has a deadline.

use std::fmt;
use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::exec::quote;
use crate::secret::{self, Secret};

/// Whether nothing holds `address:port`: a bind succeeds (released at once) and nothing accepts
/// a connection there. Both, because a bind alone can lie: on macOS (BSD sockets) a bind with
/// SO_REUSEADDR, which Rust's listener sets, succeeds on `127.0.0.1:P` while another process
/// listens on the wildcard `*:P`, and Docker's own port forwarding (vpnkit, or iptables DNAT
/// with the userland proxy off) accepts connections with nothing bound on the host.
pub fn port_free(address: &str, port: u16) -> bool {
    let bound = std::net::TcpListener::bind((address, port)).is_ok();
    let target = match address {
        "" | "0.0.0.0" => "127.0.0.1",
        "::" => "::1",
        a => a,
    };
    let answered = (target, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok());
    judge_port(bound, answered)
}

/// The port's verdict from the bind and the connect: free only when the bind succeeded and the
/// connect did not.
pub fn judge_port(bound: bool, answered: bool) -> bool {
    bound && !answered
}

/// Whether a Docker endpoint accepts a connection now (`unix://` socket, `tcp://host:port`);
/// `None` for endpoints a connect cannot tell (`ssh://`, `npipe://`). A connect, no process.
pub fn endpoint_accepts(host: &str) -> Option<bool> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Some(std::os::unix::net::UnixStream::connect(path).is_ok());
    }
    let address = host.strip_prefix("tcp://")?.trim_end_matches('/');
    let target = address.to_socket_addrs().ok()?.next()?;
    Some(std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok())
}

/// The addresses the system resolver gives a host name (what a browser would use: /etc/hosts,
/// then DNS). `Err` carries the resolver's words.
pub fn resolve(host: &str) -> Result<Vec<std::net::IpAddr>, String> {
    (host, 80).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub url: String,
    /// Sent as the `Host` header (the gateway routes on it), so no /etc/hosts entry is needed.
    pub host: Option<String>,
    /// A JSON body. Held as a secret: it may carry credentials.
    pub body: Option<Secret>,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// The longest answer summary shown.
pub const SUMMARY_MAX: usize = 200;

impl Response {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// What an answer says, in one line of at most [`SUMMARY_MAX`] characters (the first line of
    /// [`Response::message`]). Every command cuts an answer this way.
    pub fn summary(&self) -> String {
        let message = self.message();
        let line = message.lines().next().unwrap_or("").trim();
        if line.chars().count() <= SUMMARY_MAX {
            line.to_string()
        } else {
            format!("{} …", line.chars().take(SUMMARY_MAX).collect::<String>())
        }
    }

    /// What an answer says, whole: a JSON body's `message` (Kafka Connect's and Kubernetes'
    /// errors, which can span lines), an HTML page's title (a proxy's error page, never the raw
    /// markup), or else the body's first non-empty line.
    pub fn message(&self) -> String {
        let json_message =
            self.json().and_then(|v| v.get("message").and_then(serde_json::Value::as_str).map(String::from));
        match json_message {
            Some(m) => m,
            None => {
                let body = self.body.trim();
                let lower = body.to_ascii_lowercase();
                if lower.starts_with('<') {
                    let title = lower
                        .find("<title>")
                        .map(|i| i + "<title>".len())
                        .and_then(|start| lower[start..].find("</title>").map(|len| (start, start + len)))
                        .and_then(|(start, end)| body.get(start..end))
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .unwrap_or("no title");
                    format!("{title} (an HTML page, not the service's own answer: a proxy answered)")
                } else {
                    body.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(empty body)").to_string()
                }
            }
        }
    }
}

impl Request {
    pub fn get(url: String) -> Request {
        Request { method: Method::Get, url, host: None, body: None, timeout: Duration::from_secs(10) }
    }

    pub fn put_json(url: String, body: Secret) -> Request {
        Request {
            method: Method::Put,
            url,
            host: None,
            body: Some(body),
            // Connect validates a config against the database before answering; its own REST
            // timeout is 90 s.
            timeout: Duration::from_secs(95),
        }
    }

    pub fn host(mut self, host: Option<String>) -> Request {
        self.host = host;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = timeout;
        self
    }

    /// Send it. `Err` is a transport failure (refused, reset, timed out) as one line of text.
    pub fn send(&self) -> Result<Response, String> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(3).min(self.timeout)))
            .timeout_global(Some(self.timeout))
            .build();
        let agent: ureq::Agent = config.into();
        let result = match self.method {
            Method::Get => {
                let mut req = agent.get(&self.url);
                if let Some(host) = &self.host {
                    req = req.header("Host", host);
                }
                req.call()
            }
            Method::Put => {
                let mut req = agent.put(&self.url).header("Content-Type", "application/json");
                if let Some(host) = &self.host {
                    req = req.header("Host", host);
                }
                let body = self.body.as_ref().map(|b| b.expose().to_string()).unwrap_or_default();
                req.send(body)
            }
        };
        match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(8 * 1024 * 1024)
                    .read_to_string()
                    .map_err(|e| secret::redact(&format!("reading the answer: {e}")))?;
                Ok(Response { status, body })
            }
            Err(e) => Err(secret::redact(&e.to_string())),
        }
    }
}

impl fmt::Display for Request {
    /// A pasteable curl line; a body is shown with every known secret masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::from("curl -sS");
        if self.method == Method::Put {
            line.push_str(" -X PUT -H 'Content-Type: application/json'");
        }
        if let Some(host) = &self.host {
            line.push_str(&format!(" -H {}", quote(&format!("Host: {host}"))));
        }
        if let Some(body) = &self.body {
            line.push_str(&format!(" --data {}", quote(&secret::redact(body.expose()))));
        }
        line.push(' ');
        line.push_str(&quote(&self.url));
        f.write_str(&secret::redact(&line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port is free only if nothing holds it by either test. On macOS a bind with
    /// SO_REUSEADDR to `127.0.0.1:P` succeeds while another process listens on `*:P` (BSD
    /// sockets; Linux refuses it), and a forwarded port (Docker Desktop's, iptables DNAT)
    /// accepts with nothing bound here: the connect catches both.
    #[test]
    fn a_port_that_binds_but_answers_is_taken() {
        assert!(judge_port(true, false));
        assert!(!judge_port(true, true), "bind succeeded, a connect was answered: taken");
        assert!(!judge_port(false, false));
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(!port_free("127.0.0.1", port));
        assert!(!port_free("0.0.0.0", port), "the wildcard is checked through loopback");
        drop(held);
        assert!(port_free("127.0.0.1", port));
    }

    #[test]
    fn a_docker_endpoint_is_looked_at_without_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let host = format!("unix://{}", path.display());
        assert_eq!(endpoint_accepts(&host), Some(false), "no socket file");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(endpoint_accepts(&host), Some(true));
        drop(listener);
        assert_eq!(endpoint_accepts(&host), Some(false), "a socket file nobody listens on");
        assert_eq!(endpoint_accepts("ssh://me@host"), None, "a connect cannot tell");
    }

    #[test]
    fn an_answer_is_summed_up_in_one_line() {
        let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center></body></html>";
        let m = Response { status: 502, body: page.into() }.summary();
        assert_eq!(m, "502 Bad Gateway (an HTML page, not the service's own answer: a proxy answered)");
        let json = r#"{"error_code":409,"message":"Cannot complete request"}"#;
        assert_eq!(Response { status: 409, body: json.into() }.summary(), "Cannot complete request");
        assert_eq!(Response { status: 500, body: "\n oops \nmore".into() }.summary(), "oops");
        assert_eq!(Response { status: 500, body: String::new() }.summary(), "(empty body)");
        let long = "x".repeat(SUMMARY_MAX + 10);
        assert_eq!(Response { status: 500, body: long }.summary().chars().count(), SUMMARY_MAX + 2);
    }
}
