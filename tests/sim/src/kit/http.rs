//! A test's own requests to the world's loopback ports (the kube API, Connect, the gateway),
//! through the simulator's one client (`crate::client`): (status, status line and headers, body).

use std::time::Duration;

/// One request to `127.0.0.1:port` with this Host header and, if any, a (content type, body).
/// Err when the connection is refused, reset or closed before an answer.
pub fn http(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> Result<(u16, String, String), String> {
    let (content_type, text) = body.unwrap_or(("", ""));
    let addr = format!("127.0.0.1:{port}");
    crate::client::request_typed(&addr, method, path, Some(host), content_type, text, Duration::from_secs(10))
        .map(|a| (a.status, a.head, a.body))
        .map_err(|e| format!("{e:#}"))
}

/// `GET`: (status, body).
pub fn get(port: u16, host: &str, path: &str) -> Result<(u16, String), String> {
    http(port, "GET", host, path, None).map(|(s, _, b)| (s, b))
}

/// `PUT` a JSON body (Connect answers it).
#[track_caller]
pub fn put_json(port: u16, path: &str, body: &str) -> (u16, String, String) {
    http(port, "PUT", "localhost", path, Some(("application/json", body))).expect("connect answers")
}
