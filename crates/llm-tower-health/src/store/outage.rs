//! Reconnecting to Redis: a jittered, doubling backoff, and one warning per outage.

use std::fmt;
use std::time::Duration;

const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Reconnecting: the backoff, and whether the outage was logged (once per outage).
#[derive(Default)]
pub(super) struct Outage {
    /// `Some` while disconnected: the pause before the next try.
    backoff: Option<Duration>,
}

impl Outage {
    /// The connection was lost, or could not be made, because of `lost`.
    pub(super) fn began(&mut self, url: &str, lost: &impl fmt::Display) {
        if self.backoff.is_some() {
            tracing::debug!(redis = %url, error = %lost, "health store still unreachable");
            return;
        }
        tracing::warn!(
            redis = %url,
            error = %lost,
            "health store unreachable; serving on this replica's own health and reconnecting \
             in the background"
        );
        self.backoff = Some(BACKOFF_FIRST);
    }

    /// The pause before the next try (jittered), doubling the one after.
    pub(super) fn pause(&mut self) -> Duration {
        let backoff = self.backoff.get_or_insert(BACKOFF_FIRST);
        let pause = backoff.mul_f64(0.8 + 0.4 * fastrand::f64());
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
        pause
    }

    /// Connected (again).
    pub(super) fn ended(&mut self, url: &str) {
        if self.backoff.take().is_some() {
            tracing::info!(redis = %url, "health store reachable again; sharing health");
        } else {
            tracing::info!(redis = %url, "sharing health through Redis");
        }
    }
}
