//! What one deployment has been doing lately, for operators (`/upstreams`, the gateway's
//! `/ui`): the last minute of requests by outcome, their latency and tokens, and the last
//! failure.
//!
//! The request path writes it with a few relaxed atomic adds on the deployment's own cell;
//! nothing is locked but on a failure. The minute is a ring of [`SLOTS`] slots of
//! [`SLOT`] each, tagged with the slot's number since the cell's first request: a slot
//! whose tag is old reads as empty, and the first request of a new slot clears it. Two
//! requests that cross into a new slot at once may lose one count: the ring is for
//! looking at, not for billing.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use llm_tower_core::Outcome;
use serde::Serialize;
use tokio::time::Instant;

/// How long one slot of the ring covers.
pub(crate) const SLOT: Duration = Duration::from_secs(2);
/// Slots in the ring: one minute.
pub(crate) const SLOTS: usize = 30;

/// How a request ended on this deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Answered on its first try here.
    Success,
    /// Answered after one or more retries here.
    Retried,
    /// Failed here in a way that counts against its health (the request fell back or
    /// failed).
    Failed,
}

#[derive(Default)]
struct Slot {
    /// Which slot number (since `epoch`) the counts are of, plus one (0: never used).
    tag: AtomicU64,
    success: AtomicU32,
    retried: AtomicU32,
    failed: AtomicU32,
    /// Microseconds to the first byte, summed over the answered requests.
    latency_us: AtomicU64,
    /// Tokens of the answers that ended in the slot, in and out.
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
}

/// The recent activity of one deployment.
#[derive(Default)]
pub(crate) struct Activity {
    /// The first request's time: slot numbers count from it.
    epoch: OnceLock<Instant>,
    slots: [Slot; SLOTS],
    last_failure: Mutex<Option<(Instant, Outcome)>>,
}

impl Activity {
    /// A request ended at `now`; `latency` is its time to the first byte when it was
    /// answered.
    pub(crate) fn record(&self, now: Instant, ended: Ended, latency: Option<Duration>) {
        let slot = self.slot(now);
        let counter = match ended {
            Ended::Success => &slot.success,
            Ended::Retried => &slot.retried,
            Ended::Failed => &slot.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(latency) = latency {
            slot.latency_us
                .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// An answer from here that ended at `now` used these tokens.
    pub(crate) fn record_tokens(&self, now: Instant, input: u64, output: u64) {
        let slot = self.slot(now);
        slot.input_tokens.fetch_add(input, Ordering::Relaxed);
        slot.output_tokens.fetch_add(output, Ordering::Relaxed);
    }

    /// A request failed here at `now` with `outcome` (counted as [`Ended::Failed`]).
    pub(crate) fn record_failure(&self, now: Instant, outcome: Outcome) {
        self.record(now, Ended::Failed, None);
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((now, outcome));
    }

    /// The slot for `now`, cleared first if it still holds an older one's counts.
    fn slot(&self, now: Instant) -> &Slot {
        let number = self.number(now);
        let slot = &self.slots[(number % SLOTS as u64) as usize];
        let tag = number + 1;
        let old = slot.tag.load(Ordering::Acquire);
        if old != tag
            && slot
                .tag
                .compare_exchange(old, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            for counter in [&slot.success, &slot.retried, &slot.failed] {
                counter.store(0, Ordering::Relaxed);
            }
            for counter in [&slot.latency_us, &slot.input_tokens, &slot.output_tokens] {
                counter.store(0, Ordering::Relaxed);
            }
        }
        slot
    }

    fn number(&self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_init(|| now);
        // Whole seconds: a `u128` division of milliseconds costs more than the rest of this.
        now.saturating_duration_since(epoch).as_secs() / SLOT.as_secs()
    }

    /// The last minute as of `now`, oldest slot first.
    pub(crate) fn snapshot(&self, now: Instant) -> ActivitySnapshot {
        let mut minute = LastMinute::default();
        let (mut answered, mut latency_us) = (0u64, 0u64);
        if self.epoch.get().is_some() {
            let current = self.number(now);
            for back in (0..SLOTS as u64).rev() {
                let slot = current
                    .checked_sub(back)
                    .map(|number| (number, &self.slots[(number % SLOTS as u64) as usize]))
                    .filter(|(number, slot)| slot.tag.load(Ordering::Acquire) == number + 1)
                    .map(|(_, slot)| slot);
                let counts = slot.map_or([0; 3], |slot| {
                    [&slot.success, &slot.retried, &slot.failed].map(|c| c.load(Ordering::Relaxed))
                });
                let tokens = slot.map_or([0; 2], |slot| {
                    [&slot.input_tokens, &slot.output_tokens].map(|c| c.load(Ordering::Relaxed))
                });
                if let Some(slot) = slot {
                    answered += u64::from(counts[0] + counts[1]);
                    latency_us += slot.latency_us.load(Ordering::Relaxed);
                }
                minute.success.push(counts[0]);
                minute.retried.push(counts[1]);
                minute.failed.push(counts[2]);
                minute.input_tokens.push(tokens[0]);
                minute.output_tokens.push(tokens[1]);
            }
        } else {
            minute = LastMinute::empty();
        }
        let last_failure = *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ActivitySnapshot {
            recent_latency_ms: (answered > 0).then(|| latency_us as f64 / answered as f64 / 1000.0),
            last_failure: last_failure.map(|(at, outcome)| LastFailure {
                seconds_ago: now.saturating_duration_since(at).as_secs_f64(),
                outcome: outcome.to_string(),
            }),
            last_minute: minute,
        }
    }
}

/// What [`Activity::snapshot`] reads, as the registry's snapshot shows it.
pub(crate) struct ActivitySnapshot {
    pub(crate) recent_latency_ms: Option<f64>,
    pub(crate) last_failure: Option<LastFailure>,
    pub(crate) last_minute: LastMinute,
}

/// The last failure of a deployment that counted against its health.
///
/// ```
/// use llm_tower_health::LastFailure;
///
/// let failure = LastFailure { seconds_ago: 3.0, outcome: "429".into() };
/// assert_eq!(serde_json::to_value(&failure).unwrap()["outcome"], "429");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastFailure {
    /// How long ago it ended.
    pub seconds_ago: f64,
    /// The status it got (`"503"`), or the kind of failure (`"upstream_connect_failed"`,
    /// `"upstream_timeout"`, `"stream_failed"`, ...).
    pub outcome: String,
}

/// A deployment's requests over the last minute, in [`SLOTS`](Self::SLOTS) slots of
/// [`SLOT`](Self::SLOT), oldest first: how many ended in each way.
///
/// ```
/// use llm_tower_health::LastMinute;
///
/// let minute = LastMinute::empty();
/// assert_eq!(minute.success.len(), LastMinute::SLOTS);
/// assert_eq!(minute.total(), 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LastMinute {
    /// Answered on the first try here.
    pub success: Vec<u32>,
    /// Answered after retries here.
    pub retried: Vec<u32>,
    /// Failed here (and fell back, or failed the request).
    pub failed: Vec<u32>,
    /// Input tokens of the answers that ended here (with usage accounting on).
    pub input_tokens: Vec<u64>,
    /// Output tokens of the answers that ended here.
    pub output_tokens: Vec<u64>,
}

impl LastMinute {
    /// How long one slot covers (2 s).
    pub const SLOT: Duration = SLOT;
    /// Slots in the minute (30).
    pub const SLOTS: usize = SLOTS;

    /// A minute with no requests.
    pub fn empty() -> Self {
        Self {
            success: vec![0; SLOTS],
            retried: vec![0; SLOTS],
            failed: vec![0; SLOTS],
            input_tokens: vec![0; SLOTS],
            output_tokens: vec![0; SLOTS],
        }
    }

    /// Requests in the minute.
    pub fn total(&self) -> u64 {
        [&self.success, &self.retried, &self.failed]
            .iter()
            .flat_map(|counts| counts.iter())
            .map(|&n| u64::from(n))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use llm_tower_core::ErrorKind;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_ring_keeps_one_minute_oldest_first() {
        let activity = Activity::default();
        let start = Instant::now();
        assert_eq!(activity.snapshot(start).last_minute, LastMinute::empty());
        activity.record(start, Ended::Success, Some(Duration::from_millis(100)));
        activity.record(start, Ended::Retried, Some(Duration::from_millis(300)));
        let later = start + SLOT * 3;
        activity.record_failure(later, Outcome::Status(http::StatusCode::TOO_MANY_REQUESTS));

        let snapshot = activity.snapshot(later);
        let minute = &snapshot.last_minute;
        assert_eq!(minute.success[SLOTS - 4], 1);
        assert_eq!(minute.retried[SLOTS - 4], 1);
        assert_eq!(minute.failed[SLOTS - 1], 1);
        assert_eq!(minute.total(), 3);
        assert_eq!(snapshot.recent_latency_ms, Some(200.0));
        let failure = snapshot.last_failure.unwrap();
        assert_eq!(
            (failure.seconds_ago, failure.outcome.as_str()),
            (0.0, "429")
        );

        // A minute on, the first slot has left the ring; a slot reused is cleared first.
        let minute_on = start + SLOT * SLOTS as u32;
        activity.record_failure(minute_on, Outcome::Error(ErrorKind::Timeout));
        let snapshot = activity.snapshot(minute_on);
        assert_eq!(
            snapshot.last_minute.total(),
            2,
            "{:?}",
            snapshot.last_minute
        );
        assert_eq!(snapshot.last_minute.failed[SLOTS - 1], 1);
        assert_eq!(
            snapshot.recent_latency_ms, None,
            "no answer within the minute"
        );
        assert_eq!(snapshot.last_failure.unwrap().outcome, "upstream_timeout");

        // Long quiet: nothing is left.
        let snapshot = activity.snapshot(minute_on + SLOT * 100);
        assert_eq!(snapshot.last_minute, LastMinute::empty());
    }
}
