//! `Retry-After` parsing: `retry-after-ms`, `x-ms-retry-after-ms` and `retry-after`.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// How long the upstream asked to wait, read at the current time; see [`retry_after_at`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// How long the upstream asked to wait, as of `now`.
///
/// Reads, in order of precision, `retry-after-ms` (OpenAI), `x-ms-retry-after-ms` (Azure) —
/// non-negative milliseconds, fractions allowed — and `retry-after` (non-negative seconds or an
/// HTTP-date; a date in the past means "now", [`Duration::ZERO`]). Garbage, negative or
/// non-finite values are ignored, so the next header is tried; `None` when nothing usable is
/// present.
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let ms = ["retry-after-ms", "x-ms-retry-after-ms"]
        .into_iter()
        .find_map(|name| parse_number(headers.get(name)?.to_str().ok()?, 0.001));
    ms.or_else(|| {
        let value = headers
            .get(http::header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim();
        parse_number(value, 1.0).or_else(|| {
            let date = httpdate::parse_http_date(value).ok()?;
            Some(date.duration_since(now).unwrap_or(Duration::ZERO))
        })
    })
}

fn parse_number(text: &str, scale: f64) -> Option<Duration> {
    let text = text.trim();
    // Only plain decimal numbers: no sign, exponent, "inf" or "NaN".
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    Duration::try_from_secs_f64(value * scale).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn seconds_and_ms() {
        let now = SystemTime::now();
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", " 0 ")]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after_at(&headers(&[("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after_at(&headers(&[("x-ms-retry-after-ms", "1500.5")]), now),
            Some(Duration::from_micros(1_500_500))
        );
        // The millisecond headers are more precise and win.
        assert_eq!(
            retry_after_at(
                &headers(&[("retry-after", "2"), ("retry-after-ms", "1800")]),
                now
            ),
            Some(Duration::from_millis(1800))
        );
    }

    #[test]
    fn http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(
            retry_after_at(
                &headers(&[("retry-after", "Wed, 21 Oct 2026 07:28:30 GMT")]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after_at(
                &headers(&[("retry-after", "Wed, 21 Oct 2026 07:27:00 GMT")]),
                now
            ),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn garbage_yields_nothing() {
        let now = SystemTime::now();
        for bad in [
            "",
            "soon",
            "-5",
            "+5",
            "1e3",
            "inf",
            "NaN",
            "5s",
            "Wed, 99 Foo 2026",
        ] {
            assert_eq!(
                retry_after_at(&headers(&[("retry-after", bad)]), now),
                None,
                "{bad:?}"
            );
            assert_eq!(
                retry_after_at(&headers(&[("retry-after-ms", bad)]), now),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(retry_after_at(&HeaderMap::new(), now), None);
        // A bad ms header falls through to a good retry-after.
        assert_eq!(
            retry_after_at(
                &headers(&[("retry-after-ms", "-1"), ("retry-after", "3")]),
                now
            ),
            Some(Duration::from_secs(3))
        );
        // Absurdly large numbers do not panic.
        let huge = "9".repeat(400);
        assert_eq!(
            retry_after_at(&headers(&[("retry-after", &huge)]), now),
            None
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_on_any_text(text in "\\PC*") {
                if let Ok(value) = HeaderValue::from_str(&text) {
                    let mut map = HeaderMap::new();
                    map.insert("retry-after", value.clone());
                    map.insert("retry-after-ms", value);
                    let _ = retry_after_at(&map, SystemTime::now());
                }
            }

            #[test]
            fn whole_seconds_round_trip(secs in 0u64..10_000_000) {
                let map = headers(&[("retry-after", &secs.to_string())]);
                prop_assert_eq!(retry_after_at(&map, SystemTime::now()), Some(Duration::from_secs(secs)));
            }

            #[test]
            fn milliseconds_round_trip(ms in 0u64..10_000_000, azure in any::<bool>()) {
                let name = if azure { "x-ms-retry-after-ms" } else { "retry-after-ms" };
                let map = headers(&[(name, &ms.to_string())]);
                prop_assert_eq!(retry_after_at(&map, SystemTime::now()), Some(Duration::from_millis(ms)));
            }

            #[test]
            fn http_dates_are_relative_to_now(offset in -100_000i64..100_000) {
                let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
                let at = if offset >= 0 {
                    now + Duration::from_secs(offset.unsigned_abs())
                } else {
                    now - Duration::from_secs(offset.unsigned_abs())
                };
                let map = headers(&[("retry-after", &httpdate::fmt_http_date(at))]);
                let expected = Duration::from_secs(u64::try_from(offset).unwrap_or(0));
                prop_assert_eq!(retry_after_at(&map, now), Some(expected));
            }

            #[test]
            fn negative_numbers_are_ignored(value in 1i64..1_000_000) {
                let map = headers(&[("retry-after", &format!("-{value}"))]);
                prop_assert_eq!(retry_after_at(&map, SystemTime::now()), None);
            }
        }
    }
}
