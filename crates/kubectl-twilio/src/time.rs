//! Times as people read them: ages ("5m", "3h12m"), and deadlines relative to now ("in 9m", "2d ago").

use k8s_openapi::jiff::Timestamp;

/// A span of seconds in the style of kubectl's AGE column: `45s`, `9m59s`, `42m`, `7h5m`, `30h`,
/// `3d4h`, `120d`. Negative spans count as zero.
pub fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    // A second unit only when it is not zero: "9m", "9m30s".
    let two = |big: i64, big_unit: &str, small: i64, small_unit: &str| match small {
        0 => format!("{big}{big_unit}"),
        _ => format!("{big}{big_unit}{small}{small_unit}"),
    };
    match s {
        _ if s < 60 => format!("{s}s"),
        _ if s < 600 => two(m, "m", s % 60, "s"),
        _ if s < 3600 => format!("{m}m"),
        _ if s < 8 * 3600 => two(h, "h", m % 60, "m"),
        _ if s < 48 * 3600 => format!("{h}h"),
        _ if s < 8 * 86_400 => two(d, "d", h % 24, "h"),
        _ => format!("{d}d"),
    }
}

/// How long ago `then` was.
pub fn age(then: Timestamp, now: Timestamp) -> String {
    human(now.as_second() - then.as_second())
}

/// `then` relative to now: "in 9m", "2d ago", or "now".
pub fn relative(then: Timestamp, now: Timestamp) -> String {
    let delta = then.as_second() - now.as_second();
    match delta {
        0 => "now".into(),
        d if d > 0 => format!("in {}", human(d)),
        d => format!("{} ago", human(-d)),
    }
}

/// An RFC 3339 time from a status field, with where it stands relative to now:
/// `2026-01-01T00:10:00Z (in 9m)`. Text that is not a time is shown as it is.
pub fn stamp(text: &str, now: Timestamp) -> String {
    match text.parse::<Timestamp>() {
        Ok(t) => format!("{text} ({})", relative(t, now)),
        Err(_) => format!("{text} (not a valid RFC 3339 time)"),
    }
}

/// `now` to the second, in RFC 3339 (`2026-01-01T00:00:00Z`).
pub fn to_the_second(now: Timestamp) -> String {
    Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn spans_read_like_kubectl_ages() {
        let cases = [
            (-5, "0s"),
            (0, "0s"),
            (59, "59s"),
            (61, "1m1s"),
            (599, "9m59s"),
            (600, "10m"),
            (3599, "59m"),
            (3600 + 5 * 60, "1h5m"),
            (3600, "1h"),
            (300, "5m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (2 * 86_400 + 3 * 3600, "2d3h"),
            (30 * 86_400, "30d"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human(seconds), expected, "{seconds}s");
        }
    }

    #[test]
    fn deadlines_are_relative_to_now() {
        let now = t("2026-01-01T00:00:00Z");
        assert_eq!(relative(t("2026-01-01T00:09:00Z"), now), "in 9m");
        assert_eq!(relative(t("2025-12-30T00:00:00Z"), now), "2d ago");
        assert_eq!(relative(now, now), "now");
        assert_eq!(age(t("2025-12-31T23:00:00Z"), now), "1h");
        assert_eq!(stamp("2026-01-31T00:00:00Z", now), "2026-01-31T00:00:00Z (in 30d)");
        assert_eq!(stamp("soon", now), "soon (not a valid RFC 3339 time)");
    }

    #[test]
    fn now_is_written_to_the_second() {
        assert_eq!(to_the_second(t("2026-01-01T00:00:00.123456Z")), "2026-01-01T00:00:00Z");
    }
}
