//! The Docker Engine API on a unix socket, the subset the docker 28 CLI sends for
//! `info`, `version`, `ps`, `inspect`, `rm`, `restart`, `stop`, `start`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::audit::{AuditEntry, Source};
use crate::server::{self, Handler, Resp};
use crate::timefmt::{human_duration, rfc3339, rfc3339_nanos};
use crate::world::{Container, SharedRef, World};

/// The Engine's API version by default (`SimOptions::docker_api_version` sets another).
pub const API_VERSION: &str = "1.50";
pub const SERVER_VERSION: &str = "28.2.2";

/// The Engine release that serves an API version (27.x serves 1.47, before `save --platform`).
fn server_version(api: &str) -> &'static str {
    match api {
        "1.47" => "27.5.1",
        "1.46" => "27.1.2",
        _ => SERVER_VERSION,
    }
}

/// What a container action asks the runtime to do after the world lock is released.
#[derive(Debug, Default, Clone, Copy)]
pub struct After {
    pub bounce_all: bool,
    /// The node container started: its kube API boots (`SimOptions::api_boot_secs`).
    pub node_started: bool,
}

pub fn handler(shared: SharedRef) -> Handler {
    Arc::new(move |req| {
        let shared = shared.clone();
        Box::pin(async move {
            let (parts, body) = server::read(req).await;
            let method = parts.method.as_str().to_string();
            let path_q = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            let q = server::query(parts.uri.query());
            let api = shared.lock().opts.docker_api_version.clone();
            let audit = |w: &mut World, r: &Resp| {
                let t_ms = w.t_ms();
                w.audit.push(AuditEntry {
                    t_ms,
                    source: Source::Docker,
                    verb: method.clone(),
                    path: path_q.clone(),
                    content_type: None,
                    body: String::from_utf8_lossy(&body).into_owned(),
                    status: r.status().as_u16(),
                    detail: String::new(),
                });
            };
            if method == "GET" && strip_version(parts.uri.path()) == "/events" {
                let r = crate::docker_events::stream(&shared, &q, api_version(parts.uri.path()));
                audit(&mut shared.lock(), &r);
                return Ok(with_headers(r, &api));
            }
            if method == "POST" && strip_version(parts.uri.path()) == "/images/create" {
                let r = pull(&shared, &q).await;
                audit(&mut shared.lock(), &r);
                return Ok(with_headers(r, &api));
            }
            let (r, after) = {
                let mut w = shared.lock();
                let (r, after) = route(&mut w, &method, parts.uri.path(), &q);
                audit(&mut w, &r);
                (r, after)
            };
            if after.bounce_all {
                crate::control::bounce_cluster(&shared);
            }
            if after.node_started {
                crate::control::node_booting(&shared);
            }
            shared.refresh_ports();
            shared.wake.notify_one();
            Ok(with_headers(r, &api))
        })
    })
}

fn with_headers(mut r: Resp, api: &str) -> Resp {
    let h = r.headers_mut();
    if let Ok(v) = hyper::header::HeaderValue::from_str(api) {
        h.insert("api-version", v);
    }
    h.insert("docker-experimental", hyper::header::HeaderValue::from_static("false"));
    h.insert("ostype", hyper::header::HeaderValue::from_static("linux"));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("Docker/{} (linux)", server_version(api))) {
        h.insert("server", v);
    }
    r
}

/// `/v1.50/events` → `1.50` (empty when unversioned).
fn api_version(path: &str) -> &str {
    path.strip_prefix("/v").and_then(|rest| rest.split('/').next()).unwrap_or("")
}

fn message(code: u16, m: &str) -> Resp {
    server::json(code, &json!({ "message": m }))
}

fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(i) = rest.find('/')
        && rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        return &rest[i..];
    }
    path
}

/// `docker stop|kill|start|restart <container>` as the daemon does it (its events; a kind node's
/// pods stopped, or restarted in place when it starts). A node other than the control plane
/// leaves the kube API up: only its own pods stop or restart (and the host ports it publishes,
/// if any). `None` for a start of a running container (304); else what the runtime does next:
/// the kube API's connections drop and it boots again when the control plane stops or starts.
pub fn container_action(w: &mut World, i: usize, action: &str, signal: &str) -> Option<After> {
    let is_node = w.containers[i].labels.contains_key("io.x-k8s.kind.cluster");
    let was = w.containers[i].running;
    if action == "start" && was {
        return None;
    }
    w.action_events(i, action, was, signal);
    let name = w.containers[i].name.clone();
    let api = is_node && name == w.node_name();
    match action {
        "stop" | "kill" => {
            w.containers[i].running = false;
            // moby's HasBeenManuallyStopped (`unless-stopped` stays down).
            w.containers[i].stopped_by_user = true;
            if is_node && !api {
                w.node_stopped(&name);
            }
            Some(After { bounce_all: api, node_started: false })
        }
        _ => {
            w.containers[i].running = true;
            w.containers[i].started = SystemTime::now();
            w.containers[i].stopped_by_user = false;
            if is_node {
                w.restart_pods_in_place(Some(&name));
            }
            Some(After { bounce_all: api, node_started: api })
        }
    }
}

fn route(w: &mut World, method: &str, path: &str, q: &[(String, String)]) -> (Resp, After) {
    let path = strip_version(path);
    let none = After::default();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => (server::resp(200, "text/plain; charset=utf-8", "OK"), none),
        ("GET", ["version"]) => (server::json(200, &version(&w.opts.docker_api_version)), none),
        ("GET", ["info"]) => (server::json(200, &info(w)), none),
        ("GET", ["containers", "json"]) => (list(w, q), none),
        ("GET", ["containers", id, "json"]) => match find(w, id) {
            Some(i) => (server::json(200, &inspect(w, &w.containers[i])), none),
            None => (message(404, &format!("No such container: {id}")), none),
        },
        ("DELETE", ["containers", id]) => match find(w, id) {
            Some(i) => {
                let force = q.iter().any(|(k, v)| k == "force" && (v == "1" || v == "true"));
                if w.containers[i].running && !force {
                    let c = &w.containers[i];
                    return (
                        message(
                            409,
                            &format!(
                                "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                                c.name
                            ),
                        ),
                        none,
                    );
                }
                w.destroy_events(i);
                let c = w.containers.remove(i);
                remove_node_if(w, &c);
                (server::resp(204, "text/plain", ""), none)
            }
            None => (message(404, &format!("No such container: {id}")), none),
        },
        ("POST", ["containers", id, action @ ("restart" | "stop" | "start" | "kill")]) => {
            let Some(i) = find(w, id) else {
                return (message(404, &format!("No such container: {id}")), none);
            };
            let signal = q.iter().find(|(k, _)| k == "signal").map(|(_, v)| v.as_str()).unwrap_or("9");
            match container_action(w, i, action, signal) {
                Some(after) => (server::resp(204, "text/plain", ""), after),
                None => (server::resp(304, "text/plain", ""), none),
            }
        }
        ("GET", ["images", "json"]) => {
            let list: Vec<Value> = w
                .host_images
                .iter()
                .map(|i| {
                    let short = i.trim_start_matches("docker.io/").trim_start_matches("library/");
                    json!({"Id": crate::images::image_id(short), "RepoTags": [short], "RepoDigests": [],
                           "Created": 1_735_689_600, "Size": (crate::latency::image_mb(i) * 1e6) as u64,
                           "SharedSize": -1, "Labels": {}, "Containers": -1, "ParentId": ""})
                })
                .collect();
            (server::json(200, &Value::Array(list)), none)
        }
        // `docker save` (`--platform` adds `platform`, API ≥ 1.48): `images.rs`.
        ("GET", ["images", "get"]) => {
            let names: Vec<String> = q.iter().filter(|(k, _)| k == "names").map(|(_, v)| v.clone()).collect();
            let platform = q.iter().find(|(k, _)| k == "platform").map(|(_, v)| v.as_str());
            let platform = match platform.map(crate::images::Platform::parse) {
                Some(None) => return (message(400, "invalid platform"), none),
                Some(Some(p)) => Some(p),
                None => None,
            };
            match crate::images::save(w, &names, platform.as_ref()) {
                Ok(archive) => (server::resp(200, "application/x-tar", archive), none),
                Err((code, m)) => (message(code, &m), none),
            }
        }
        ("GET", ["images", name @ .., "json"]) if !name.is_empty() => {
            let name = name.join("/");
            if w.host_has(&name) {
                let id = crate::images::image_id(&name);
                (
                    server::json(
                        200,
                        &json!({"Id": id, "RepoTags": [name], "Os": crate::images::NODE_OS,
                                "Architecture": crate::images::NODE_ARCH}),
                    ),
                    none,
                )
            } else {
                (message(404, &format!("No such image: {name}")), none)
            }
        }
        _ => (message(404, "page not found"), none),
    }
}

/// `POST /images/create?fromImage=…&tag=…` (`docker pull`): a download on the machine's link;
/// answers when it is done, with the daemon's JSON progress messages.
async fn pull(shared: &SharedRef, q: &[(String, String)]) -> Resp {
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).unwrap_or("");
    let (from, tag) = (get("fromImage"), get("tag"));
    let reference =
        if tag.is_empty() || from.contains('@') { from.to_string() } else { format!("{from}:{tag}") };
    let image = crate::troubles::qualified_image(&reference);
    let short = reference.trim_start_matches("docker.io/").trim_start_matches("library/").to_string();
    let line = |v: Value| format!("{v}\r\n");
    {
        let mut w = shared.lock();
        if w.host_images.contains(&image) {
            let body = line(json!({"status": format!("Status: Image is up to date for {short}")}));
            return server::resp(200, "application/json", body);
        }
        let now = std::time::Instant::now();
        w.advance_downloads(now);
        w.link.start(&image, crate::images::Store::Host);
    }
    shared.wake.notify_one();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let w = shared.lock();
        if w.host_images.contains(&image) {
            break;
        }
        if !w.docker_up {
            return message(500, "context canceled");
        }
    }
    let id = crate::images::image_id(&short);
    let digest = format!("sha256:{}", crate::world::container_id(&image, 8));
    let (repo, tag) = short.rsplit_once(':').unwrap_or((&short, "latest"));
    let body = [
        line(json!({"status": format!("Pulling from {}", if repo.contains('/') { repo.to_string() } else { format!("library/{repo}") }), "id": tag})),
        line(json!({"status": "Pull complete", "progressDetail": {}, "id": &id[7..19]})),
        line(json!({"status": format!("Digest: {digest}")})),
        line(json!({"status": format!("Status: Downloaded newer image for {short}")})),
    ]
    .concat();
    server::resp(200, "application/json", body)
}

/// Removing the kind node removes the cluster.
pub fn remove_node_if(w: &mut World, c: &Container) {
    if c.labels.contains_key("io.x-k8s.kind.cluster") {
        w.clear_cluster_objects();
        w.node_images.clear();
        w.cluster = None;
        w.event("cluster-removed", &c.name, "");
    }
}

fn find(w: &World, id: &str) -> Option<usize> {
    let id = id.trim_start_matches('/');
    w.containers
        .iter()
        .position(|c| c.name == id || c.id == id)
        .or_else(|| if id.len() >= 4 { w.containers.iter().position(|c| c.id.starts_with(id)) } else { None })
}

fn version(api: &str) -> Value {
    let (os, arch, release) = (crate::images::NODE_OS, crate::images::NODE_ARCH, server_version(api));
    json!({"Platform":{"Name":"Docker Engine - Community"},
           "Components":[{"Name":"Engine","Version": release,"Details":{"ApiVersion": api,"Arch": arch,"GitCommit":"e6534b4","GoVersion":"go1.24.3","KernelVersion":"6.10.14-linuxkit","MinAPIVersion":"1.24","Os": os}}],
           "Version": release,"ApiVersion": api,"MinAPIVersion":"1.24","GitCommit":"e6534b4",
           "GoVersion":"go1.24.3","Os": os,"Arch": arch,"KernelVersion":"6.10.14-linuxkit","BuildTime":"2025-05-30T11:00:00.000000000+00:00"})
}

fn info(w: &World) -> Value {
    let running = w.containers.iter().filter(|c| c.running).count();
    json!({"ID":"SIMU:LATE:D0CK:ER00:0000:0000:0000:0000:0000:0000:0000:0001",
           "Containers": w.containers.len(),"ContainersRunning": running,"ContainersPaused":0,
           "ContainersStopped": w.containers.len() - running,"Images": w.containers.len(),
           "Driver": if w.opts.containerd_store {"overlayfs"} else {"overlay2"},
           "DriverStatus": if w.opts.containerd_store { json!([["driver-type","io.containerd.snapshotter.v1"]]) } else { json!([]) },"Plugins":{"Volume":["local"],"Network":["bridge","host","null"],"Authorization":null,"Log":["json-file","local"]},
           "MemoryLimit":true,"SwapLimit":true,"CpuCfsPeriod":true,"CpuCfsQuota":true,"CPUShares":true,"CPUSet":true,
           "PidsLimit":true,"IPv4Forwarding":true,"Debug":false,"NFd":40,"OomKillDisable":false,"NGoroutines":60,
           "SystemTime": rfc3339(w.docker_time(SystemTime::now())),"LoggingDriver":"json-file","CgroupDriver":"cgroupfs","CgroupVersion":"2",
           "NEventsListener":0,"KernelVersion":"6.10.14-linuxkit","OperatingSystem":"Docker Desktop","OSVersion":"",
           "OSType":"linux","Architecture":"x86_64","IndexServerAddress":"https://index.docker.io/v1/",
           "RegistryConfig":{"IndexConfigs":{},"InsecureRegistryCIDRs":["::1/128","127.0.0.0/8"],"Mirrors":[]},
           "NCPU":2,"MemTotal": 8_221_429_760u64,"DockerRootDir":"/var/lib/docker","Name":"docker-desktop",
           "Labels":[],"ExperimentalBuild":false,"ServerVersion": server_version(&w.opts.docker_api_version),
           "Runtimes":{"runc":{"path":"runc"}},"DefaultRuntime":"runc",
           "Swarm":{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,"Error":"","RemoteManagers":null},
           "LiveRestoreEnabled":false,"Isolation":"","InitBinary":"docker-init",
           "ContainerdCommit":{"ID":"05044ec"},"RuncCommit":{"ID":"v1.2.5-0-g59923ef"},"InitCommit":{"ID":"de40ad0"},
           "SecurityOptions":["name=seccomp,profile=builtin","name=cgroupns"],"Warnings":null})
}

fn ports_json(c: &Container) -> Value {
    let mut m = serde_json::Map::new();
    for (cp, hp) in &c.ports {
        m.insert(format!("{cp}/tcp"), json!([{"HostIp":"127.0.0.1","HostPort": hp.to_string()}]));
    }
    Value::Object(m)
}

fn inspect(w: &World, c: &Container) -> Value {
    let pid = if c.running { 4242 } else { 0 };
    let status = if c.running { "running" } else { "exited" };
    let finished = if c.created == c.finished {
        "0001-01-01T00:00:00Z".to_string()
    } else {
        rfc3339_nanos(w.docker_time(c.finished))
    };
    let is_node = c.labels.contains_key("io.x-k8s.kind.cluster");
    let net = if c.running {
        json!({"kind":{"IPAddress":"172.18.0.2","Gateway":"172.18.0.1","IPPrefixLen":16,"MacAddress":"02:42:ac:12:00:02","NetworkID":"4f1c0e0d5a3b","Aliases":[c.name]}})
    } else {
        json!({"kind":{"IPAddress":"","Gateway":"","IPPrefixLen":0,"NetworkID":"4f1c0e0d5a3b"}})
    };
    let ports = if c.running { ports_json(c) } else { json!({}) };
    json!({
        "Id": c.id,
        "Created": rfc3339_nanos(w.docker_time(c.created)),
        "Path": if is_node { "/usr/local/bin/entrypoint" } else { "socat" },
        "Args": if is_node { json!(["/sbin/init"]) } else { json!(c.cmd) },
        "State": {"Status": status,"Running": c.running,"Paused":false,"Restarting":false,"OOMKilled":false,
                  "Dead":false,"Pid": pid,"ExitCode": if c.running {0} else {c.exit_code},"Error":"",
                  "StartedAt": rfc3339_nanos(w.docker_time(c.started)),"FinishedAt": finished},
        "Image": format!("sha256:{}", &crate::world::container_id(&c.image, 7)),
        "Name": format!("/{}", c.name),
        "RestartCount": 0,
        "Driver":"overlay2","Platform":"linux",
        "HostConfig": {"NetworkMode": if is_node {"kind"} else {"bridge"},
                       "PortBindings": ports_json(c),
                       "RestartPolicy": crate::restart_policy::policy_json(c),
                       "Privileged": is_node},
        "Config": {"Hostname": c.name,"Image": c.image,"Labels": c.labels,"Cmd": c.cmd,
                   "ExposedPorts": c.ports.iter().map(|(cp, _)| (format!("{cp}/tcp"), json!({}))).collect::<serde_json::Map<_,_>>()},
        "NetworkSettings": {"Ports": ports,"Networks": net}
    })
}

fn list(w: &World, q: &[(String, String)]) -> Resp {
    let all = q.iter().any(|(k, v)| k == "all" && (v == "1" || v == "true"));
    let filters: Value = q
        .iter()
        .find(|(k, _)| k == "filters")
        .and_then(|(_, v)| serde_json::from_str(v).ok())
        .unwrap_or(json!({}));
    let values = |key: &str| -> Vec<String> {
        match filters.get(key) {
            Some(Value::Object(m)) => m.keys().cloned().collect(),
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        }
    };
    let labels = values("label");
    let names = values("name");
    let statuses = values("status");
    let ids = values("id");
    let name_res: Vec<regex::Regex> = names.iter().filter_map(|n| regex::Regex::new(n).ok()).collect();
    if name_res.len() != names.len() {
        return message(500, "invalid regular expression in name filter");
    }
    let now = SystemTime::now();
    let out: Vec<Value> = w
        .containers
        .iter()
        .filter(|c| all || c.running)
        .filter(|c| {
            labels.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => c.labels.get(k).is_some_and(|x| x == v),
                None => c.labels.contains_key(l),
            })
        })
        .filter(|c| name_res.is_empty() || name_res.iter().any(|r| r.is_match(&c.name) || r.is_match(&format!("/{}", c.name))))
        .filter(|c| {
            statuses.is_empty()
                || statuses
                    .iter()
                    .any(|s| (s == "running") == c.running && (s == "running" || s == "exited"))
        })
        .filter(|c| ids.is_empty() || ids.iter().any(|i| c.id.starts_with(i.as_str())))
        .map(|c| {
            let up = now.duration_since(c.started).unwrap_or_default();
            let status = if c.running {
                format!("Up {}", human_duration(up))
            } else {
                let down = now.duration_since(c.finished).unwrap_or_default();
                format!("Exited ({}) {} ago", c.exit_code, human_duration(down))
            };
            let ports: Vec<Value> = if c.running {
                c.ports
                    .iter()
                    .map(|(cp, hp)| json!({"IP":"127.0.0.1","PrivatePort": cp,"PublicPort": hp,"Type":"tcp"}))
                    .collect()
            } else {
                vec![]
            };
            json!({"Id": c.id,"Names":[format!("/{}", c.name)],"Image": c.image,
                   "ImageID": format!("sha256:{}", crate::world::container_id(&c.image, 7)),
                   "Command": if c.cmd.is_empty() { "/usr/local/bin/entrypoint /sbin/init".to_string() } else { c.cmd.join(" ") },
                   "Created": w.docker_time(c.created).duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                   "Ports": ports,"Labels": c.labels,
                   "State": if c.running {"running"} else {"exited"},"Status": status,
                   "HostConfig":{"NetworkMode":"kind"},"NetworkSettings":{"Networks":{}},"Mounts":[]})
        })
        .collect();
    server::json(200, &Value::Array(out))
}
