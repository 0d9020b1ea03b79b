//! Test control: the operations behind `Sim`'s methods and the HTTP control endpoint that the
//! stand-ins and `bookstore-sim ctl` use.
//!
//! Endpoint (127.0.0.1, JSON):
//! `POST /ctl/docker-restart|docker-stop|docker-start`, `POST /ctl/docker-restart` with
//! `{"down_secs", "api_secs"}` (a Docker Desktop restart that takes a while), `POST /ctl/fault`,
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

/// Drop every open connection (listeners that should be up stay up).
pub fn bounce_all(shared: &SharedRef) {
    let ports: Vec<PortId> = shared.ports.keys().copied().collect();
    for p in ports {
        if let Some(tx) = shared.ports.get(&p) {
            tx.send_modify(|v| v.epoch += 1);
        }
    }
    shared.refresh_ports();
}

/// Drop every open connection of the kube API and the host ports (the node container was
/// created, deleted or restarted, or its API refuses; the Docker daemon itself, its event streams
/// and its pulls, carry on).
pub fn bounce_cluster(shared: &SharedRef) {
    for (p, tx) in &shared.ports {
        if *p != PortId::Docker {
            tx.send_modify(|v| v.epoch += 1);
        }
    }
    shared.refresh_ports();
}

/// A Docker Desktop restart as a user lives it: Docker goes away (its socket is removed, open
/// event streams end, the kube API and the host ports refuse) for `down_secs`, then comes back:
/// the node container starts again (new `State.StartedAt`, a `start` event), every pod restarts
/// stale, Kafka without a volume loses its topics; the kube API refuses `api_secs` longer.
/// Returns at once; real seconds, not scaled.
pub fn docker_desktop_restart(shared: &SharedRef, down_secs: f64, api_secs: f64) {
    shared.lock().record(
        crate::audit::Source::Control,
        "docker-desktop-restart",
        "",
        &format!("down {down_secs}s, api {api_secs}s"),
    );
    docker_stop(shared);
    let s = shared.clone();
    shared.rt.spawn(async move {
        tokio::time::sleep(Duration::from_secs_f64(down_secs.max(0.0))).await;
        if api_secs > 0.0 {
            fault(&s, Fault::ApiRefuseFor { secs: api_secs });
        }
        docker_start(&s);
    });
}

pub fn docker_restart(shared: &SharedRef) {
    crate::docker_events::publish_stopping(shared);
    shared.lock().docker_restart();
    bounce_all(shared);
    shared.wake.notify_one();
}

/// A shared cluster's node reboots (`World::node_reboot`): the API server stays up.
pub fn node_reboot(shared: &SharedRef) {
    shared.lock().node_reboot();
    shared.wake.notify_one();
}

pub fn docker_stop(shared: &SharedRef) {
    crate::docker_events::publish_stopping(shared);
    shared.lock().docker_stop();
    bounce_all(shared);
    shared.wake.notify_one();
}

pub fn docker_start(shared: &SharedRef) {
    let node = {
        let mut w = shared.lock();
        w.docker_start();
        w.node_running()
    };
    bounce_all(shared);
    if node {
        node_booting(shared);
    }
    shared.wake.notify_one();
}

/// The node container just started: its kube API refuses `SimOptions::api_boot_secs` (real
/// seconds) while the kubelet brings etcd and the apiserver back.
pub fn node_booting(shared: &SharedRef) {
    let secs = shared.lock().opts.api_boot_secs;
    if secs > 0.0 {
        fault(shared, Fault::ApiRefuseFor { secs });
    }
}

pub fn fault(shared: &SharedRef, f: Fault) {
    shared.lock().apply_fault(&f);
    if let Fault::ApiRefuseFor { secs } = f {
        shared.lock().api_refusing = true;
        bounce_cluster(shared);
        let s = shared.clone();
        shared.rt.spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
            s.lock().api_refusing = false;
            s.refresh_ports();
        });
    }
    shared.wake.notify_one();
}

/// `POST /ctl/docker-restart` with `{"down_secs": 3, "api_secs": 1}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DesktopRestart {
    down_secs: f64,
    #[serde(default)]
    api_secs: f64,
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

async fn blocking(shared: &SharedRef, f: impl FnOnce(&SharedRef) + Send + 'static) {
    let s = shared.clone();
    let _ = tokio::task::spawn_blocking(move || f(&s)).await;
}

async fn route(shared: &SharedRef, method: &str, path: &str, body: &[u8]) -> Resp {
    let ok = || server::json(200, &json!({"ok": true}));
    match (method, path) {
        // Stopping Docker waits for its event streams to carry the stop: off the runtime.
        ("POST", "/ctl/docker-restart") if body.iter().all(u8::is_ascii_whitespace) => {
            blocking(shared, docker_restart).await;
            ok()
        }
        ("POST", "/ctl/docker-restart") => match serde_json::from_slice::<DesktopRestart>(body) {
            Ok(r) => {
                blocking(shared, move |s| docker_desktop_restart(s, r.down_secs, r.api_secs)).await;
                ok()
            }
            Err(e) => server::json(400, &json!({"error": e.to_string()})),
        },
        ("POST", "/ctl/docker-stop") => {
            blocking(shared, docker_stop).await;
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
