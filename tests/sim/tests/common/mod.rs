//! Helpers for the client tests: the real kubectl and docker against one simulator each.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Output;
use std::time::Duration;

use bookstore_sim::{Sim, SimOptions};

pub const SCALE: f64 = 0.02;

pub fn opts() -> SimOptions {
    SimOptions { time_scale: SCALE, ..SimOptions::default() }
}

pub fn start(opts: SimOptions) -> Sim {
    bookstore_sim::kit::healthy(opts, Duration::from_secs(10))
}

pub fn run(sim: &Sim, program: &str, args: &[&str]) -> Output {
    let mut c = sim.command(program);
    if program == "kubectl" {
        c.args(["--context", "kind-bookstore"]);
    }
    c.args(args);
    c.output().expect("client runs")
}

pub fn kubectl(sim: &Sim, args: &[&str]) -> Output {
    run(sim, "kubectl", args)
}

pub fn docker(sim: &Sim, args: &[&str]) -> Output {
    run(sim, "docker", args)
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One HTTP/1.1 request with `Connection: close`. Err when the connection is refused or reset
/// before an answer.
pub fn http(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> Result<(u16, String, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let (ct, b) = body.unwrap_or(("", ""));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if !ct.is_empty() {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    if raw.is_empty() {
        return Err("connection closed without a response".into());
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, head.to_string(), rest.to_string()))
}

pub fn get(port: u16, host: &str, path: &str) -> Result<(u16, String), String> {
    http(port, "GET", host, path, None).map(|(s, _, b)| (s, b))
}

pub fn put_json(port: u16, path: &str, body: &str) -> (u16, String, String) {
    http(port, "PUT", "localhost", path, Some(("application/json", body))).expect("connect answers")
}

pub use bookstore_sim::kit::eventually;

/// A flat connector config from the shipped file, with credentials inline.
pub fn flat_config(sim: &Sim, connector: &str, user: &str, pass: &str) -> serde_json::Value {
    let path = sim.dir().join("infra/debezium/connectors").join(format!("{connector}.json"));
    let text = std::fs::read_to_string(path).expect("connector file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut c = v["config"].clone();
    c["database.user"] = user.into();
    c["database.password"] = pass.into();
    c
}
