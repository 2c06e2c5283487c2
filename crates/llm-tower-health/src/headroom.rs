//! [`Headroom`]: a deployment's rate-limit windows as its provider's last answer told them
//! (`x-ratelimit-*`, `anthropic-ratelimit-*`), with when each is full again; and whether the
//! deployment is to be skipped, like a cooling one, until then — before a 429 has to happen.
//!
//! Every replica sending to a deployment spends the same provider's windows, so a reading
//! is worth telling the others (`health_store`): [`Headroom::observe`] says when — at once
//! when the deployment turns low or stops being low, otherwise at most every
//! [`TELL_EVERY`] — and [`Headroom::apply_remote`] takes each window of another replica's
//! reading unless this one's is as new.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

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

#[derive(Clone, Copy, Debug)]
struct Reading {
    /// The fraction of a window below which the deployment is skipped (`headroom.min`).
    min: f64,
    requests: Option<Kept>,
    tokens: Option<Kept>,
    /// When the other replicas last heard of it, and whether it was low then.
    told: Option<(Instant, bool)>,
    /// The stamp of the latest reading taken from another replica: the same reading read
    /// again (from Redis, after a reconnect or a reload) is not taken twice.
    heard: Option<SystemTime>,
}

impl Default for Reading {
    fn default() -> Self {
        Self {
            min: DEFAULT_HEADROOM_MIN,
            requests: None,
            tokens: None,
            told: None,
            heard: None,
        }
    }
}

/// How often, at most, a reading that does not change whether the deployment is low is
/// told to the other replicas: they steer on it, so a second stale is fine, and a busy
/// deployment's every answer is not a write to Redis.
pub(crate) const TELL_EVERY: Duration = Duration::from_secs(1);

/// A window, with when it was read and its reset, as instants.
#[derive(Clone, Copy, Debug)]
struct Kept {
    window: RateWindow,
    read_at: Instant,
    resets_at: Instant,
    /// Read from this replica's own answer (what it tells the others), not heard.
    here: bool,
}

impl Reading {
    fn windows(&self) -> impl Iterator<Item = &Kept> {
        self.requests.iter().chain(self.tokens.iter())
    }

    /// What an answer read at `at` told, over what was known: each window it tells
    /// replaces the one known, unless that was heard from another replica as late (an
    /// answer read here is read now, which is never earlier). Returns whether any did.
    fn merge(&mut self, limits: &RateLimits, at: Instant, here: bool) -> bool {
        let mut merged = false;
        for (kept, told) in [
            (&mut self.requests, limits.requests),
            (&mut self.tokens, limits.tokens),
        ] {
            let Some(window) = told else { continue };
            if !here && kept.is_some_and(|kept| kept.read_at >= at) {
                continue;
            }
            *kept = Some(Kept {
                window,
                read_at: at,
                resets_at: at + window.reset,
                here,
            });
            merged = true;
        }
        merged
    }
}

impl Headroom {
    /// Skips the deployment while less than `min` (a fraction) of a window is left.
    pub(crate) fn set_min(&self, min: f64, now: Instant) {
        let mut reading = self.lock();
        reading.min = min;
        self.set_flags(&reading, now);
    }

    /// Keeps what an answer read at `now` said. An answer that says nothing of a window
    /// keeps the last word on it. Returns whether the other replicas are to hear of it now.
    pub(crate) fn observe(&self, limits: &RateLimits, now: Instant) -> bool {
        let mut reading = self.lock();
        reading.merge(limits, now, true);
        let low = self.set_flags(&reading, now);
        let tell = reading.told.is_none_or(|(told_at, was_low)| {
            was_low != low || now.saturating_duration_since(told_at) >= TELL_EVERY
        });
        if tell {
            reading.told = Some((now, low));
        }
        tell
    }

    /// Another replica's reading, stamped `stamp` there and read at `at` here (its stamp
    /// on this clock, no later than now): each window it tells is taken unless this one's
    /// is as new. Returns whether any was.
    pub(crate) fn apply_remote(
        &self,
        limits: &RateLimits,
        stamp: SystemTime,
        at: Instant,
        now: Instant,
    ) -> bool {
        let mut reading = self.lock();
        if reading.heard.is_some_and(|heard| heard >= stamp) {
            return false;
        }
        reading.heard = Some(stamp);
        if !reading.merge(limits, at, false) {
            return false;
        }
        let low = self.set_flags(&reading, now);
        // Heard, so not to be told back.
        reading.told = Some((now, low));
        true
    }

    /// What this replica's newest answer told, as read then (each window's reset counted
    /// from then), while a window of it has not reset: what the others are told. `None`
    /// when there is none, or when the newest word is another replica's.
    pub(crate) fn reading(&self, now: Instant) -> Option<(Instant, RateLimits)> {
        let reading = *self.lock();
        let newest = reading.windows().map(|kept| kept.read_at).max()?;
        let told = |kept: Option<Kept>| {
            kept.filter(|kept| kept.here && kept.read_at == newest)
                .map(|kept| RateWindow {
                    reset: kept.resets_at.saturating_duration_since(newest),
                    ..kept.window
                })
        };
        let limits = RateLimits {
            requests: told(reading.requests),
            tokens: told(reading.tokens),
        };
        let in_force = [limits.requests, limits.tokens]
            .into_iter()
            .flatten()
            .any(|window| newest + window.reset > now);
        in_force.then_some((newest, limits))
    }

    /// Sets the flags admissions read from `reading` at `now`; returns whether it is low.
    fn set_flags(&self, reading: &Reading, now: Instant) -> bool {
        let low = reading
            .windows()
            .any(|kept| kept.window.below(reading.min) && kept.resets_at > now);
        self.low.store(low, Ordering::Relaxed);
        let tokens_told = reading.tokens.is_some_and(|kept| kept.resets_at > now);
        self.tokens_told.store(tokens_told, Ordering::Relaxed);
        low
    }

    /// Until when the deployment is to be skipped: the latest reset of its windows that are
    /// below the threshold, or of its tokens window when less than `needs()` is left of it,
    /// not reset yet. `None` (two loads) when nothing was told that could skip it.
    pub(crate) fn skip_until(&self, now: Instant, needs: &dyn Fn() -> u64) -> Option<Instant> {
        let low = self.low.load(Ordering::Relaxed);
        let tokens_told = self.tokens_told.load(Ordering::Relaxed);
        if !low && !tokens_told {
            return None;
        }
        let reading = self.lock();
        let below = reading
            .windows()
            .filter(|kept| kept.window.below(reading.min) && kept.resets_at > now)
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
    use std::time::{Duration, SystemTime};

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
        headroom.observe(&tokens, now);
        // 10 % left: above the share, so a small request fits and a large one waits.
        assert_eq!(headroom.skip_until(now, &|| 500), None);
        assert_eq!(
            headroom.skip_until(now, &|| 20_000),
            Some(now + Duration::from_secs(20))
        );
        // Once the window reset, anything fits again, and nothing is asked.
        let later = now + Duration::from_secs(20);
        assert_eq!(headroom.skip_until(later, &|| 20_000), None);
        assert_eq!(
            headroom.skip_until(later, &|| unreachable!("not asked")),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn skipped_while_low_until_the_window_resets() {
        let headroom = Headroom::default();
        let now = Instant::now();
        headroom.observe(&requests(100, 50, 10), now);
        assert_eq!(headroom.skip_until(now, &|| 0), None);
        headroom.observe(&requests(100, 4, 10), now);
        assert_eq!(
            headroom.skip_until(now, &|| 0),
            Some(now + Duration::from_secs(10))
        );
        // A later answer that speaks of tokens only keeps the word on requests.
        headroom.observe(
            &RateLimits {
                requests: None,
                tokens: requests(1000, 900, 1).requests,
            },
            now,
        );
        assert_eq!(
            headroom.skip_until(now, &|| 0),
            Some(now + Duration::from_secs(10))
        );
        let later = now + Duration::from_secs(10);
        assert_eq!(headroom.skip_until(later, &|| 0), None, "reset");
        assert!(!headroom.low.load(Ordering::Relaxed), "the flag is cleared");
        let shown = headroom.snapshot(now + Duration::from_secs(4)).unwrap();
        assert!((shown.requests.unwrap().reset_seconds - 6.0).abs() < 1e-9);
        assert_eq!(shown.tokens.unwrap().remaining, 900);
        // A threshold of 0 skips only a window with nothing left.
        headroom.set_min(0.0, later);
        headroom.observe(&requests(100, 1, 10), later);
        assert_eq!(headroom.skip_until(later, &|| 0), None);
        headroom.observe(&requests(100, 0, 10), later);
        assert_eq!(
            headroom.skip_until(later, &|| 0),
            Some(later + Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn others_hear_at_once_when_it_turns_low_or_back_and_otherwise_every_second() {
        let headroom = Headroom::default();
        let now = Instant::now();
        let at = |ms| now + Duration::from_millis(ms);
        assert!(headroom.observe(&requests(100, 50, 10), now), "the first");
        assert!(!headroom.observe(&requests(100, 40, 10), at(500)));
        assert!(headroom.observe(&requests(100, 4, 10), at(600)), "low");
        assert!(!headroom.observe(&requests(100, 3, 10), at(700)));
        assert!(headroom.observe(&requests(100, 90, 10), at(800)), "not low");
        assert!(!headroom.observe(&requests(100, 80, 10), at(1_700)));
        assert!(
            headroom.observe(&requests(100, 70, 10), at(1_800)),
            "a second on"
        );
        // What is told: the newest reading, each reset counted from when it was read.
        let (read_at, limits) = headroom.reading(at(1_900)).unwrap();
        assert_eq!(read_at, at(1_800));
        assert_eq!(limits, requests(100, 70, 10));
        assert_eq!(headroom.reading(at(11_800)), None, "reset");
    }

    #[tokio::test(start_paused = true)]
    async fn another_replicas_reading_is_taken_unless_this_ones_is_newer() {
        let headroom = Headroom::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        headroom.observe(&requests(100, 50, 10), later);
        let wall = SystemTime::now();
        let older = headroom.apply_remote(&requests(100, 0, 10), wall, now, later);
        assert!(!older, "older");
        assert_eq!(headroom.skip_until(later, &|| 0), None);
        let newer = later + Duration::from_millis(1);
        let stamp = wall + Duration::from_secs(1);
        assert!(headroom.apply_remote(&requests(100, 0, 10), stamp, newer, newer));
        // Skipped until the reset the other replica read, counted from when it read it.
        assert_eq!(
            headroom.skip_until(newer, &|| 0),
            Some(newer + Duration::from_secs(10))
        );
        // Heard, not to be told back: the next local answer a moment later is not told,
        // unless it changes whether the deployment is low.
        assert!(!headroom.observe(&requests(100, 0, 10), newer));
        assert!(headroom.observe(&requests(100, 99, 10), newer));
        // The same reading read again (a reconnect reads the key back), its time clamped
        // to a later now, is not taken again over the newer local one.
        let again = newer + Duration::from_secs(1);
        assert!(!headroom.apply_remote(&requests(100, 0, 10), stamp, again, again));
        assert_eq!(headroom.skip_until(again, &|| 0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn each_window_keeps_its_newest_word_and_only_this_replicas_newest_is_told() {
        let headroom = Headroom::default();
        let now = Instant::now();
        let at = |ms| now + Duration::from_millis(ms);
        let tokens = |remaining| RateLimits {
            requests: None,
            tokens: requests(1000, remaining, 10).requests,
        };
        let both = |r: u64, t: u64| RateLimits {
            requests: requests(100, r, 10).requests,
            tokens: tokens(t).tokens,
        };
        headroom.observe(&requests(100, 50, 10), at(0));
        // Another replica read both windows later: both are taken.
        let wall = SystemTime::now();
        assert!(headroom.apply_remote(&both(40, 900), wall, at(10), at(10)));
        // This replica reads requests again, later still; a third replica's word on both,
        // read in between, changes only the window it is newer on: tokens.
        headroom.observe(&requests(100, 30, 10), at(20));
        let between = wall + Duration::from_millis(5);
        assert!(headroom.apply_remote(&both(99, 999), between, at(15), at(21)));
        let shown = headroom.snapshot(at(21)).unwrap();
        assert_eq!(shown.requests.unwrap().remaining, 30);
        assert_eq!(shown.tokens.unwrap().remaining, 999);
        // Told: only the window this replica's newest answer read.
        let (read_at, limits) = headroom.reading(at(21)).unwrap();
        assert_eq!((read_at, limits), (at(20), requests(100, 30, 10)));
        // Once the newest word is heard, not read here, nothing is told.
        let later = wall + Duration::from_secs(1);
        assert!(headroom.apply_remote(&both(20, 800), later, at(30), at(30)));
        assert_eq!(headroom.reading(at(30)), None);
    }
}
