//! [`Bucket`]: a token bucket per limit and client. It holds up to the per-minute limit and
//! fills at the limit per minute, so a client may spend its minute at once (exactly the limit)
//! and then at the limit's pace; what it took and did not use is given back.

use std::time::Duration;

use tokio::time::Instant;

/// One limit's bucket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    /// What may be taken now (below 0 after a request used more than it reserved).
    level: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `limit`.
    pub(crate) fn full(limit: u64, now: Instant) -> Self {
        Self {
            level: limit as f64,
            at: now,
        }
    }

    /// Fills the bucket for the time since it was last looked at.
    pub(crate) fn refill(&mut self, limit: u64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * per_second(limit)).min(limit as f64);
        self.at = now;
    }

    /// Whether `amount` may be taken (an amount above the limit, once the bucket is full).
    pub(crate) fn holds(&self, amount: f64, limit: u64) -> bool {
        self.level >= amount.min(limit as f64)
    }

    pub(crate) fn take(&mut self, amount: f64) {
        self.level -= amount;
    }

    pub(crate) fn give_back(&mut self, amount: f64, limit: u64) {
        self.level = (self.level + amount).min(limit as f64);
    }

    /// What may be taken now, whole.
    pub(crate) fn remaining(&self) -> u64 {
        self.level.max(0.0).floor() as u64
    }

    /// How long until `amount` may be taken.
    pub(crate) fn wait_for(&self, amount: f64, limit: u64) -> Duration {
        let missing = (amount.min(limit as f64) - self.level).max(0.0);
        // Overdrawn past measure (a request that reported absurd usage): a day, not a panic.
        Duration::try_from_secs_f64(missing / per_second(limit))
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT)
    }

    /// How long until the bucket is full again (OpenAI's `x-ratelimit-reset-*`).
    pub(crate) fn until_full(&self, limit: u64) -> Duration {
        self.wait_for(limit as f64, limit)
    }
}

/// The longest wait a bucket tells of.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// The fill rate (a limit of 0, which validation refuses, fills as a limit of 1).
fn per_second(limit: u64) -> f64 {
    limit.max(1) as f64 / 60.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_minute_at_once_then_at_its_pace() {
        let start = Instant::now();
        let mut bucket = Bucket::full(60, start);
        for _ in 0..60 {
            assert!(bucket.holds(1.0, 60));
            bucket.take(1.0);
        }
        assert!(!bucket.holds(1.0, 60));
        assert_eq!(bucket.wait_for(1.0, 60), Duration::from_secs(1));
        assert_eq!(bucket.until_full(60), Duration::from_secs(60));
        bucket.refill(60, start + Duration::from_millis(2500));
        assert_eq!(bucket.remaining(), 2);
        bucket.give_back(100.0, 60);
        assert_eq!(bucket.remaining(), 60, "never above the limit");
        bucket.take(90.0);
        assert!(!bucket.holds(1.0, 60), "overdrawn: the next waits");
        assert_eq!(bucket.remaining(), 0);
        assert_eq!(bucket.wait_for(1.0, 60), Duration::from_secs(31));
    }
}
