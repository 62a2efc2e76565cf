//! Durations as users write them in flags and specs: `30s`, `10m`, `720h`, `1h30m`, `500ms`.

use std::time::Duration;

/// The longest text [`parse`] accepts; the CRD's duration fields carry the same maxLength.
pub const MAX_LEN: usize = 32;

/// A duration as [`parse`] reads it, in whole seconds: `45s`, `10m`, `1h30m`, `24h`.
pub fn format(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let parts = [(hours, "h"), (minutes, "m"), (seconds, "s")];
    let text: String = parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect();
    if text.is_empty() { "0s".into() } else { text }
}

/// Parses a duration such as `30s`, `10m`, `720h`, `1h30m`, `1.5h` or `500ms`. Never panics:
/// text longer than [`MAX_LEN`], or a sum that does not fit a [`Duration`], is an error.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("{:?} is not a duration such as 30s, 10m or 720h", crate::text::shorten(text, MAX_LEN + 8));
    let mut rest = text.trim();
    if rest.is_empty() || rest.len() > MAX_LEN {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(number_len);
        // f64's parser also takes "1e3", "inf" and "NaN"; only digits with an optional fraction
        // are durations.
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(invalid()),
        };
        let part = Duration::try_from_secs_f64(seconds).map_err(|_| invalid())?;
        total = total.checked_add(part).ok_or_else(invalid)?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_forms_users_write() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("720h"), Ok(Duration::from_secs(720 * 3600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn formats_whole_seconds_as_parse_reads_them() {
        for (seconds, text) in
            [(0, "0s"), (45, "45s"), (600, "10m"), (5400, "1h30m"), (86_400, "24h"), (3_661, "1h1m1s")]
        {
            assert_eq!(format(Duration::from_secs(seconds)), text);
            assert_eq!(parse(text), Ok(Duration::from_secs(seconds)));
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "10", "m", "10d", "-1s", "1h-", "ten minutes", "1e3s", ".5s", "5.s", "1.2.3s", "infs", "NaNs"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn overflow_and_absurd_lengths_are_errors_not_panics() {
        assert!(parse("10000000000000000000s10000000000000000000s").is_err(), "longer than 32 characters");
        assert!(parse("9999999999999999999h").is_err(), "beyond Duration");
        assert!(parse("18446744073709551615s1s").is_err(), "the sum overflows");
        assert!(parse(&"1s".repeat(17)).is_err(), "34 characters");
        assert_eq!(parse(&"1s".repeat(16)), Ok(Duration::from_secs(16)), "exactly 32 characters");
        let message = parse(&"9".repeat(10_000)).unwrap_err();
        assert!(message.len() < 200, "the message quotes a bounded prefix: {message}");
    }

    /// The number of cases of a property test: `default`, so that `cargo test --lib` stays fast,
    /// or PROPTEST_CASES for a longer search, e.g.
    /// `PROPTEST_CASES=100000 cargo test --release --lib -- duration plan::tests::properties`.
    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(512)))]

        #[test]
        fn parse_never_panics_on_any_text(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_duration_like_text(text in r"[0-9.]{0,40}((ms|s|m|h|d|x)?[0-9.]{0,40}){0,12}") {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_many_long_segments(
            segments in prop::collection::vec((prop_oneof![
                "[0-9]{1,30}(\\.[0-9]{1,5})?",
                any::<u64>().prop_map(|n| n.to_string()),
                (u64::MAX / 4..=u64::MAX).prop_map(|n| n.to_string()),
            ], "(ms|s|m|h)"), 1..20),
        ) {
            let text: String = segments.iter().map(|(n, u)| format!("{n}{u}")).collect();
            let parsed = parse(&text);
            if text.len() > MAX_LEN {
                prop_assert!(parsed.is_err());
            }
        }

        #[test]
        fn whole_seconds_round_trip(secs in 0u64..=10_000_000_000) {
            prop_assert_eq!(parse(&format!("{secs}s")), Ok(Duration::from_secs(secs)));
        }
    }
}
