//! Wall-clock formatting without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn parts(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = if month <= 2 { y + 1 } else { y };
    (year, month, day, rem / 3600, (rem / 60) % 60, rem % 60, d.subsec_millis())
}

/// `2026-11-26T11:30:39Z`
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2026-11-26T11:30:39.123Z` (Java `Instant.toString()` style).
pub fn rfc3339_millis(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// `2026-11-26T11:30:39.123456Z`: Istio's log time (istio `pkg/log` `formatDate`) and ztunnel's
/// (tracing's `SystemTime`, microseconds).
pub fn rfc3339_micros(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = parts(t);
    let us = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).subsec_micros();
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}Z")
}

/// `2026-11-26T11:30:39.123456789Z` (Docker's `State.StartedAt`: two restarts within a second
/// still differ).
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = parts(t);
    let ns = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).subsec_nanos();
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ns:09}Z")
}

/// `Tue, 25 Nov 2026 11:30:39 GMT`-less short form used in Docker's `Status` strings.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=1 => "Less than a second".to_string(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".to_string(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".to_string(),
        _ => format!("{} hours", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instant() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_156_639_123);
        assert_eq!(rfc3339(t), "2025-11-26T11:30:39Z");
        assert_eq!(rfc3339_millis(t), "2025-11-26T11:30:39.123Z");
        assert_eq!(rfc3339_nanos(t), "2025-11-26T11:30:39.123000000Z");
    }
}
