//! [`RateLimits`]: what a provider's answer says of its rate limits — OpenAI's and Azure's
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (resets as durations: `6m0s`,
//! `1s`, `20ms`), Anthropic's `anthropic-ratelimit-{requests,tokens,input-tokens,
//! output-tokens}-{limit,remaining,reset}` (resets as RFC 3339 instants) — and
//! [`cooldown_hint`], the wait a failed answer asks for: its `Retry-After`, or for a 429
//! without one, until the reset of the window it spent.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use crate::retry_after_at;
use resets::{go_duration, until_instant};

mod resets;

/// One rate-limit window of a deployment, as an answer told it.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::RateWindow;
///
/// let window = RateWindow { limit: Some(100), remaining: 4, reset: Duration::from_secs(6) };
/// assert!(window.below(0.05) && !window.below(0.01));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateWindow {
    /// The window's size, when told.
    pub limit: Option<u64>,
    /// What is left of it.
    pub remaining: u64,
    /// How long until it is full again (at most [`MAX_RESET`]).
    pub reset: Duration,
}

impl RateWindow {
    /// Whether what is left is below `fraction` of the limit (or nothing is left, when the
    /// limit is not told).
    pub fn below(&self, fraction: f64) -> bool {
        match self.limit {
            Some(limit) => (self.remaining as f64) < fraction * limit as f64 || self.remaining == 0,
            None => self.remaining == 0,
        }
    }

    /// What is left, as a fraction of the limit (0 or 1 when the limit is not told).
    fn left(&self) -> f64 {
        match self.limit {
            Some(limit) if limit > 0 => self.remaining as f64 / limit as f64,
            _ => f64::from(u8::from(self.remaining > 0)),
        }
    }
}

/// What an answer's headers say of a deployment's rate limits: its requests window and its
/// tokens window (Anthropic's input and output token windows count as tokens: the one with
/// the least left).
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use llm_tower_core::RateLimits;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-limit-requests", "60".parse().unwrap());
/// headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
/// headers.insert("x-ratelimit-reset-requests", "6m0s".parse().unwrap());
/// let limits = RateLimits::read(&headers).unwrap();
/// let requests = limits.requests.unwrap();
/// assert_eq!((requests.limit, requests.remaining), (Some(60), 0));
/// assert_eq!(requests.reset, Duration::from_secs(360));
/// assert_eq!(limits.spent_until(), Some(Duration::from_secs(360)));
/// assert!(RateLimits::read(&HeaderMap::new()).is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests.
    pub requests: Option<RateWindow>,
    /// Tokens.
    pub tokens: Option<RateWindow>,
}

/// Which window a header speaks of, and of what.
#[derive(Clone, Copy)]
enum Part {
    Limit,
    Remaining,
    Reset,
}

/// A window being read: its parts as they are found.
#[derive(Clone, Copy, Default)]
struct Parts {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset: Option<Duration>,
}

/// The longest reset taken from a header: a day. An upstream's header is not trusted to
/// name a wait that would overflow a clock.
pub const MAX_RESET: Duration = Duration::from_secs(86_400);

impl Parts {
    fn window(self) -> Option<RateWindow> {
        Some(RateWindow {
            limit: self.limit,
            remaining: self.remaining?,
            reset: self.reset.unwrap_or_default().min(MAX_RESET),
        })
    }
}

impl RateLimits {
    /// Reads `headers` now; `None` when they say nothing of rate limits.
    pub fn read(headers: &HeaderMap) -> Option<Self> {
        // The clock is read only for a reset given as an instant (once, however many there
        // are): most answers have none.
        Self::read_with(headers, SystemTime::now)
    }

    /// Reads `headers` as of `now` (Anthropic's resets are instants). One pass over the
    /// headers, comparing each name's first bytes: an answer without these headers costs a
    /// few compares per header.
    pub fn read_at(headers: &HeaderMap, now: SystemTime) -> Option<Self> {
        Self::read_with(headers, || now)
    }

    fn read_with(headers: &HeaderMap, now: impl Fn() -> SystemTime) -> Option<Self> {
        let at = std::cell::OnceCell::new();
        // requests, tokens, input tokens, output tokens.
        let mut windows = [Parts::default(); 4];
        let mut any = false;
        for (name, value) in headers {
            let name = name.as_str();
            let Some((window, part, anthropic)) = classify(name) else {
                continue;
            };
            let Ok(value) = value.to_str() else { continue };
            let value = value.trim();
            let slot = &mut windows[window];
            match part {
                Part::Limit => slot.limit = value.parse().ok(),
                Part::Remaining => slot.remaining = value.parse().ok(),
                Part::Reset if anthropic => {
                    slot.reset = until_instant(value, *at.get_or_init(&now));
                }
                Part::Reset => slot.reset = go_duration(value),
            }
            any = true;
        }
        if !any {
            return None;
        }
        let [requests, tokens, input, output] = windows.map(Parts::window);
        // The window with the least left speaks for tokens; of spent ones, the one that is
        // spent longest (a wait is until every spent window is back).
        let tokens = [tokens, input, output]
            .into_iter()
            .flatten()
            .min_by(|a, b| a.left().total_cmp(&b.left()).then(b.reset.cmp(&a.reset)));
        let limits = Self { requests, tokens };
        (limits.requests.is_some() || limits.tokens.is_some()).then_some(limits)
    }

    /// The same windows, none resetting later than `max` from now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use llm_tower_core::{RateLimits, RateWindow};
    ///
    /// let hour = RateWindow { limit: None, remaining: 0, reset: Duration::from_secs(3600) };
    /// let limits = RateLimits { requests: Some(hour), tokens: None };
    /// let capped = limits.capped(Duration::from_secs(60));
    /// assert_eq!(capped.requests.unwrap().reset, Duration::from_secs(60));
    /// ```
    #[must_use]
    pub fn capped(mut self, max: Duration) -> Self {
        for window in [&mut self.requests, &mut self.tokens].into_iter().flatten() {
            window.reset = window.reset.min(max);
        }
        self
    }

    /// How long until every spent window (nothing left) is full again: what a 429 without
    /// `Retry-After` asks for. `None` when no window is spent.
    pub fn spent_until(&self) -> Option<Duration> {
        [self.requests, self.tokens]
            .into_iter()
            .flatten()
            .filter(|window| window.remaining == 0)
            .map(|window| window.reset)
            .max()
    }

    /// The windows below `fraction` of their limit (see [`RateWindow::below`]), and how long
    /// until the last of them resets: `None` when none is.
    pub fn low_for(&self, fraction: f64) -> Option<Duration> {
        [self.requests, self.tokens]
            .into_iter()
            .flatten()
            .filter(|window| window.below(fraction))
            .map(|window| window.reset)
            .max()
    }
}

/// The window (requests 0, tokens 1, input 2, output 3), the part, and whether it is
/// Anthropic's, of a rate-limit header's name.
fn classify(name: &str) -> Option<(usize, Part, bool)> {
    let part = |part: &str| match part {
        "limit" => Some(Part::Limit),
        "remaining" => Some(Part::Remaining),
        "reset" => Some(Part::Reset),
        _ => None,
    };
    let window = |window: &str| match window {
        "requests" => Some(0),
        "tokens" => Some(1),
        "input-tokens" => Some(2),
        "output-tokens" => Some(3),
        _ => None,
    };
    if let Some(rest) = name.strip_prefix("x-ratelimit-") {
        // `x-ratelimit-{part}-{window}`, requests or tokens only.
        let (which, of) = rest.split_once('-')?;
        return Some((window(of).filter(|&w| w < 2)?, part(which)?, false));
    }
    // `anthropic-ratelimit-{window}-{part}`.
    let (of, which) = name
        .strip_prefix("anthropic-ratelimit-")?
        .rsplit_once('-')?;
    Some((window(of)?, part(which)?, true))
}

/// The wait a failed answer (`status`, `headers`) asks for, as of `now`: its `Retry-After`
/// (see [`retry_after_at`]), or, for a 429 without one, until the windows it spent are full
/// again ([`RateLimits::spent_until`]). `None`: it asks for none.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::{HeaderMap, StatusCode};
/// use llm_tower_core::cooldown_hint;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-remaining-tokens", "0".parse().unwrap());
/// headers.insert("x-ratelimit-reset-tokens", "20s".parse().unwrap());
/// let now = SystemTime::now();
/// assert_eq!(cooldown_hint(StatusCode::TOO_MANY_REQUESTS, &headers, now), Some(Duration::from_secs(20)));
/// // A Retry-After says it first; and only a 429 speaks through its windows.
/// assert_eq!(cooldown_hint(StatusCode::SERVICE_UNAVAILABLE, &headers, now), None);
/// headers.insert("retry-after", "3".parse().unwrap());
/// assert_eq!(cooldown_hint(StatusCode::TOO_MANY_REQUESTS, &headers, now), Some(Duration::from_secs(3)));
/// ```
pub fn cooldown_hint(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    retry_after_at(headers, now).or_else(|| {
        (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| RateLimits::read_at(headers, now)?.spent_until())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn anthropic_windows_with_instants() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_565_600); // 2026-12-06T14:00:00Z
        let limits = RateLimits::read_at(
            &headers(&[
                ("anthropic-ratelimit-requests-limit", "50"),
                ("anthropic-ratelimit-requests-remaining", "49"),
                ("anthropic-ratelimit-requests-reset", "2026-12-06T14:00:01Z"),
                ("anthropic-ratelimit-input-tokens-limit", "40000"),
                ("anthropic-ratelimit-input-tokens-remaining", "1000"),
                (
                    "anthropic-ratelimit-input-tokens-reset",
                    "2026-12-06T15:00:30+01:00",
                ),
                ("anthropic-ratelimit-output-tokens-limit", "8000"),
                ("anthropic-ratelimit-output-tokens-remaining", "7000"),
                (
                    "anthropic-ratelimit-output-tokens-reset",
                    "2026-12-06T14:00:02.5Z",
                ),
            ]),
            now,
        )
        .unwrap();
        let requests = limits.requests.unwrap();
        assert_eq!(
            (requests.remaining, requests.reset),
            (49, Duration::from_secs(1))
        );
        // Input tokens have the least left (2.5 %): they speak for tokens.
        let tokens = limits.tokens.unwrap();
        assert_eq!((tokens.limit, tokens.remaining), (Some(40_000), 1000));
        assert_eq!(tokens.reset, Duration::from_secs(30));
        assert_eq!(limits.low_for(0.05), Some(Duration::from_secs(30)));
        assert_eq!(limits.low_for(0.01), None);
        assert_eq!(limits.spent_until(), None);
    }

    #[test]
    fn a_hostile_reset_is_a_day_at_most() {
        for reset in ["99999999999999h", "1e300", "9999-12-31T23:59:59Z"] {
            let name = if reset.contains('T') {
                "anthropic-ratelimit-requests-reset"
            } else {
                "x-ratelimit-reset-requests"
            };
            let remaining = if reset.contains('T') {
                "anthropic-ratelimit-requests-remaining"
            } else {
                "x-ratelimit-remaining-requests"
            };
            let limits = RateLimits::read(&headers(&[(remaining, "0"), (name, reset)])).unwrap();
            let window = limits.requests.unwrap();
            assert!(window.reset <= MAX_RESET, "{reset}: {window:?}");
        }
    }

    #[test]
    fn of_two_spent_token_windows_the_later_reset_is_waited_for() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_565_600); // 2026-12-06T14:00:00Z
        let limits = RateLimits::read_at(
            &headers(&[
                ("anthropic-ratelimit-input-tokens-limit", "1000"),
                ("anthropic-ratelimit-input-tokens-remaining", "0"),
                (
                    "anthropic-ratelimit-input-tokens-reset",
                    "2026-12-06T14:00:05Z",
                ),
                ("anthropic-ratelimit-output-tokens-limit", "1000"),
                ("anthropic-ratelimit-output-tokens-remaining", "0"),
                (
                    "anthropic-ratelimit-output-tokens-reset",
                    "2026-12-06T14:00:50Z",
                ),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(limits.spent_until(), Some(Duration::from_secs(50)));
    }

    #[test]
    fn other_headers_say_nothing() {
        assert_eq!(
            RateLimits::read(&headers(&[
                ("content-type", "application/json"),
                ("x-ratelimit-remaining-requests", "many"),
                ("x-ratelimit-other-requests", "1"),
            ])),
            None
        );
    }
}
