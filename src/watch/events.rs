//! What `docker events --format '{{json .}}'` prints, as the watcher needs it. Pure.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// One container event (`events.Message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// `start`, `die`, `stop`, `kill`, `restart`, `create`, `destroy`, `health_status: …`, …
    pub action: String,
    /// The container's name (`Actor.Attributes.name`).
    pub name: String,
    /// Nanoseconds since the Unix epoch (`timeNano`, else `time`).
    pub time_nano: u128,
    /// `die`: the exit code (`Actor.Attributes.exitCode`).
    pub exit_code: Option<String>,
}

/// One line of the stream; `None` for anything that is not a container event (or not JSON).
pub fn parse(line: &str) -> Option<ContainerEvent> {
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
    Some(ContainerEvent { action, name: attr("name")?, time_nano, exit_code: attr("exitCode") })
}

/// A wall-clock time as `docker events --since` takes it: `1764156639.123456789`.
pub fn unix_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

pub fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Printed by the docker 28 CLI from a real dockerd 20.10 (SIGTERM to the daemon here).
    const DIE: &str = r#"{"status":"die","id":"bb37846007ed6990112f714115ee418b2e5b3cf87ed94f0f693012c538b58f45","from":"bookstore/fake-node:1","Type":"container","Action":"die","Actor":{"ID":"bb37846007ed6990112f714115ee418b2e5b3cf87ed94f0f693012c538b58f45","Attributes":{"exitCode":"137","image":"bookstore/fake-node:1","io.x-k8s.kind.cluster":"bookstore","io.x-k8s.kind.role":"control-plane","name":"bookstore-control-plane"}},"scope":"local","time":1796114135,"timeNano":1796114135776910709}"#;

    #[test]
    fn reads_the_clis_json_lines() {
        let e = parse(DIE).unwrap();
        assert_eq!(e.action, "die");
        assert_eq!(e.name, "bookstore-control-plane");
        assert_eq!(e.exit_code.as_deref(), Some("137"));
        assert_eq!(e.time_nano, 1_796_114_135_776_910_709);
        let old = r#"{"status":"start","Type":"container","Actor":{"Attributes":{"name":"n"}},"time":5}"#;
        assert_eq!(parse(old).unwrap().time_nano, 5_000_000_000);
        assert!(
            parse(r#"{"Type":"network","Action":"connect","Actor":{"Attributes":{"name":"kind"}}}"#)
                .is_none()
        );
        assert!(parse("unexpected EOF").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn since_is_a_unix_time_with_nanoseconds() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_796_114_135_000_000_042);
        assert_eq!(unix_time(t), "1796114135.000000042");
        assert_eq!(nanos(t), 1_796_114_135_000_000_042);
    }
}
