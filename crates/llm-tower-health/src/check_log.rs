//! What the health checker last found about a deployment, for operators.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use llm_tower_core::Outcome;
use serde::Serialize;
use tokio::time::Instant;

/// The checks of one deployment's endpoint: counters, and the last one. Written by the
/// checker only, read by snapshots: never on the request path.
#[derive(Debug, Default)]
pub(crate) struct CheckLog {
    passed: AtomicU64,
    failed: AtomicU64,
    last: Mutex<Option<Last>>,
}

#[derive(Clone, Copy, Debug)]
struct Last {
    at: Instant,
    passed: bool,
    outcome: Outcome,
    latency: Duration,
}

impl CheckLog {
    /// A check that ended at `at` after `latency`.
    pub(crate) fn record(&self, at: Instant, passed: bool, outcome: Outcome, latency: Duration) {
        let counter = if passed { &self.passed } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Last {
            at,
            passed,
            outcome,
            latency,
        });
    }

    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.passed.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn last(&self, now: Instant) -> Option<CheckSnapshot> {
        let last = (*self.last.lock().unwrap_or_else(PoisonError::into_inner))?;
        Some(CheckSnapshot {
            seconds_ago: now.saturating_duration_since(last.at).as_secs_f64(),
            passed: last.passed,
            outcome: last.outcome.to_string(),
            latency_ms: last.latency.as_secs_f64() * 1000.0,
        })
    }
}

/// The last active health check of a deployment's endpoint (see
/// [`HealthCheck`](llm_tower_core::HealthCheck)), as [`EndpointSnapshot::last_check`](crate::EndpointSnapshot::last_check) shows it.
///
/// ```
/// use llm_tower_health::CheckSnapshot;
///
/// let check = CheckSnapshot { seconds_ago: 1.5, passed: false, outcome: "503".into(), latency_ms: 12.0 };
/// let json = serde_json::to_value(&check).unwrap();
/// assert_eq!(json["outcome"], "503");
/// assert_eq!(json["passed"], false);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckSnapshot {
    /// How long ago it ended.
    pub seconds_ago: f64,
    /// Whether its status was the expected one.
    pub passed: bool,
    /// The status it got (`"200"`), or the kind of failure (`"upstream_connect_failed"`,
    /// `"upstream_timeout"`, ...).
    pub outcome: String,
    /// How long it took.
    pub latency_ms: f64,
}
