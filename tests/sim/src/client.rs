//! A minimal HTTP/1.1 client for loopback (`Connection: close`): `bookstore-sim ctl`, the
//! bench's route poll and the test kit's requests. Every request is bounded by its deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// An answer: the status code, the status line and headers, and the (de-chunked) body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// One request to `addr` (`127.0.0.1:port`). `host` is the Host header (default: `addr`).
/// Err when the connection is refused, reset or closed before an answer, or the deadline passes.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    host: Option<&str>,
    body: &str,
    timeout: Duration,
) -> Result<Answer> {
    request_typed(addr, method, path, host, "application/json", body, timeout)
}

/// The same with another `Content-Type` (none when empty).
pub fn request_typed(
    addr: &str,
    method: &str,
    path: &str,
    host: Option<&str>,
    content_type: &str,
    body: &str,
    timeout: Duration,
) -> Result<Answer> {
    let deadline = Instant::now() + timeout;
    let sock: SocketAddr = addr.parse().with_context(|| format!("bad address {addr}"))?;
    let mut s =
        TcpStream::connect_timeout(&sock, timeout).with_context(|| format!("connecting to {addr}"))?;
    s.set_write_timeout(Some(timeout))?;
    let typed =
        if content_type.is_empty() { String::new() } else { format!("Content-Type: {content_type}\r\n") };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{typed}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        host.unwrap_or(addr),
        body.len()
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no complete answer from {addr} within {timeout:?}");
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e).with_context(|| format!("reading from {addr}")),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        bail!("{addr} closed the connection without an answer");
    };
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok(Answer { status, head: head.to_string(), body })
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
