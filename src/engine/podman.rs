//! What the podman CLI prints where it is not Docker's, read (containers/podman v4.3.1, Debian
//! 12's, checked against it; and podman 5's documented formats). Pure.
//!
//! - `ps --format json` is one indented JSON array (`cmd/podman/containers/ps.go`), each entry a
//!   `ListContainer` (`pkg/domain/entities/container_ps.go`; `entities/types` in 5.x): `Names`
//!   a list, `Labels` a map, `Ports` a list of `{host_ip, container_port, host_port, range,
//!   protocol}`, `State` as `created`/`running`/`exited`, `StartedAt` Unix seconds.
//! - `inspect`: Docker's shape with the differences [`super::docker::parse_inspect_all`] absorbs.
//! - `events --format json`: one JSON object a line. Podman 4 marshals libpod's `Event`
//!   (`libpod/events/config.go`): `Status` (an exit is `died`), `Name`, `ID`, `Time` (RFC 3339
//!   with nanoseconds), `Type`, `Attributes` (the labels), `ContainerExitCode`. Podman 5 prints
//!   its own `Event` (`cmd/podman/system/events.go`): `time` and `timeNano` (Unix) instead of
//!   `Time`. A reboot shows as a `system` `refresh` event.

use serde_json::Value;

use super::{ContainerEvent, Listed};

pub fn parse_ps(stdout: &str) -> Result<Vec<Listed>, String> {
    if stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("podman ps printed something that is not JSON: {e}"))?;
    let all = doc.as_array().ok_or("podman ps printed no JSON list")?;
    let mut out = Vec::new();
    for c in all {
        let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let name = match c.get("Names") {
            Some(Value::Array(names)) => names.first().and_then(Value::as_str).unwrap_or("").to_string(),
            Some(Value::String(name)) => name.clone(),
            _ => String::new(),
        };
        let published = c
            .get("Ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|p| {
                let num = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
                let address = p.get("host_ip").and_then(Value::as_str).unwrap_or("");
                let address = if address.is_empty() { "0.0.0.0" } else { address }.to_string();
                let (host, container, range) = (num("host_port"), num("container_port"), num("range").max(1));
                (0..range).filter_map(move |i| {
                    Some((address.clone(), u16::try_from(host + i).ok()?, u16::try_from(container + i).ok()?))
                })
            })
            .filter(|(_, host, _)| *host != 0)
            .collect();
        out.push(Listed {
            name,
            id: text("Id"),
            state: text("State"),
            status: text("Status"),
            labels: super::docker::labels(c.get("Labels")),
            published,
        });
    }
    Ok(out)
}

/// One line of `podman events --format json`; `None` for anything that is not a container
/// event. Actions in Docker's words: `died` is `die`, `remove` is `destroy`.
pub fn parse_event(line: &str) -> Option<ContainerEvent> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    if v.get("Type").and_then(Value::as_str) != Some("container") {
        return None;
    }
    let action = match v.get("Status").and_then(Value::as_str)? {
        "died" => "die",
        "remove" => "destroy",
        other => other,
    };
    let time_nano = match (v.get("timeNano").and_then(Value::as_u64), v.get("time").and_then(Value::as_u64)) {
        (Some(n), _) if n > 0 => n as u128,
        (_, Some(s)) if s > 0 => s as u128 * 1_000_000_000,
        _ => crate::utc::nanos(v.get("Time").and_then(Value::as_str).unwrap_or(""))?,
    };
    let exit_code = v.get("ContainerExitCode").and_then(Value::as_i64).map(|c| c.to_string());
    let exit_code = exit_code.or_else(|| (action == "die").then(|| "0".to_string()));
    Some(ContainerEvent {
        action: action.to_string(),
        name: v.get("Name").and_then(Value::as_str)?.to_string(),
        id: v.get("ID").and_then(Value::as_str).unwrap_or("").to_string(),
        time_nano,
        exit_code,
    })
}

/// A time as `podman events --since/--until` take it: RFC 3339 with nanoseconds, UTC (a Unix
/// time with a fraction is refused by 4.3's parser).
pub fn since(nanos: u128) -> String {
    let secs = (nanos / 1_000_000_000) as u64;
    let stamp = crate::utc::format(secs);
    format!("{}.{:09}Z", stamp.trim_end_matches('Z'), nanos % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_rfc3339_with_nanoseconds() {
        assert_eq!(since(1_796_698_578_000_000_042), "2026-12-08T02:56:18.000000042Z");
        assert_eq!(crate::utc::nanos(&since(1_796_698_578_123_456_789)), Some(1_796_698_578_123_456_789));
    }
}
