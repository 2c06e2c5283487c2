//! What the health checker does to a deployment's state: it owns the half-open probe while
//! it runs, and its verdicts resolve the probe like a request's would, except that a pass
//! restores the deployment on probation instead of forgetting its ejections.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{EndpointHealth, HealthPolicy, ProbeGuard, resolve};

impl EndpointHealth {
    /// A health checker now probes this deployment (until [`checker_stopped`](Self::checker_stopped)):
    /// requests no longer get its half-open probe.
    pub(crate) fn checker_started(&self) {
        self.checkers.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn checker_stopped(&self) {
        self.checkers.fetch_sub(1, Ordering::AcqRel);
    }

    /// The probe slot for a check, when the probe is due (the cooldown is over, or
    /// `max_probe_interval` passed) and no probe is out.
    pub(crate) fn admit_check(self: &Arc<Self>, now: Instant) -> Option<ProbeGuard> {
        if self.is_healthy() {
            return None;
        }
        let mut state = self.lock();
        let due = state.probe_due(self.max_probe_interval())?;
        (now >= due && state.probe.is_none()).then(|| self.take_probe(&mut state, now))
    }

    /// Whether a check restored it, and since then no request has succeeded and nothing
    /// (a failure, another replica's ejection, a failing periodic check) has put it out.
    pub(crate) fn is_on_probation(&self) -> bool {
        !self.is_healthy() && self.lock().probation
    }

    /// Whether someone holds the probe slot.
    pub(crate) fn probe_in_flight(&self) -> bool {
        self.lock().probe.is_some()
    }

    /// A check passed. As the probe (still the one in flight, and the deadline not pushed
    /// out since it was taken), it restores the deployment on probation: requests
    /// go to it again, single tries until one succeeds, and a failure ejects it again with
    /// the cooldown doubled. Otherwise (a periodic check, or a probe overtaken by events) it
    /// only clears the failed checks in a row. Returns whether it restored the deployment.
    pub(crate) fn check_passed(&self, probe: Option<ProbeGuard>, now: Instant) -> bool {
        let mut state = self.lock();
        let was_probe = resolve(&mut state, probe);
        self.check_failures.store(0, Ordering::Relaxed);
        // An early probe (within the cooldown, after `max_probe_interval`) restores too,
        // unless newer word came while it was out: a `Retry-After`, another replica's
        // ejection, a late failure that pushed the deadline.
        let overtaken = state.until.is_some_and(|until| until > now)
            && state
                .since
                .is_some_and(|since| Some(since) > state.probed_at);
        if !was_probe || overtaken {
            return false;
        }
        state.until = None;
        state.retry_after = false;
        state.remote = false;
        state.since = None;
        state.restored_at = Some(now);
        state.probation = true;
        state.round = state.ejections;
        self.consecutive_failures.store(0, Ordering::Relaxed);
        // How fast it was before its outage says nothing about now.
        self.latency.reset();
        true
    }

    /// A check failed: as the probe, the deployment is ejected again with the cooldown
    /// doubled (at least `hint`); as a periodic check, it counts towards the threshold like
    /// a failed request, in a count of its own. Returns the cooldown when it ejected.
    pub(crate) fn check_failed(
        &self,
        probe: Option<ProbeGuard>,
        now: Instant,
        interval: Duration,
        hint: Option<Duration>,
        policy: HealthPolicy,
    ) -> Option<Duration> {
        let mut state = self.lock();
        let was_probe = resolve(&mut state, probe);
        let failures = self.check_failures.fetch_add(1, Ordering::Relaxed) + 1;
        self.fail(&mut state, now, interval, hint, was_probe, failures, policy)
    }
}
