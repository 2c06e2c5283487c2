//! The resets of rate-limit windows, as providers write them: OpenAI's Go durations (`6m0s`,
//! `20ms`) and Anthropic's RFC 3339 instants, read without a date library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A duration as OpenAI writes its resets (Go's form): `6m0s`, `1s`, `20ms`, `1.5s`,
/// `1h2m3s`; a bare number is seconds.
pub(super) fn go_duration(text: &str) -> Option<Duration> {
    // A bare number of seconds: digits and a point only (no sign, exponent, `inf`).
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !text.is_empty() {
        return Duration::try_from_secs_f64(text.parse().ok()?).ok();
    }
    if text.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&at| at > 0)?;
        let (number, after) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let unit = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit);
        total += number
            * match unit {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 0.001,
                "us" | "µs" => 0.000_001,
                "ns" => 0.000_000_001,
                _ => return None,
            };
        rest = after;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The time from `now` to an RFC 3339 instant (`2026-12-06T14:00:30Z`, fractions and
/// offsets allowed); zero for one past.
pub(super) fn until_instant(text: &str, now: SystemTime) -> Option<Duration> {
    let at = rfc3339(text)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn rfc3339(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        let (fraction, after) = fraction.split_at(digits);
        if fraction.is_empty() {
            return None;
        }
        let scaled = format!("{fraction:0<9}");
        nanos = scaled.get(..9)?.parse().ok()?;
        rest = after;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            // `+HH:MM`, at most 23:59: nothing an upstream writes can overflow the sum.
            let offset = rest.get(1..)?;
            if offset.len() != 5 || offset.as_bytes()[2] != b':' {
                return None;
            }
            let digits = |part: &str| -> Option<i64> {
                part.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| part.parse().ok())?
            };
            let (hours, minutes) = (digits(&offset[..2])?, digits(&offset[3..])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = crate::civil::days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_durations_as_go_writes_them() {
        for (text, secs) in [
            ("6m0s", 360.0),
            ("1s", 1.0),
            ("20ms", 0.02),
            ("1.5s", 1.5),
            ("1h2m3s", 3723.0),
            ("59.946s", 59.946),
            ("7", 7.0),
        ] {
            assert_eq!(
                go_duration(text),
                Duration::try_from_secs_f64(secs).ok(),
                "{text}"
            );
        }
        for bad in ["", "s", "1x", "-1s", "1s2", "+5", "1e19", "inf"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn anthropic_resets_are_instants_from_now() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_565_600); // 2026-12-06T14:00:00Z
        // A reset in the past is now.
        assert_eq!(
            until_instant("2026-12-06T13:00:00Z", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            until_instant("2026-12-06T13:00:30-01:00", now),
            Some(Duration::from_secs(30)),
            "a negative offset"
        );
        for bad in [
            "2026-12-06T14:00:00+-01:00",
            "2026-12-06T14:00:00+99:99",
            "2026-12-06T14:00:00.Z",
            "2026-12-06T14:00:00+99999999999999:00",
            "2026-12-06",
            "2026-13-06T14:00:00Z",
            "2026-12-06T14:00:00",
            "yesterday",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }
}
