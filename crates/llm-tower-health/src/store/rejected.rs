//! Messages and kept values that were not taken: each is counted, and a warning says so at
//! most once a minute, so that a writer flooding the channel cannot flood the log too.

use std::time::Duration;

use tokio::time::Instant;

use super::wire::Rejected;

/// The least time between two warnings.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Where a rejected text came from.
#[derive(Clone, Copy, Debug)]
pub(super) enum Source {
    Channel,
    Key,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Channel => "the channel",
            Self::Key => "a key",
        }
    }
}

/// The warnings' pace.
#[derive(Debug, Default)]
pub(super) struct Warnings {
    last: Option<Instant>,
    /// Rejected since the last warning, which the next one reports.
    unreported: u64,
}

impl Warnings {
    /// One more was rejected: `why`, `len` bytes long, from `source`. Only the length is
    /// logged, never the content, which an attacker chose.
    pub(super) fn rejected(&mut self, why: Rejected, len: usize, source: Source) {
        self.unreported += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            tracing::debug!(reason = %why, bytes = len, from = source.as_str(), "health store rejected a value");
            return;
        }
        tracing::warn!(
            rejected = self.unreported,
            reason = %why,
            bytes = len,
            from = source.as_str(),
            "health store ignored a value that is not a health event it can trust (the \
             latest is described here; at most one warning a minute); if this goes on, \
             something other than this fleet's replicas writes to Redis"
        );
        self.last = Some(now);
        self.unreported = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_warning_at_most_once_a_minute_counts_what_it_did_not_report() {
        let mut warnings = Warnings::default();
        warnings.rejected(Rejected::Unsigned, 10, Source::Channel);
        assert_eq!(warnings.unreported, 0, "the first is told at once");
        for _ in 0..1000 {
            warnings.rejected(Rejected::BadlySigned, 10, Source::Channel);
        }
        assert_eq!(warnings.unreported, 1000);
        tokio::time::advance(WARN_EVERY).await;
        warnings.rejected(Rejected::TooLarge, 70_000, Source::Key);
        assert_eq!(warnings.unreported, 0);
    }
}
