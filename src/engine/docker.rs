//! What the docker CLI prints, read: `ps --format '{{json .}}'` (a JSON object a line, `Names`
//! and `Labels` strings), `inspect` (a JSON array: podman and nerdctl print the same shape, with
//! the differences [`parse_inspect_all`] absorbs), `events --format '{{json .}}'`
//! (`Type`/`Action`/`Actor`, an exit is `die`: moby `api/types/events/events.go`), `version`,
//! `info`, and the CLI's words for a daemon it cannot reach. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{CLUSTER_LABEL, ContainerEvent, Listed, Node, ROLE_LABEL};

/// What the probe printed says the daemon answered (its version; never empty when it did).
pub fn answered(stdout: &str) -> bool {
    !stdout.trim().is_empty()
}

/// The docker CLI's words for a daemon it cannot reach, every release's: `Cannot connect to the
/// Docker daemon at …` (a socket that refuses, a timeout; moby `client/errors.go:35-41`), docker
/// 29's `failed to connect to the docker API at …` (a socket file that does not exist, a DNS
/// failure; `client/request.go:173-181`), `permission denied while trying to connect to the
/// Docker daemon socket` (before 29) / `… to the docker API` (29, `request.go:171`), and
/// `error during connect` (Windows pipes, ssh).
pub const UNREACHABLE: [&str; 5] = [
    "Cannot connect to the Docker daemon",
    "failed to connect to the docker API",
    "permission denied while trying to connect to the Docker daemon",
    "permission denied while trying to connect to the docker API",
    "error during connect",
];

pub fn parse_ps(stdout: &str) -> Result<Vec<Listed>, String> {
    let mut out = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("docker ps printed a line that is not JSON: {e}"))?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        out.push(Listed {
            name: text("Names"),
            id: text("ID"),
            state: text("State"),
            status: text("Status"),
            labels: labels(v.get("Labels")),
            published: parse_ports(&text("Ports")),
        });
    }
    Ok(out)
}

/// Labels as docker prints them in `ps` (`k=v,k2=v2`) or as a map (podman, nerdctl 1.x).
pub fn labels(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::String(s)) => s
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
            .collect(),
        Some(Value::Object(m)) => {
            m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect()
        }
        _ => BTreeMap::new(),
    }
}

/// `127.0.0.1:30000->30000/tcp, [::]:80-81->80-81/tcp, 8083/tcp` → the published ones.
pub fn parse_ports(text: &str) -> Vec<(String, u16, u16)> {
    let range = |r: &str| -> Option<(u16, u16)> {
        match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => r.parse().ok().map(|p| (p, p)),
        }
    };
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let Some((host, container)) = entry.split_once("->") else { continue };
        let Some((address, ports)) = host.rsplit_once(':') else { continue };
        let container = container.split('/').next().unwrap_or("");
        let (Some((h0, h1)), Some((c0, _))) = (range(ports), range(container)) else { continue };
        let address = address.trim_start_matches('[').trim_end_matches(']');
        let address = if address.is_empty() { "::" } else { address };
        for (i, h) in (h0..=h1).enumerate() {
            out.push((address.to_string(), h, c0.saturating_add(i as u16)));
        }
    }
    out
}

/// Every container of an `inspect` of several (one JSON array), as Docker prints it and as
/// podman and nerdctl copy it, with their differences absorbed: `Name` with Docker's leading
/// `/` or without (podman, nerdctl), `Config.Labels` `null` (podman, a container without
/// labels), `State.StartedAt` with the local offset (podman marshals a Go `time.Time`) or absent
/// (nerdctl before 2.0, `pkg/inspecttypes/dockercompat`: its `State.Pid` then stands for the
/// start), podman's `created` for a container its refresh reset after a reboot.
pub fn parse_inspect_all(stdout: &str) -> Result<Vec<Node>, String> {
    let doc: Value =
        serde_json::from_str(stdout).map_err(|e| format!("inspect printed invalid JSON: {e}"))?;
    let all = doc.as_array().ok_or("inspect printed no list")?;
    Ok(all.iter().map(node).collect())
}

fn node(c: &Value) -> Node {
    let text = |p: &str| c.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let name = text("/Name").trim_start_matches('/').to_string();
    let labels = labels(c.pointer("/Config/Labels"));
    let running = c.pointer("/State/Running").and_then(Value::as_bool).unwrap_or(false);
    let status = c.pointer("/State/Status").and_then(Value::as_str).unwrap_or("unknown").to_string();
    let mut started = text("/State/StartedAt");
    let finished = text("/State/FinishedAt");
    let exit_code = c.pointer("/State/ExitCode").and_then(Value::as_i64).unwrap_or(0);
    let pid = c.pointer("/State/Pid").and_then(Value::as_i64).unwrap_or(0);
    if c.pointer("/State/StartedAt").is_none() && pid > 0 {
        // No start time printed (nerdctl < 2.0): the process stands for the start.
        started = format!("pid {pid}");
    }
    let started_at = crate::utc::parse(&started);
    let mut bindings = Vec::new();
    if let Some(map) = c.pointer("/HostConfig/PortBindings").and_then(Value::as_object) {
        for (key, list) in map {
            let Some(port) = key.split('/').next().and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            for b in list.as_array().into_iter().flatten() {
                let ip = b.get("HostIp").and_then(Value::as_str).unwrap_or("").to_string();
                let host =
                    b.get("HostPort").and_then(Value::as_str).and_then(|p| p.parse().ok()).unwrap_or(0);
                bindings.push((port, ip, host));
            }
        }
    }
    bindings.sort();
    Node {
        name,
        id: text("/Id"),
        role: labels.get(ROLE_LABEL).cloned().unwrap_or_default(),
        running,
        status,
        started_at,
        started,
        finished,
        exit_code,
        kind_cluster: labels.get(CLUSTER_LABEL).cloned(),
        bindings,
    }
}

/// One line of `docker events --format '{{json .}}'`; `None` for anything that is not a
/// container event (or not JSON).
pub fn parse_event(line: &str) -> Option<ContainerEvent> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    if v.get("Type").and_then(Value::as_str) != Some("container") {
        return None;
    }
    let action = v.get("Action").or_else(|| v.get("status")).and_then(Value::as_str)?.to_string();
    let attrs = v.pointer("/Actor/Attributes");
    let attr = |k: &str| attrs.and_then(|a| a.get(k)).and_then(Value::as_str).map(String::from);
    let time_nano = match v.get("timeNano").and_then(Value::as_u64) {
        Some(n) if n > 0 => n as u128,
        _ => v.get("time").and_then(Value::as_u64).unwrap_or(0) as u128 * 1_000_000_000,
    };
    let id = v.pointer("/Actor/ID").or_else(|| v.get("id")).and_then(Value::as_str).unwrap_or("").to_string();
    Some(ContainerEvent { action, name: attr("name")?, id, time_nano, exit_code: attr("exitCode") })
}

/// Nanoseconds since the epoch as `docker events --since/--until` take them
/// (`1796114135.000000042`).
pub fn unix_time_nanos(nanos: u128) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// `linux/amd64 1.50` → (`linux/amd64`, `1.50`).
pub fn parse_server_platform(stdout: &str) -> (String, String) {
    let mut words = stdout.split_whitespace();
    (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string())
}

/// An API version (`1.47`) at least `major.minor`.
pub fn api_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

pub fn uses_containerd_store(driver_status: &str) -> bool {
    driver_status.contains("io.containerd.snapshotter")
}

/// The CLI's refusal of `save --platform`: a daemon older than API 1.48 (Docker 27), or a CLI
/// older than 28.
pub fn lacks_platform_save(stderr: &str) -> bool {
    stderr.contains("requires API version 1.48") || stderr.contains("unknown flag: --platform")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_reads_state_and_bindings() {
        let doc = r#"[{"State": {"Running": true, "Status": "running", "StartedAt": "2026-12-01T08:35:19.454939593Z"},
            "HostConfig": {"PortBindings": {"30000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "30000"}],
                                             "6443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41234"}]}}}]"#;
        let node = &parse_inspect_all(doc).unwrap()[0];
        assert!(node.running);
        assert_eq!(node.started, "2026-12-01T08:35:19.454939593Z");
        assert_eq!(node.bindings, [(6443, "127.0.0.1".into(), 41234), (30000, "127.0.0.1".into(), 30000)]);
        assert!(parse_inspect_all("[]").unwrap().is_empty());
        assert!(parse_inspect_all("{").is_err());
        let two = r#"[{"Name": "/bookstore-control-plane", "State": {"Running": true},
                       "Config": {"Labels": {"io.x-k8s.kind.cluster": "bookstore", "io.x-k8s.kind.role": "control-plane"}}},
                      {"Name": "bookstore-worker", "State": {"Running": false, "Status": "exited", "Pid": 0},
                       "Config": {"Labels": null}}]"#;
        let nodes = parse_inspect_all(two).unwrap();
        assert_eq!(
            nodes.iter().map(|n| (n.name.as_str(), n.role.as_str())).collect::<Vec<_>>(),
            [("bookstore-control-plane", "control-plane"), ("bookstore-worker", "")]
        );
        assert_eq!(nodes[0].kind_cluster.as_deref(), Some("bookstore"));
        assert!(!nodes[1].running && nodes[1].status == "exited");
    }

    #[test]
    fn docker_ps_json_lines_give_state_role_and_published_ports() {
        let out = concat!(
            r#"{"Names":"bookstore-control-plane","State":"exited","Status":"Exited (137) 5 seconds ago","#,
            r#""Labels":"io.x-k8s.kind.cluster=bookstore,io.x-k8s.kind.role=control-plane","#,
            r#""Ports":"127.0.0.1:41234->6443/tcp, 127.0.0.1:30000->30000/tcp"}"#,
            "\n",
            r#"{"Names":"kiali-proxy","State":"running","Status":"Up 1 hour","Labels":"","#,
            r#""Ports":"0.0.0.0:32100->32100/tcp, :::32100->32100/tcp, 8080/tcp, [::1]:9000-9001->90-91/tcp"}"#,
        );
        let listed = parse_ps(out).unwrap();
        assert_eq!(listed[0].role(), "control-plane");
        assert!(!listed[0].running());
        assert_eq!(listed[0].published[1], ("127.0.0.1".into(), 30000, 30000));
        assert!(listed[1].running());
        assert_eq!(
            listed[1].published,
            [
                ("0.0.0.0".into(), 32100, 32100),
                ("::".into(), 32100, 32100),
                ("::1".into(), 9000, 90),
                ("::1".into(), 9001, 91)
            ]
        );
        assert!(parse_ps("not json").is_err());
        assert!(parse_ps("").unwrap().is_empty());
    }

    /// Printed by the docker 28 CLI from a real dockerd 20.10 (SIGTERM to the daemon here).
    const DIE: &str = r#"{"status":"die","id":"bb37846007ed6990112f714115ee418b2e5b3cf87ed94f0f693012c538b58f45","from":"bookstore/fake-node:1","Type":"container","Action":"die","Actor":{"ID":"bb37846007ed6990112f714115ee418b2e5b3cf87ed94f0f693012c538b58f45","Attributes":{"exitCode":"137","image":"bookstore/fake-node:1","io.x-k8s.kind.cluster":"bookstore","io.x-k8s.kind.role":"control-plane","name":"bookstore-control-plane"}},"scope":"local","time":1796114135,"timeNano":1796114135776910709}"#;

    #[test]
    fn reads_the_clis_json_lines() {
        let e = parse_event(DIE).unwrap();
        assert_eq!(e.action, "die");
        assert_eq!(e.name, "bookstore-control-plane");
        assert!(e.id.starts_with("bb37846007ed"));
        assert_eq!(e.exit_code.as_deref(), Some("137"));
        assert_eq!(e.time_nano, 1_796_114_135_776_910_709);
        let old = r#"{"status":"start","Type":"container","Actor":{"Attributes":{"name":"n"}},"time":5}"#;
        assert_eq!(parse_event(old).unwrap().time_nano, 5_000_000_000);
        assert!(
            parse_event(r#"{"Type":"network","Action":"connect","Actor":{"Attributes":{"name":"kind"}}}"#)
                .is_none()
        );
        assert!(parse_event("unexpected EOF").is_none());
        assert!(parse_event("").is_none());
    }

    #[test]
    fn since_is_a_unix_time_with_nanoseconds() {
        assert_eq!(unix_time_nanos(1_796_114_135_000_000_042), "1796114135.000000042");
    }

    #[test]
    fn the_daemons_platform_and_api() {
        assert_eq!(parse_server_platform("linux/arm64 1.47\n"), ("linux/arm64".into(), "1.47".into()));
        assert!(api_at_least("1.48", 1, 48) && api_at_least("1.50", 1, 48) && api_at_least("2.0", 1, 48));
        assert!(!api_at_least("1.47", 1, 48) && !api_at_least("", 1, 48));
    }
}
