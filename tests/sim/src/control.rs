//! Test control: the operations behind `Sim`'s methods and the HTTP control endpoint that the
//! stand-ins and `bookstore-sim ctl` use.
//!
//! Endpoint (127.0.0.1, JSON):
//! `POST /ctl/docker-restart|docker-stop|docker-start`, `POST /ctl/fault` (a `Fault`),
//! `GET /ctl/audit`, `GET /ctl/pods`, `GET /ctl/connectors`, `GET /ctl/healthy`,
//! `GET /ctl/latencies`, `POST /ctl/standin` (`{tool, argv, env, cwd, stdin}`).
//! And what the network would give: `GET /github.com/<owner>/<repo>/releases/download/<tag>/<asset>`
//! for the release assets in `fixtures/` ([`DOWNLOADS`]); the stack copy's URLs point here.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::faults::Fault;
use crate::server::{self, Handler, Resp};
use crate::world::{PortId, SharedRef};

/// Release assets the simulator serves, by their GitHub path: the real files, vendored.
pub const DOWNLOADS: &[(&str, &str)] = &[(
    "/github.com/kubernetes-sigs/gateway-api/releases/download/v1.4.1/standard-install.yaml",
    include_str!("../fixtures/gateway-api-v1.4.1-standard-install.yaml"),
)];

/// Drop every open connection and rebind every listener that should be up.
pub fn bounce_all(shared: &SharedRef) {
    let ports: Vec<PortId> = shared.ports.keys().copied().collect();
    for p in ports {
        if let Some(tx) = shared.ports.get(&p) {
            tx.send_modify(|v| v.epoch += 1);
        }
    }
    shared.refresh_ports();
}

pub fn docker_restart(shared: &SharedRef) {
    shared.lock().docker_restart();
    bounce_all(shared);
    shared.wake.notify_one();
}

pub fn docker_stop(shared: &SharedRef) {
    shared.lock().docker_stop();
    bounce_all(shared);
    shared.wake.notify_one();
}

pub fn docker_start(shared: &SharedRef) {
    shared.lock().docker_start();
    bounce_all(shared);
    shared.wake.notify_one();
}

pub fn fault(shared: &SharedRef, f: Fault) {
    shared.lock().apply_fault(&f);
    if let Fault::ApiRefuseFor { secs } = f {
        shared.lock().api_refusing = true;
        bounce_all(shared);
        let s = shared.clone();
        shared.rt.spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
            s.lock().api_refusing = false;
            s.refresh_ports();
        });
    }
    shared.wake.notify_one();
}

pub fn handler(shared: SharedRef) -> Handler {
    Arc::new(move |req| {
        let shared = shared.clone();
        Box::pin(async move {
            let (parts, body) = server::read(req).await;
            let path = parts.uri.path().to_string();
            Ok(route(&shared, parts.method.as_str(), &path, &body).await)
        })
    })
}

async fn route(shared: &SharedRef, method: &str, path: &str, body: &[u8]) -> Resp {
    let ok = || server::json(200, &json!({"ok": true}));
    match (method, path) {
        ("POST", "/ctl/docker-restart") => {
            docker_restart(shared);
            ok()
        }
        ("POST", "/ctl/docker-stop") => {
            docker_stop(shared);
            ok()
        }
        ("POST", "/ctl/docker-start") => {
            docker_start(shared);
            ok()
        }
        ("POST", "/ctl/fault") => match serde_json::from_slice::<Fault>(body) {
            Ok(f) => {
                fault(shared, f);
                ok()
            }
            Err(e) => server::json(400, &json!({"error": e.to_string()})),
        },
        ("GET", "/ctl/audit") => {
            let a = shared.lock().audit.clone();
            server::json(200, &serde_json::to_value(a).unwrap_or_default())
        }
        ("GET", "/ctl/pods") => {
            let p = shared.lock().pod_views();
            server::json(200, &serde_json::to_value(p).unwrap_or_default())
        }
        ("GET", "/ctl/connectors") => {
            let c: std::collections::BTreeMap<String, _> =
                shared.lock().connectors.iter().map(|(k, v)| (k.clone(), v.config.clone())).collect();
            server::json(200, &json!(c))
        }
        ("GET", "/ctl/healthy") => match shared.lock().healthy() {
            Ok(()) => ok(),
            Err(m) => server::json(503, &json!({"ok": false, "why": m})),
        },
        ("GET", "/ctl/latencies") => server::resp(
            200,
            "text/plain; charset=utf-8",
            format!("{}\n", crate::latency::LatencyTable::get()),
        ),
        ("POST", "/ctl/standin") => match serde_json::from_slice::<crate::standins::StandinReq>(body) {
            Ok(req) => {
                let out = crate::standins::run(shared, req).await;
                server::json(200, &serde_json::to_value(out).unwrap_or_default())
            }
            Err(e) => server::json(400, &json!({"error": e.to_string()})),
        },
        ("GET", p) if p.starts_with("/github.com/") => match DOWNLOADS.iter().find(|(path, _)| *path == p) {
            Some((_, body)) => server::resp(200, "application/octet-stream", *body),
            None => server::resp(404, "text/plain; charset=utf-8", "Not Found"),
        },
        _ => server::json(404, &json!({"error": "unknown control path"})),
    }
}
