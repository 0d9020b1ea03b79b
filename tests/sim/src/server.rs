//! Listeners that can be switched off and on (Docker down, API server refusing), and the small
//! HTTP helpers every room uses. Only this module accepts connections.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

pub type Body = UnsyncBoxBody<Bytes, io::Error>;
pub type Resp = Response<Body>;
pub type HandlerFut = Pin<Box<dyn Future<Output = Result<Resp, io::Error>> + Send>>;
/// A request handler. `Err` closes the connection without an answer (a reset, as a client sees it).
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFut + Send + Sync>;

/// On/off switch of one listener; `epoch` changes to drop every open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortState {
    pub on: bool,
    pub epoch: u64,
}

pub enum Bind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

pub fn body(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e: Infallible| match e {}).boxed_unsync()
}

pub fn resp(status: u16, content_type: &str, b: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(body(b));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

pub fn json(status: u16, v: &Value) -> Resp {
    resp(status, "application/json", v.to_string())
}

/// The request head and its body (at most 16 MiB; a broken body reads as empty).
pub async fn read(req: Request<Incoming>) -> (hyper::http::request::Parts, Bytes) {
    let (parts, b) = req.into_parts();
    let bytes = match Limited::new(b, 16 << 20).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    (parts, bytes)
}

/// Query parameters, percent-decoded.
pub fn query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn serve_conn<T>(io: T, handler: Handler, mut st: watch::Receiver<PortState>, epoch: u64)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handler(req));
    // Upgrades: `kubectl port-forward` (WebSocket, or SPDY) takes the connection over.
    let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(io), svc).with_upgrades();
    let dropped = async {
        loop {
            {
                let s = *st.borrow_and_update();
                if !s.on || s.epoch != epoch {
                    return;
                }
            }
            if st.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = conn => {}
        _ = dropped => {}
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

async fn bind(b: &Bind, initial: &mut Option<std::net::TcpListener>) -> io::Result<Listener> {
    match b {
        Bind::Tcp(addr) => {
            if let Some(l) = initial.take() {
                l.set_nonblocking(true)?;
                return Ok(Listener::Tcp(tokio::net::TcpListener::from_std(l)?));
            }
            Ok(Listener::Tcp(tokio::net::TcpListener::bind(addr).await?))
        }
        Bind::Unix(path) => {
            let _ = std::fs::remove_file(path);
            Ok(Listener::Unix(tokio::net::UnixListener::bind(path)?))
        }
    }
}

/// Serve `handler` on `bind` while the switch is on; drop the listener (and every connection)
/// while it is off, and every connection when its epoch changes. Ends when `shutdown` turns true.
pub async fn supervise(
    b: Bind,
    mut initial: Option<std::net::TcpListener>,
    mut st: watch::Receiver<PortState>,
    handler: Handler,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        let cur = *st.borrow_and_update();
        if !cur.on {
            initial = None;
            tokio::select! {
                r = st.changed() => if r.is_err() { break },
                _ = shutdown.changed() => break,
            }
            continue;
        }
        let listener = match bind(&b, &mut initial).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // A new epoch drops the open connections (`serve_conn` watches it), not the listener: a
        // Docker restart that is over when it returns leaves no moment without a socket.
        let mut epoch = cur.epoch;
        loop {
            tokio::select! {
                r = accept(&listener, handler.clone(), st.clone(), epoch) => {
                    if r.is_err() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                r = st.changed() => {
                    if r.is_err() { return; }
                    let s = *st.borrow();
                    if !s.on { break; }
                    epoch = s.epoch;
                }
                _ = shutdown.changed() => {
                    if let Bind::Unix(p) = &b { let _ = std::fs::remove_file(p); }
                    return;
                }
            }
        }
        drop(listener);
        if let Bind::Unix(p) = &b {
            let _ = std::fs::remove_file(p);
        }
    }
    if let Bind::Unix(p) = &b {
        let _ = std::fs::remove_file(p);
    }
}

async fn accept(
    l: &Listener,
    handler: Handler,
    st: watch::Receiver<PortState>,
    epoch: u64,
) -> io::Result<()> {
    match l {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            tokio::spawn(serve_conn(s, handler, st, epoch));
        }
        Listener::Unix(l) => {
            let (s, _) = l.accept().await?;
            tokio::spawn(serve_conn(s, handler, st, epoch));
        }
    }
    Ok(())
}
