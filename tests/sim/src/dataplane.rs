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
