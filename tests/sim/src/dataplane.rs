//! The data plane on the kind node's host ports: the Istio gateway (routes by Host and path
//! prefix, Envoy's 503s), direct NodePorts (reset when the backend is stale or not Ready) and the
//! Connect REST port. Routes come from `smoke.checks` in stack.yaml.

use std::io;
use std::sync::Arc;

use crate::audit::{AuditEntry, Source};
use crate::config::Stack;
use crate::server::{self, Handler, Resp};
use crate::world::{Backend, SharedRef};

pub const ENVOY_503: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
pub const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";

/// One gateway route: Host + path prefix → workload.
#[derive(Debug, Clone)]
pub struct Route {
    pub host: String,
    pub prefix: String,
    pub workload: String,
}

/// Gateway routes of a host port: a check with path `/`, or the only check for its host, takes
/// the whole host; other checks take their first path segment (`/ecom/books` → `/ecom/`).
pub fn routes(stack: &Stack, port: u16) -> Vec<Route> {
    let checks: Vec<_> = stack.smoke.checks.iter().filter(|c| c.port == port && c.host.is_some()).collect();
    let mut out = Vec::new();
    for c in &checks {
        let host = c.host.clone().unwrap_or_default();
        let same_host = checks.iter().filter(|o| o.host.as_deref() == Some(host.as_str())).count();
        let prefix = if c.path == "/" || same_host == 1 {
            "/".to_string()
        } else {
            let seg = c.path.trim_start_matches('/').split('/').next().unwrap_or("");
            format!("/{seg}/")
        };
        out.push(Route { host, prefix, workload: c.serves.clone().unwrap_or_default() });
    }
    out
}

fn body_for(workload: &str, path: &str) -> (String, &'static str) {
    match workload {
        "ui-service" => (
            "<!doctype html><html><head><title>BookStore</title></head><body><div id=\"root\"></div></body></html>\n".into(),
            "text/html; charset=utf-8",
        ),
        "keycloak" => (
            "{\"realm\":\"bookstore\",\"public_key\":\"MIIBIjANBgkqh\",\"token-service\":\"http://idp.keycloak.net/realms/bookstore/protocol/openid-connect\",\"account-service\":\"http://idp.keycloak.net/realms/bookstore/account\",\"tokens-not-before\":0}".into(),
            "application/json",
        ),
        "pgadmin" => ("PING".into(), "text/html; charset=utf-8"),
        "superset" => ("OK".into(), "text/plain; charset=utf-8"),
        "kiali" => (
            "<!doctype html><html><head><title>Kiali</title></head><body></body></html>\n".into(),
            "text/html; charset=utf-8",
        ),
        "flink-jobmanager" => (
            "{\"taskmanagers\":1,\"slots-total\":2,\"slots-available\":2,\"jobs-running\":0,\"jobs-finished\":0,\"jobs-cancelled\":0,\"jobs-failed\":0,\"flink-version\":\"1.20.0\",\"flink-commit\":\"b1fe7b4\"}".into(),
            "application/json",
        ),
        _ => (
            format!("{{\"service\":\"{workload}\",\"path\":\"{path}\",\"status\":\"UP\"}}"),
            "application/json",
        ),
    }
}

pub fn handler(shared: SharedRef, container_port: u16, host_port: u16) -> Handler {
    Arc::new(move |req| {
        let shared = shared.clone();
        Box::pin(async move {
            let (parts, body) = server::read(req).await;
            let method = parts.method.as_str().to_string();
            let path_q =
                parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
            let host = parts
                .headers
                .get(hyper::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(':')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            let content_type = parts
                .headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let mut w = shared.lock();
            if container_port == w.infra.stack.connect.port {
                let base = format!("http://127.0.0.1:{host_port}");
                return crate::connect::handle(
                    &mut w,
                    &method,
                    &path_q,
                    content_type.as_deref(),
                    &body,
                    &base,
                );
            }
            let r = serve(&mut w, container_port, &host, &path_q);
            let t_ms = w.t_ms();
            w.audit.push(AuditEntry {
                t_ms,
                source: Source::Http,
                verb: method,
                path: path_q,
                content_type,
                body: String::new(),
                status: r.as_ref().map(|r| r.status().as_u16()).unwrap_or(0),
                detail: format!(
                    "port {container_port} host {host}{}",
                    if r.is_err() { " (connection reset)" } else { "" }
                ),
            });
            r
        })
    })
}

/// What a route answers inside the cluster (its status, or `None` for a reset): as its host port
/// or a port-forward to its Service reaches it. A test reads a shared cluster's routes here: it
/// has no host ports.
pub fn answer(w: &mut crate::world::World, container_port: u16, host: &str, path: &str) -> Option<u16> {
    serve(w, container_port, host, path).ok().map(|r| r.status().as_u16())
}

fn serve(
    w: &mut crate::world::World,
    container_port: u16,
    host: &str,
    path_q: &str,
) -> Result<Resp, io::Error> {
    let path = path_q.split('?').next().unwrap_or("/");
    let gw = routes(&w.infra.stack, container_port);
    if !gw.is_empty() {
        // The gateway (Envoy).
        let route = gw
            .iter()
            .filter(|r| r.host == host && path.starts_with(&r.prefix))
            .max_by_key(|r| r.prefix.len())
            .cloned();
        let Some(route) = route else {
            return Ok(server::resp(404, "text/plain", ""));
        };
        return Ok(match w.backend(&route.workload) {
            Backend::Healthy(_) => {
                let (b, ct) = body_for(&route.workload, path);
                server::resp(200, ct, b)
            }
            Backend::Stale(p) => {
                w.log_hbone_failure("bookstore-gateway-istio", &p);
                server::resp(503, "text/plain", ENVOY_503)
            }
            Backend::NotReady => server::resp(503, "text/plain", NO_HEALTHY_UPSTREAM),
        });
    }
    // A NodePort straight to one workload.
    let workload =
        w.infra.stack.smoke.checks.iter().find(|c| c.port == container_port).and_then(|c| c.serves.clone());
    let Some(workload) = workload else {
        return Err(io::Error::new(io::ErrorKind::ConnectionReset, "no service"));
    };
    match w.backend(&workload) {
        Backend::Healthy(_) => {
            let (b, ct) = body_for(&workload, path);
            Ok(server::resp(200, ct, b))
        }
        // NodePort traffic comes from outside the mesh, in plaintext: a pod without istio-cni's
        // rules in its netns (captured by nothing) takes it directly.
        Backend::Stale(p) if p.plaintext_ok() => {
            let (b, ct) = body_for(&workload, path);
            Ok(server::resp(200, ct, b))
        }
        Backend::Stale(p) => {
            w.log_hbone_failure("kube-proxy", &p);
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "stale"))
        }
        Backend::NotReady => Err(io::Error::new(io::ErrorKind::ConnectionReset, "no endpoints")),
    }
}

/// An HTTP/1.1 request read from a forwarded stream.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path_q: String,
    pub host: String,
    pub content_type: Option<String>,
    pub body: bytes::Bytes,
}

impl HttpRequest {
    /// The request, once its head and its `Content-Length` body are complete.
    pub fn parse(bytes: &[u8]) -> Option<HttpRequest> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&bytes[..end]);
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, path_q) = (first.next()?.to_string(), first.next()?.to_string());
        let (mut host, mut content_type, mut length) = (String::new(), None, 0usize);
        for line in lines {
            let Some((k, v)) = line.split_once(':') else { continue };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "host" => host = v.split(':').next().unwrap_or("").to_ascii_lowercase(),
                "content-type" => content_type = Some(v.to_string()),
                "content-length" => length = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        let body = bytes.get(end + 4..end + 4 + length)?;
        Some(HttpRequest { method, path_q, host, content_type, body: bytes::Bytes::copy_from_slice(body) })
    }
}

/// What a pod answers to a request `kubectl port-forward` brought to its `port`: the Service of
/// its namespace that selects it with that target port names the node port it backs. The gateway
/// pod routes by Host through the mesh as its host port does (Envoy's 503 for a stale backend);
/// any other pod answers itself, registered or not (a port-forward connects to localhost inside
/// the pod, which ambient's in-pod redirection leaves alone); Connect answers its REST API. A
/// pod not Ready listens on nothing: `Err` is the kubelet's error for the error stream.
pub fn forwarded(
    w: &mut crate::world::World,
    ns: &str,
    pod: &str,
    port: u16,
    req: &HttpRequest,
) -> Result<Resp, String> {
    use crate::store::{Key, Res};
    use serde_json::Value;
    let obj = w.store.get(&Key::new(Res::Pods, ns, pod)).cloned().unwrap_or(Value::Null);
    let refused = || {
        format!(
            "error forwarding port {port} to pod {}, uid : failed to execute portforward in network namespace \
             \"/var/run/netns/cni-{pod}\": failed to connect to localhost:{port} inside namespace \"{pod}\", \
             IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6: address ::1: \
             connect: connection refused ",
            crate::store::str_at(&obj, "/metadata/uid")
        )
    };
    let ready = obj
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.get("ready") == Some(&Value::Bool(true))));
    if !ready {
        return Err(refused());
    }
    let labels = obj.pointer("/metadata/labels").cloned().unwrap_or(Value::Null);
    let named = |name: &str| -> Option<u16> {
        obj.pointer("/spec/containers")?.as_array()?.iter().find_map(|c| {
            c.get("ports")?.as_array()?.iter().find_map(|p| {
                (p.get("name")?.as_str()? == name)
                    .then(|| p.get("containerPort")?.as_u64().map(|n| n as u16))?
            })
        })
    };
    let node_port = w.store.list(Res::Services, Some(ns)).iter().find_map(|svc| {
        let selector = svc.pointer("/spec/selector")?.as_object()?;
        if selector.is_empty() || !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return None;
        }
        svc.pointer("/spec/ports")?.as_array()?.iter().find_map(|p| {
            let target = match p.get("targetPort") {
                Some(Value::Number(n)) => n.as_u64().map(|n| n as u16),
                Some(Value::String(s)) => named(s),
                _ => p.get("port").and_then(Value::as_u64).map(|n| n as u16),
            };
            (target == Some(port)).then(|| p.get("nodePort")?.as_u64().map(|n| n as u16))?
        })
    });
    let Some(node_port) = node_port else { return Err(refused()) };
    if node_port == w.infra.stack.connect.port {
        let base = format!("http://localhost:{port}");
        return crate::connect::handle(
            w,
            &req.method,
            &req.path_q,
            req.content_type.as_deref(),
            &req.body,
            &base,
        )
        .map_err(|_| refused());
    }
    let path = req.path_q.split('?').next().unwrap_or("/").to_string();
    let r = if routes(&w.infra.stack, node_port).is_empty() {
        let workload = crate::store::str_at(&labels, "/app");
        let (b, ct) = body_for(workload, &path);
        Ok(server::resp(200, ct, b))
    } else {
        serve(w, node_port, &req.host, &req.path_q)
    };
    let t_ms = w.t_ms();
    w.audit.push(AuditEntry {
        t_ms,
        source: Source::Http,
        verb: req.method.clone(),
        path: req.path_q.clone(),
        content_type: req.content_type.clone(),
        body: String::new(),
        status: r.as_ref().map(|r| r.status().as_u16()).unwrap_or(0),
        detail: format!("port-forward {ns}/{pod}:{port} (node port {node_port}) host {}", req.host),
    });
    r.map_err(|_| refused())
}

/// A response as HTTP/1.1 bytes on a forwarded stream (the connection closes after it).
pub async fn http_bytes(resp: Resp) -> Vec<u8> {
    use http_body_util::BodyExt;
    let status = resp.status();
    let ct = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain")
        .to_string();
    let mut extra = String::new();
    for (k, v) in resp.headers() {
        if k != hyper::header::CONTENT_TYPE && k != hyper::header::CONTENT_LENGTH {
            extra.push_str(&format!("{}: {}\r\n", k, v.to_str().unwrap_or("")));
        }
    }
    let body = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}
