//! Durations in configuration: integer milliseconds (`5000`) or a string with a unit
//! (`"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`; a bare number string is milliseconds).
//!
//! Use with `#[serde(with = "llm_tower_core::duration")]`, or
//! `#[serde(with = "llm_tower_core::duration::option")]` for `Option<Duration>`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Parses `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"` or `"5000"` (milliseconds).
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" | "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad(text)),
    };
    let value: f64 = number.parse().map_err(|_| bad(text))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad(text))
}

fn bad(text: &str) -> String {
    format!(
        "invalid duration `{text}`: expected milliseconds (5000) or a number with a unit \
         (250ms, 5s, 2m, 1h)"
    )
}

/// Formats a duration the way [`parse`] reads it: `"250ms"`, `"5s"`.
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) && ms > 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Serialises a duration as a string such as `"250ms"`.
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

/// Deserialises a duration from integer milliseconds or a string with a unit.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration: milliseconds (5000) or a string such as \"250ms\" or \"5s\"")
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Duration, E> {
        Ok(Duration::from_millis(ms))
    }

    fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Duration, E> {
        u64::try_from(ms)
            .map(Duration::from_millis)
            .map_err(|_| E::custom(format!("invalid duration {ms}: must not be negative")))
    }

    fn visit_f64<E: de::Error>(self, ms: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
            E::custom(format!(
                "invalid duration {ms}: must be a finite non-negative number"
            ))
        })
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse(text).map_err(E::custom)
    }
}

/// The same for `Option<Duration>`; `null` (or a missing field with `#[serde(default)]`) is `None`.
pub mod option {
    use super::{Deserializer, Duration, Serializer};
    use serde::Deserialize;

    /// Serialises `Some(d)` as a duration string and `None` as nothing/null.
    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => super::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Deserialises an optional duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapper(#[serde(with = "super")] Duration);
        Ok(Option::<Wrapper>::deserialize(deserializer)?.map(|Wrapper(d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("5000").unwrap(), Duration::from_secs(5));
        for bad in ["", "ms", "5 parsecs", "-1s", "1e3s", "abc"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(5)), "5s");
    }
}
