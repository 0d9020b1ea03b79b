//! What the nerdctl CLI (Rancher Desktop's containerd mode, finch, lima's `nerdctl.lima`) prints
//! where it is not Docker's, read from containerd/nerdctl's sources and docs. Pure.
//!
//! - `ps --format '{{json .}}'`: a JSON object a line like Docker's, but without `State`
//!   (`pkg/cmd/container/list.go` `ListItem`: "TODO … State"): the state is read from `Status`
//!   (`Up …`, `Exited (0) … ago`, `Created`); `Labels` a map in 1.x, Docker's `k=v,…` in 2.x.
//! - `inspect`: Docker's shape (`pkg/inspecttypes/dockercompat`), without `State.StartedAt`
//!   before 2.0 (added in 2024, `0d470e7e`).
//! - `events`: "The output format is not compatible with Docker"; only `--filter event=start`
//!   (2.0+), no `--since`/`--until` (`docs/command-reference.md`). `--format '{{json .}}'` prints
//!   `EventOut` (`pkg/cmd/system/events.go`): containerd's envelope, `Timestamp`, `Namespace`,
//!   `Topic` (`/tasks/start`, `/tasks/exit`, `/containers/delete`, …) and the event itself as a
//!   JSON string in `Event` (`container_id`, and for an exit `id` and `exit_status`); `ID` from
//!   2.0. No name: the container is known by its ID. Each line is followed by an empty one.

use serde_json::Value;

use super::{ContainerEvent, Listed};

pub fn parse_ps(stdout: &str) -> Result<Vec<Listed>, String> {
    let mut out = super::docker::parse_ps(stdout).map_err(|e| e.replace("docker ps", "nerdctl ps"))?;
    for c in &mut out {
        if c.state.is_empty() {
            c.state = state_of(&c.status).to_string();
        }
    }
    Ok(out)
}

/// The state a `Status` column says (nerdctl's `formatter.ContainerStatus`).
pub fn state_of(status: &str) -> &'static str {
    let s = status.trim().to_ascii_lowercase();
    if s.starts_with("up") {
        "running"
    } else if s.starts_with("exited") {
        "exited"
    } else if s.starts_with("created") {
        "created"
    } else if s.starts_with("paused") {
        "paused"
    } else if s.starts_with("restarting") {
        "restarting"
    } else {
        "unknown"
    }
}

/// One line of `nerdctl events --format '{{json .}}'`: a container's task starting, its main
/// process exiting (not an exec'd one), the container deleted; `None` for anything else. The
/// event carries the container's ID, no name.
pub fn parse_event(line: &str) -> Option<ContainerEvent> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    let topic = v.get("Topic").and_then(Value::as_str)?;
    let inner: Value = v
        .get("Event")
        .and_then(Value::as_str)
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or(Value::Null);
    let field = |k: &str| inner.get(k).and_then(Value::as_str).unwrap_or("");
    let container = match field("container_id") {
        "" => v.get("ID").and_then(Value::as_str).unwrap_or(""),
        id => id,
    };
    if container.is_empty() {
        return None;
    }
    let (action, exit_code) = match topic {
        "/tasks/start" => ("start", None),
        // An exec'd process inside the container exits under its own id.
        "/tasks/exit" if field("id").is_empty() || field("id") == container => {
            ("die", Some(inner.get("exit_status").and_then(Value::as_u64).unwrap_or(0).to_string()))
        }
        "/containers/delete" => ("destroy", None),
        _ => return None,
    };
    Some(ContainerEvent {
        action: action.to_string(),
        name: String::new(),
        id: container.to_string(),
        time_nano: crate::utc::nanos(v.get("Timestamp").and_then(Value::as_str).unwrap_or("")).unwrap_or(0),
        exit_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_read_from_the_status_column() {
        assert_eq!(state_of("Up"), "running");
        assert_eq!(state_of("Up 3 minutes"), "running");
        assert_eq!(state_of("Exited (137) 2 minutes ago"), "exited");
        assert_eq!(state_of("Created"), "created");
        assert_eq!(state_of(""), "unknown");
    }
}
