//! `pods/<name>/portforward` as kube-apiserver 1.32 serves it to the real kubectl 1.32, what
//! `kubectl port-forward` speaks (read from kubernetes `staging/src/k8s.io/kubectl/pkg/cmd/portforward`
//! and `client-go/tools/portforward`):
//!
//! - First a WebSocket `GET` asking for the subprotocol `SPDY/3.1+portforward.k8s.io`
//!   (`tunneling_dialer.go`: the protocol with `WebsocketsSPDYTunnelingPrefix`); the connection then
//!   carries SPDY/3.1 bytes in binary messages (`tunneling_connection.go`). kubectl falls back to a
//!   plain SPDY upgrade (`POST`, `Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version:
//!   portforward.k8s.io`) only when the WebSocket upgrade fails (`fallback_dialer.go`,
//!   `httpstream.IsUpgradeFailure`), or with `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`. Both are
//!   served here.
//! - Per local connection kubectl opens two SPDY streams with the headers `streamtype`
//!   (`error`, then `data`), `port` and `requestid` (`portforward.go` `handleConnection`), waits for
//!   each SYN_REPLY, half-closes the error stream, copies the connection into the data stream and
//!   reads the error stream to its end. It pings every 10 s (`PingPeriod`).
//! - Header blocks are one zlib stream per direction with the SPDY/3 dictionary (SPDY draft 3
//!   §2.6.10.1; `golang.org/x/net/spdy`).
//!
//! What answers inside the pod: a port-forward enters the pod's network namespace and connects to
//! localhost there, which Istio ambient's in-pod redirection does not capture, so a pod answers
//! whatever its mesh registration; the gateway pod proxies to the backends through the mesh as
//! its host port does (`dataplane::forwarded`). A port nothing listens on (a pod not Ready) gets
//! the kubelet's error on the error stream.

use std::collections::BTreeMap;
use std::io;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::audit::{AuditEntry, Source};
use crate::server::{self, Resp};
use crate::world::SharedRef;

/// The subprotocol kubectl 1.31+ asks for first, and the one of the plain SPDY upgrade.
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
pub const PROTOCOL: &str = "portforward.k8s.io";

/// The SPDY/3 header compression dictionary (SPDY draft 3, §2.6.10.1), 1423 bytes.
const DICTIONARY: &[u8] = include_bytes!("spdy_dictionary.bin");

/// Serve one `…/namespaces/<ns>/pods/<name>/portforward` request: the upgrade, then its streams.
pub async fn handle(shared: SharedRef, req: Request<Incoming>, ns: String, pod: String) -> Resp {
    let method = req.method().as_str().to_string();
    let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let websocket = header("upgrade").eq_ignore_ascii_case("websocket");
    let protocols = header("sec-websocket-protocol");
    let key = header("sec-websocket-key");
    let spdy = header("upgrade").eq_ignore_ascii_case("SPDY/3.1");
    let (running, status) = {
        let w = shared.lock();
        let obj = w.store.get(&crate::store::Key::new(crate::store::Res::Pods, &ns, &pod));
        let phase = obj.and_then(|o| o.pointer("/status/phase")).and_then(Value::as_str).unwrap_or("");
        (phase == "Running", if obj.is_none() { 404 } else { 400 })
    };
    let audit = |code: u16, detail: &str| {
        let mut w = shared.lock();
        let t_ms = w.t_ms();
        w.audit.push(AuditEntry {
            t_ms,
            source: Source::Kube,
            verb: method.clone(),
            path: path.clone(),
            content_type: None,
            body: String::new(),
            status: code,
            detail: detail.to_string(),
        });
    };
    if !running {
        audit(status, "port-forward refused: pod not running");
        let message = if status == 404 {
            format!("pods \"{pod}\" not found")
        } else {
            format!("unable to upgrade connection: pod {pod} is not running")
        };
        return server::json(
            status,
            &serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                                "message": message, "code": status}),
        );
    }
    let mut resp = Response::new(server::body(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    let transport = if websocket && protocols.split(',').any(|p| p.trim() == WEBSOCKET_PROTOCOL) {
        h.insert("upgrade", "websocket".parse().expect("ascii"));
        h.insert("connection", "Upgrade".parse().expect("ascii"));
        h.insert("sec-websocket-accept", accept_key(&key).parse().expect("base64"));
        h.insert("sec-websocket-protocol", WEBSOCKET_PROTOCOL.parse().expect("ascii"));
        Transport::WebSocket
    } else if spdy {
        h.insert("upgrade", "SPDY/3.1".parse().expect("ascii"));
        h.insert("connection", "Upgrade".parse().expect("ascii"));
        h.insert("x-stream-protocol-version", PROTOCOL.parse().expect("ascii"));
        Transport::Spdy
    } else {
        audit(400, "port-forward refused: no upgrade asked");
        return server::resp(400, "text/plain", "Upgrade request required");
    };
    audit(101, &format!("port-forward to pod {ns}/{pod} ({transport:?})"));
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let io = TokioIo::new(upgraded);
            let _ = serve(shared, io, transport, ns, pod).await;
        }
    });
    resp
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    WebSocket,
    Spdy,
}

/// `Sec-WebSocket-Accept` (RFC 6455 §4.2.2).
fn accept_key(key: &str) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

// ---- SPDY/3.1 framing ---------------------------------------------------------------------------

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;

enum Frame {
    Control { kind: u16, data: Vec<u8> },
    Data { stream: u32, data: Vec<u8> },
}

/// Complete frames at the front of `buf` (removed from it).
fn frames(buf: &mut Vec<u8>) -> Vec<Frame> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 8 {
            return out;
        }
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + len {
            return out;
        }
        let data = buf[8..8 + len].to_vec();
        if buf[0] & 0x80 != 0 {
            out.push(Frame::Control { kind: u16::from_be_bytes([buf[2], buf[3]]), data });
        } else {
            let stream = u32::from_be_bytes([buf[0] & 0x7f, buf[1], buf[2], buf[3]]);
            out.push(Frame::Data { stream, data });
        }
        buf.drain(..8 + len);
    }
}

fn control(kind: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80, 3];
    f.extend(kind.to_be_bytes());
    f.push(flags);
    f.extend(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend(data);
    f
}

fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut f = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
    f.push(flags);
    f.extend(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend(data);
    f
}

/// Each direction's header compression: one zlib stream with the SPDY dictionary.
struct Headers {
    inflate: Decompress,
    deflate: Compress,
}

impl Headers {
    fn new() -> Headers {
        let mut deflate = Compress::new(Compression::default(), true);
        let _ = deflate.set_dictionary(DICTIONARY);
        Headers { inflate: Decompress::new(true), deflate }
    }

    /// A header block the client sent (name → value).
    fn read(&mut self, block: &[u8]) -> io::Result<BTreeMap<String, String>> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            let before = (self.inflate.total_in(), self.inflate.total_out());
            out.reserve(1024);
            let spare = out.capacity() - out.len();
            let mut chunk = vec![0u8; spare];
            match self.inflate.decompress(input, &mut chunk, FlushDecompress::Sync) {
                Ok(status) => {
                    let used = (self.inflate.total_in() - before.0) as usize;
                    let made = (self.inflate.total_out() - before.1) as usize;
                    out.extend_from_slice(&chunk[..made]);
                    input = &input[used..];
                    if input.is_empty() && made < spare || status == Status::StreamEnd {
                        break;
                    }
                    if used == 0 && made == 0 {
                        break;
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    let used = (self.inflate.total_in() - before.0) as usize;
                    input = &input[used..];
                    self.inflate.set_dictionary(DICTIONARY).map_err(io::Error::other)?;
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        parse_block(&out).ok_or_else(|| io::Error::other("a malformed SPDY header block"))
    }

    /// An empty header block for a reply.
    fn empty(&mut self) -> Vec<u8> {
        let plain = [0u8; 4];
        let mut out = vec![0u8; 128];
        let before = (self.deflate.total_in(), self.deflate.total_out());
        let _ = self.deflate.compress(&plain, &mut out, FlushCompress::Sync);
        out.truncate((self.deflate.total_out() - before.1) as usize);
        out
    }
}

fn parse_block(b: &[u8]) -> Option<BTreeMap<String, String>> {
    let u32_at = |i: usize| b.get(i..i + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize);
    let n = u32_at(0)?;
    let mut i = 4;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let len = u32_at(i)?;
        let name = String::from_utf8_lossy(b.get(i + 4..i + 4 + len)?).to_ascii_lowercase();
        i += 4 + len;
        let len = u32_at(i)?;
        let value = String::from_utf8_lossy(b.get(i + 4..i + 4 + len)?).into_owned();
        i += 4 + len;
        out.insert(name, value);
    }
    Some(out)
}

// ---- WebSocket framing (RFC 6455): the client's frames are masked, the server's are not ------

/// Payloads of the complete binary/continuation messages at the front of `buf`; `Err` on close.
fn ws_messages(buf: &mut Vec<u8>, out: &mut Vec<u8>, pongs: &mut Vec<Vec<u8>>) -> Result<(), ()> {
    loop {
        if buf.len() < 2 {
            return Ok(());
        }
        let opcode = buf[0] & 0x0f;
        let masked = buf[1] & 0x80 != 0;
        let mut len = (buf[1] & 0x7f) as usize;
        let mut at = 2;
        if len == 126 {
            if buf.len() < 4 {
                return Ok(());
            }
            len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            at = 4;
        } else if len == 127 {
            if buf.len() < 10 {
                return Ok(());
            }
            len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize;
            at = 10;
        }
        let mask_at = at;
        if masked {
            at += 4;
        }
        if buf.len() < at + len {
            return Ok(());
        }
        let mut payload = buf[at..at + len].to_vec();
        if masked {
            let mask = [buf[mask_at], buf[mask_at + 1], buf[mask_at + 2], buf[mask_at + 3]];
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        buf.drain(..at + len);
        match opcode {
            0x0 | 0x2 => out.extend(payload),
            0x8 => return Err(()),
            0x9 => pongs.push(payload),
            _ => {}
        }
    }
}

fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n < 65536 => {
            f.push(126);
            f.extend((n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend((n as u64).to_be_bytes());
        }
    }
    f.extend(payload);
    f
}

// ---- the streams ---------------------------------------------------------------------------

/// One forwarded connection: its two streams and the request read so far.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
    request: Vec<u8>,
    answered: bool,
}

async fn serve<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    shared: SharedRef,
    io: T,
    transport: Transport,
    ns: String,
    pod: String,
) -> io::Result<()> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (pong_tx, mut pong_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    // One writer: SPDY bytes out, wrapped in WebSocket binary messages when tunnelled.
    let writer = tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                Some(bytes) = rx.recv() => match transport {
                    Transport::WebSocket => ws_frame(0x2, &bytes),
                    Transport::Spdy => bytes,
                },
                Some(ping) = pong_rx.recv() => ws_frame(0xA, &ping),
                else => break,
            };
            if wr.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut headers = Headers::new();
    let mut raw = Vec::new();
    let mut spdy = Vec::new();
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        match transport {
            Transport::Spdy => spdy.extend_from_slice(&buf[..n]),
            Transport::WebSocket => {
                raw.extend_from_slice(&buf[..n]);
                let mut pongs = Vec::new();
                if ws_messages(&mut raw, &mut spdy, &mut pongs).is_err() {
                    break 'read;
                }
                for p in pongs {
                    let _ = pong_tx.send(p);
                }
            }
        }
        for frame in frames(&mut spdy) {
            match frame {
                Frame::Control { kind: SYN_STREAM, data, .. } if data.len() >= 10 => {
                    let stream = u32::from_be_bytes([data[0] & 0x7f, data[1], data[2], data[3]]);
                    let h = headers.read(&data[10..])?;
                    let id = h.get("requestid").cloned().unwrap_or_default();
                    let pair = pairs.entry(id).or_default();
                    pair.port = h.get("port").and_then(|p| p.parse().ok()).unwrap_or(0);
                    match h.get("streamtype").map(String::as_str) {
                        Some("error") => pair.error = Some(stream),
                        _ => pair.data = Some(stream),
                    }
                    let mut reply = stream.to_be_bytes().to_vec();
                    reply.extend(headers.empty());
                    let _ = tx.send(control(SYN_REPLY, 0, &reply));
                }
                Frame::Control { kind: PING, data, .. } => {
                    let _ = tx.send(control(PING, 0, &data));
                }
                Frame::Control { kind: GOAWAY, .. } => break 'read,
                Frame::Control { kind: RST_STREAM, .. } | Frame::Control { .. } => {}
                Frame::Data { stream, data } => {
                    let Some(pair) = pairs.values_mut().find(|p| p.data == Some(stream)) else {
                        continue;
                    };
                    pair.request.extend(data);
                    if pair.answered {
                        continue;
                    }
                    let Some(request) = crate::dataplane::HttpRequest::parse(&pair.request) else { continue };
                    pair.answered = true;
                    let answer = {
                        let mut w = shared.lock();
                        crate::dataplane::forwarded(&mut w, &ns, &pod, pair.port, &request)
                    };
                    let error = pair.error;
                    match answer {
                        Ok(resp) => {
                            let bytes = crate::dataplane::http_bytes(resp).await;
                            let _ = tx.send(data_frame(stream, 0, &bytes));
                        }
                        Err(message) => {
                            if let Some(e) = error {
                                let _ = tx.send(data_frame(e, 0, message.as_bytes()));
                            }
                        }
                    }
                    let _ = tx.send(data_frame(stream, FLAG_FIN, &[]));
                    if let Some(e) = error {
                        let _ = tx.send(data_frame(e, FLAG_FIN, &[]));
                    }
                }
            }
        }
    }
    drop(tx);
    drop(pong_tx);
    let _ = writer.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_websocket_accept_key_is_rfc_6455s() {
        // RFC 6455 §1.3's example.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn the_dictionary_is_spdy_3s() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
        assert!(DICTIONARY.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_through_the_dictionary() {
        // What a client compressor writes (with the dictionary), read back by ours.
        let mut block = Vec::new();
        block.extend(3u32.to_be_bytes());
        for (k, v) in [("streamtype", "data"), ("port", "80"), ("requestid", "0")] {
            block.extend((k.len() as u32).to_be_bytes());
            block.extend(k.as_bytes());
            block.extend((v.len() as u32).to_be_bytes());
            block.extend(v.as_bytes());
        }
        let mut client = Compress::new(Compression::best(), true);
        client.set_dictionary(DICTIONARY).unwrap();
        let mut wire = vec![0u8; 512];
        client.compress(&block, &mut wire, FlushCompress::Sync).unwrap();
        wire.truncate(client.total_out() as usize);
        let mut server = Headers::new();
        let h = server.read(&wire).unwrap();
        assert_eq!(h["streamtype"], "data");
        assert_eq!(h["port"], "80");
    }
}
