//! Time as Kubernetes and Docker write it: RFC 3339 UTC timestamps (`2026-11-26T11:30:39Z`) to
//! and from seconds since the epoch, and ages as `kubectl get` shows them. Said once here for the
//! kubectl JSON, Docker's `State.StartedAt`, ztunnel's log lines, the reasons `up` prints and the
//! `--timings` page. Pure.
/// A Kubernetes timestamp (`2026-11-26T11:30:39Z`, fractions and offsets allowed) as seconds
/// since the epoch.
pub fn parse(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.len() < 20 || !t.is_char_boundary(19) {
        return None;
    }
    let num = |a: usize, b: usize| t.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if t.as_bytes()[4] != b'-' || t.as_bytes()[10] != b'T' || !(1..=12).contains(&mo) {
        return None;
    }
    let rest = &t[19..];
    let zone = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone {
        "Z" | "z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) => {
            let h: i64 = z.get(1..3)?.parse().ok()?;
            let m: i64 = z.get(4..6)?.parse().ok()?;
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + s - offset).ok()
}

/// A timestamp with its fraction (Docker's `State.StartedAt`: `2026-12-01T08:35:19.454939593Z`,
/// podman's with the local offset) in nanoseconds since the epoch, on the engine's own clock;
/// `None` for the zero time (`0001-01-01T00:00:00Z`: never) or bad text.
pub fn nanos(text: &str) -> Option<u128> {
    let secs = parse(text)?;
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

/// Seconds since the epoch as Kubernetes writes a timestamp: `2026-11-26T11:30:39Z`.
pub fn format(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Seconds as `kubectl get` shows ages: 45s, 12m, 3h, 5d.
pub fn age(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds}s"),
        120..7200 => format!("{}m", seconds / 60),
        7200..172_800 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_and_written_as_kubernetes_writes_them() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2025-11-26T11:30:39Z"), Some(1_764_156_639));
        assert_eq!(parse("2025-11-26T11:30:39.123456Z"), Some(1_764_156_639));
        assert_eq!(parse("2025-11-26T12:30:39+01:00"), Some(1_764_156_639));
        assert_eq!(parse("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for t in [0, 1_709_164_800, 1_764_156_639, 4_102_444_799] {
            assert_eq!(parse(&format(t)), Some(t), "{}", format(t));
        }
        assert_eq!(format(1_764_156_639), "2025-11-26T11:30:39Z");
        for bad in ["", "yesterday", "2025-13-01T00:00:00Z", "2025-11-26 11:30:39Z", "2025-11-26T11:30:39"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(age(45), "45s");
        assert_eq!(age(750), "12m");
        assert_eq!(age(4 * 3600), "4h");
        assert_eq!(age(5 * 86_400), "5d");
    }

    #[test]
    fn engine_timestamps_in_nanoseconds() {
        assert_eq!(nanos("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(nanos("2026-12-01T08:35:19.454939593Z").map(|n| n % 1_000_000_000), Some(454_939_593));
        assert_eq!(nanos("2026-12-01T08:35:19Z").map(|n| n % 1_000_000_000), Some(0));
        let later = nanos("2026-12-01T08:35:19.454939594Z").unwrap();
        assert!(later > nanos("2026-12-01T08:35:19.454939593Z").unwrap());
        // podman's, with the local offset: the same instant.
        assert_eq!(nanos("2026-12-01T09:35:19.454939593+01:00"), nanos("2026-12-01T08:35:19.454939593Z"));
        assert_eq!(nanos("0001-01-01T00:00:00Z"), None, "the zero time is never");
        assert_eq!(nanos("garbage"), None);
    }
}
