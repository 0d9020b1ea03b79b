//! What `docker events --format '{{json .}}'` prints, as the watcher needs it. Pure.

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

/// Nanoseconds since the epoch (Docker's `timeNano`) as `--since`/`--until` take them.
pub fn unix_time_nanos(nanos: u128) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// A Docker timestamp (`State.StartedAt`: `2026-12-01T08:35:19.454939593Z`) in nanoseconds
/// since the epoch, on Docker's own clock; `None` for Docker's zero time (never) or bad text.
pub fn nanos_of(text: &str) -> Option<u128> {
    let secs = crate::utc::parse(text)?;
    let t = text.trim();
    let fraction: String =
        t.get(19..)?.strip_prefix('.').unwrap_or("").chars().take_while(char::is_ascii_digit).collect();
    let mut digits = fraction.chars().take(9).collect::<String>();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos = secs as u128 * 1_000_000_000 + digits.parse::<u128>().ok()?;
    (nanos > 0).then_some(nanos)
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
        assert_eq!(unix_time_nanos(1_796_114_135_000_000_042), "1796114135.000000042");
    }

    #[test]
    fn dockers_timestamps_in_nanoseconds() {
        assert_eq!(nanos_of("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(nanos_of("2026-12-01T08:35:19.454939593Z").map(|n| n % 1_000_000_000), Some(454_939_593));
        assert_eq!(nanos_of("2026-12-01T08:35:19Z").map(|n| n % 1_000_000_000), Some(0));
        let later = nanos_of("2026-12-01T08:35:19.454939594Z").unwrap();
        assert!(later > nanos_of("2026-12-01T08:35:19.454939593Z").unwrap());
        assert_eq!(nanos_of("0001-01-01T00:00:00Z"), None, "Docker's zero time is never");
        assert_eq!(nanos_of("garbage"), None);
    }
}
