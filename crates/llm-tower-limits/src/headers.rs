//! OpenAI's rate-limit headers, on every answer to a client with limits, so that SDKs and
//! clients can pace themselves: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::limiter::{Standing, Standings};

static REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
static TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// Writes the standings' headers into `headers`.
pub(crate) fn write(headers: &mut HeaderMap, standings: &Standings) {
    for (names, standing) in [(&REQUESTS, standings.requests), (&TOKENS, standings.tokens)] {
        let Some(Standing {
            limit,
            remaining,
            reset,
        }) = standing
        else {
            continue;
        };
        headers.insert(names[0].clone(), HeaderValue::from(limit));
        headers.insert(names[1].clone(), HeaderValue::from(remaining));
        if let Ok(reset) = HeaderValue::from_str(&duration(reset)) {
            headers.insert(names[2].clone(), reset);
        }
    }
}

/// A duration as OpenAI writes its resets: `1s`, `6m0s`, `1h2m3s`, `20ms`.
pub(crate) fn duration(wait: Duration) -> String {
    let millis = wait.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    // Whole seconds, rounded up: a client that waits that long finds the room there.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_openai_writes_them() {
        for (wait, text) in [
            (Duration::from_millis(20), "20ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1200), "2s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_secs(3723), "1h2m3s"),
        ] {
            assert_eq!(duration(wait), text);
        }
    }
}
