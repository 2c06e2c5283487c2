//! [`Headroom`]: a deployment's rate-limit windows as its provider's last answer told them
//! (`x-ratelimit-*`, `anthropic-ratelimit-*`), with when each is full again; and whether the
//! deployment is to be skipped, like a cooling one, until then — before a 429 has to happen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use llm_tower_core::{RateLimits, RateWindow};
use serde::Serialize;
use tokio::time::Instant;

/// The last reading, and flags read without locking on every admission: whether a window
/// was below the threshold when it was read, and whether a tokens window was told (which a
/// request larger than what is left of it does not fit).
#[derive(Debug, Default)]
pub(crate) struct Headroom {
    low: AtomicBool,
    tokens_told: AtomicBool,
    reading: Mutex<Reading>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Reading {
    requests: Option<Kept>,
    tokens: Option<Kept>,
}

/// A window, with its reset as an instant.
#[derive(Clone, Copy, Debug)]
struct Kept {
    window: RateWindow,
    resets_at: Instant,
}

impl Reading {
    fn windows(&self) -> impl Iterator<Item = &Kept> {
        self.requests.iter().chain(self.tokens.iter())
    }
}

impl Headroom {
    /// Keeps what an answer read at `now` said, `min` being the fraction of a window below
    /// which the deployment is skipped. An answer that says nothing of a window keeps the
    /// last word on it.
    pub(crate) fn observe(&self, limits: &RateLimits, now: Instant, min: f64) {
        let kept = |window: Option<RateWindow>| {
            window.map(|window| Kept {
                window,
                resets_at: now + window.reset,
            })
        };
        let mut reading = self.lock();
        if let Some(requests) = kept(limits.requests) {
            reading.requests = Some(requests);
        }
        if let Some(tokens) = kept(limits.tokens) {
            reading.tokens = Some(tokens);
        }
        let low = reading
            .windows()
            .any(|kept| kept.window.below(min) && kept.resets_at > now);
        self.low.store(low, Ordering::Relaxed);
        let tokens_told = reading.tokens.is_some_and(|kept| kept.resets_at > now);
        self.tokens_told.store(tokens_told, Ordering::Relaxed);
    }

    /// Until when the deployment is to be skipped: the latest reset of its windows that are
    /// below `min`, or of its tokens window when less than `needs()` is left of it, not
    /// reset yet. `None` (two loads) when nothing was told that could skip it.
    pub(crate) fn skip_until(
        &self,
        now: Instant,
        min: f64,
        needs: &dyn Fn() -> u64,
    ) -> Option<Instant> {
        let low = self.low.load(Ordering::Relaxed);
        let tokens_told = self.tokens_told.load(Ordering::Relaxed);
        if !low && !tokens_told {
            return None;
        }
        let reading = self.lock();
        let below = reading
            .windows()
            .filter(|kept| kept.window.below(min) && kept.resets_at > now)
            .map(|kept| kept.resets_at)
            .max();
        if low && below.is_none() {
            self.low.store(false, Ordering::Relaxed);
        }
        let tokens = reading.tokens.filter(|kept| kept.resets_at > now);
        if tokens.is_none() {
            self.tokens_told.store(false, Ordering::Relaxed);
        }
        let short = tokens
            .filter(|kept| kept.window.remaining < needs())
            .map(|kept| kept.resets_at);
        below.max(short)
    }

    /// What operators see: each window as last told, its reset counted down to `now`.
    pub(crate) fn snapshot(&self, now: Instant) -> Option<RateLimitsSnapshot> {
        let reading = *self.lock();
        let shown = |kept: Option<Kept>| {
            kept.map(|kept| WindowSnapshot {
                limit: kept.window.limit,
                remaining: kept.window.remaining,
                reset_seconds: kept.resets_at.saturating_duration_since(now).as_secs_f64(),
            })
        };
        let snapshot = RateLimitsSnapshot {
            requests: shown(reading.requests),
            tokens: shown(reading.tokens),
        };
        (snapshot.requests.is_some() || snapshot.tokens.is_some()).then_some(snapshot)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reading> {
        self.reading.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A deployment's rate limits as its provider last told them (`/upstreams`).
///
/// ```
/// use llm_tower_health::{RateLimitsSnapshot, WindowSnapshot};
///
/// let snapshot = RateLimitsSnapshot {
///     requests: Some(WindowSnapshot { limit: Some(60), remaining: 3, reset_seconds: 1.5 }),
///     tokens: None,
/// };
/// assert_eq!(serde_json::to_value(snapshot).unwrap()["requests"]["remaining"], 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RateLimitsSnapshot {
    /// Requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<WindowSnapshot>,
    /// Tokens (for Anthropic, the one of tokens, input and output tokens with least left).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<WindowSnapshot>,
}

/// One window of [`RateLimitsSnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WindowSnapshot {
    /// The window's size, when told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What was left when last told.
    pub remaining: u64,
    /// Seconds until it is full again (0: it is).
    pub reset_seconds: f64,
}

/// The default `headroom.min`: a deployment with less than 5 % of a window left is skipped
/// until the window resets.
pub const DEFAULT_HEADROOM_MIN: f64 = 0.05;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Requests told: `remaining` of `limit`, full again in `reset` seconds.
    fn requests(limit: u64, remaining: u64, reset: u64) -> RateLimits {
        RateLimits {
            requests: Some(RateWindow {
                limit: Some(limit),
                remaining,
                reset: Duration::from_secs(reset),
            }),
            tokens: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_larger_than_what_is_left_of_the_tokens_window_does_not_fit() {
        let headroom = Headroom::default();
        let now = Instant::now();
        let tokens = RateLimits {
            requests: None,
            tokens: requests(100_000, 10_000, 20).requests,
        };
        headroom.observe(&tokens, now, 0.05);
        // 10 % left: above the share, so a small request fits and a large one waits.
        assert_eq!(headroom.skip_until(now, 0.05, &|| 500), None);
        assert_eq!(
            headroom.skip_until(now, 0.05, &|| 20_000),
            Some(now + Duration::from_secs(20))
        );
        // Once the window reset, anything fits again, and nothing is asked.
        let later = now + Duration::from_secs(20);
        assert_eq!(headroom.skip_until(later, 0.05, &|| 20_000), None);
        assert_eq!(
            headroom.skip_until(later, 0.05, &|| unreachable!("not asked")),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn skipped_while_low_until_the_window_resets() {
        let headroom = Headroom::default();
        let now = Instant::now();
        headroom.observe(&requests(100, 50, 10), now, 0.05);
        assert_eq!(headroom.skip_until(now, 0.05, &|| 0), None);
        headroom.observe(&requests(100, 4, 10), now, 0.05);
        assert_eq!(
            headroom.skip_until(now, 0.05, &|| 0),
            Some(now + Duration::from_secs(10))
        );
        // A later answer that speaks of tokens only keeps the word on requests.
        headroom.observe(
            &RateLimits {
                requests: None,
                tokens: requests(1000, 900, 1).requests,
            },
            now,
            0.05,
        );
        assert_eq!(
            headroom.skip_until(now, 0.05, &|| 0),
            Some(now + Duration::from_secs(10))
        );
        let later = now + Duration::from_secs(10);
        assert_eq!(headroom.skip_until(later, 0.05, &|| 0), None, "reset");
        assert!(!headroom.low.load(Ordering::Relaxed), "the flag is cleared");
        let shown = headroom.snapshot(now + Duration::from_secs(4)).unwrap();
        assert!((shown.requests.unwrap().reset_seconds - 6.0).abs() < 1e-9);
        assert_eq!(shown.tokens.unwrap().remaining, 900);
        // A threshold of 0 skips only a window with nothing left.
        headroom.observe(&requests(100, 1, 10), later, 0.0);
        assert_eq!(headroom.skip_until(later, 0.0, &|| 0), None);
        headroom.observe(&requests(100, 0, 10), later, 0.0);
        assert_eq!(
            headroom.skip_until(later, 0.0, &|| 0),
            Some(later + Duration::from_secs(10))
        );
    }
}
