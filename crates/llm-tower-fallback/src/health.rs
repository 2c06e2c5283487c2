//! Per-endpoint health: the state machine of one endpoint (healthy → ejected → half-open →
//! healthy), its probe slot and in-flight count. The file is long because its property test
//! of the state machine sits beside it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use llm_tower_core::EndpointId;
use tokio::time::Instant;

use crate::check::CheckLog;
use crate::latency::PeakEwma;
use crate::registry::{EndpointSnapshot, Status};

/// Health settings of a balancer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HealthPolicy {
    pub(crate) unhealthy_threshold: u32,
    pub(crate) max_cooldown: Duration,
}

#[derive(Default)]
struct State {
    /// Ejections since the last success.
    ejections: u32,
    /// `Some` while ejected or half-open: when the cooldown ends.
    until: Option<Instant>,
    /// Token of the probe in flight.
    probe: Option<u64>,
    next_token: u64,
}

/// One endpoint's health. Lock-free reads on the healthy path; a small mutex for transitions.
#[derive(Default)]
pub(crate) struct EndpointHealth {
    /// `true` while `state.until` is `Some`; read without locking on the hot path.
    unhealthy: AtomicBool,
    consecutive_failures: AtomicU32,
    total_ejections: AtomicU64,
    in_flight: AtomicUsize,
    /// Running health checkers that probe this deployment: while there is one, the
    /// half-open probe is theirs and no request is one.
    checkers: AtomicU32,
    state: Mutex<State>,
    /// For `least_latency`.
    pub(crate) latency: PeakEwma,
    /// What the health checker found.
    pub(crate) checks: CheckLog,
}

/// Whether a request may go to an endpoint.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Healthy.
    Open,
    /// The request is the half-open probe.
    Probe(ProbeGuard),
    /// Cooling down until then (or a probe is already in flight and the cooldown has ended).
    Closed(Instant),
}

impl EndpointHealth {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Acquire)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Decides whether a request may go here now; takes the probe slot when half-open and
    /// no health checker probes this deployment.
    pub(crate) fn admit(self: &Arc<Self>, now: Instant) -> Admission {
        if self.is_healthy() {
            return Admission::Open;
        }
        let mut state = self.lock();
        match state.until {
            None => Admission::Open,
            Some(until)
                if now < until
                    || state.probe.is_some()
                    || self.checkers.load(Ordering::Acquire) > 0 =>
            {
                Admission::Closed(until)
            }
            Some(_) => Admission::Probe(self.take_probe(&mut state)),
        }
    }

    /// The probe slot for a health check, when the cooldown is over and no probe is out.
    pub(crate) fn admit_check(self: &Arc<Self>, now: Instant) -> Option<ProbeGuard> {
        if self.is_healthy() {
            return None;
        }
        let mut state = self.lock();
        match state.until {
            Some(until) if now >= until && state.probe.is_none() => {
                Some(self.take_probe(&mut state))
            }
            _ => None,
        }
    }

    fn take_probe(self: &Arc<Self>, state: &mut State) -> ProbeGuard {
        state.next_token += 1;
        let token = state.next_token;
        state.probe = Some(token);
        ProbeGuard {
            cell: self.clone(),
            token,
        }
    }

    /// When the cooldown ends, while ejected (or half-open).
    pub(crate) fn cooldown_end(&self) -> Option<Instant> {
        if self.is_healthy() {
            return None;
        }
        self.lock().until
    }

    /// A health checker now probes this deployment (until [`checker_stopped`](Self::checker_stopped)).
    pub(crate) fn checker_started(&self) {
        self.checkers.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn checker_stopped(&self) {
        self.checkers.fetch_sub(1, Ordering::AcqRel);
    }

    /// Counts an attempt in flight until the guard drops.
    pub(crate) fn start_attempt(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// A request succeeded here: everything resets.
    pub(crate) fn record_success(&self, probe: Option<ProbeGuard>) {
        // Resetting the state below clears the probe slot; a healthy cell has none to clear.
        if let Some(probe) = probe {
            probe.resolved();
        }
        if self.is_healthy() && self.consecutive_failures.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut state = self.lock();
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if state.until.is_some() {
            // Restored: how fast it was before its outage says nothing about now.
            self.latency.reset();
        }
        *state = State {
            next_token: state.next_token,
            ..State::default()
        };
        self.unhealthy.store(false, Ordering::Release);
    }

    /// A periodic health check passed: consecutive failures reset, but only while the
    /// deployment is still healthy (a request may have ejected it while the check ran).
    pub(crate) fn record_check_passed(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) == 0 {
            return;
        }
        let state = self.lock();
        if state.until.is_none() {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A request exhausted its retries here with a health-relevant failure. Returns the
    /// cooldown when this failure ejected the endpoint or (below the threshold) when the
    /// upstream's `Retry-After` hint cooled it down.
    pub(crate) fn record_failure(
        &self,
        now: Instant,
        interval: Duration,
        hint: Option<Duration>,
        probe: Option<ProbeGuard>,
        policy: HealthPolicy,
    ) -> Option<Duration> {
        let mut state = self.lock();
        let was_probe = probe.is_some_and(|p| {
            let current = state.probe == Some(p.token);
            if current {
                state.probe = None;
            }
            p.resolved();
            current
        });
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let hint = hint.map(|h| h.min(policy.max_cooldown));
        if state.until.is_some() && !was_probe {
            // A late failure of a request sent before the ejection, or a forced attempt:
            // only an explicit Retry-After may push the deadline out.
            if let Some(hint) = hint {
                extend(&mut state.until, now + hint);
            }
            return None;
        }
        if !was_probe && failures < policy.unhealthy_threshold {
            // Below the threshold, but the upstream asked for a pause: honour it, without
            // counting an ejection.
            let hint = hint.filter(|h| !h.is_zero())?;
            extend(&mut state.until, now + hint);
            self.unhealthy.store(true, Ordering::Release);
            return Some(hint);
        }
        state.ejections = state.ejections.saturating_add(1);
        let doubling = 2u32.saturating_pow(state.ejections - 1);
        let cooldown = interval
            .saturating_mul(doubling)
            .min(policy.max_cooldown)
            .max(hint.unwrap_or(Duration::ZERO));
        extend(&mut state.until, now + cooldown);
        self.unhealthy.store(true, Ordering::Release);
        self.total_ejections.fetch_add(1, Ordering::Relaxed);
        Some(cooldown)
    }

    fn release_probe(&self, token: u64) {
        let mut state = self.lock();
        if state.probe == Some(token) {
            state.probe = None;
        }
    }

    pub(crate) fn snapshot(&self, id: EndpointId, now: Instant) -> EndpointSnapshot {
        let state = self.lock();
        let (status, remaining) = match state.until {
            None => (Status::Healthy, Duration::ZERO),
            Some(until) if until > now => (Status::Ejected, until - now),
            Some(_) => (Status::HalfOpen, Duration::ZERO),
        };
        let probe_in_flight = state.probe.is_some();
        let ejections = state.ejections;
        drop(state);
        let (checks_passed, checks_failed) = self.checks.counts();
        EndpointSnapshot {
            id,
            status,
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            ejections,
            total_ejections: self.total_ejections.load(Ordering::Relaxed),
            seconds_until_return: remaining.as_secs_f64(),
            probe_in_flight,
            in_flight: self.in_flight(),
            latency_ms: self.latency.last().map(|l| l.as_secs_f64() * 1000.0),
            last_check: self.checks.last(now),
            checks_passed,
            checks_failed,
        }
    }
}

/// A later deadline never shortens an existing one.
fn extend(until: &mut Option<Instant>, deadline: Instant) {
    *until = Some(until.map_or(deadline, |u| u.max(deadline)));
}

/// The half-open probe slot. Dropping it unresolved (the request was cancelled, or ended
/// with an outcome that says nothing about health) frees the slot for the next request.
pub(crate) struct ProbeGuard {
    cell: Arc<EndpointHealth>,
    token: u64,
}

impl ProbeGuard {
    /// The cell's state has been updated by the caller: nothing to release.
    fn resolved(self) {
        std::mem::forget(self);
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        self.cell.release_probe(self.token);
    }
}

impl fmt::Debug for ProbeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeGuard")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Counts an attempt in flight while alive.
pub(crate) struct InFlight(Arc<EndpointHealth>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // paused time makes these exact
mod tests {
    use super::*;

    const POLICY: HealthPolicy = HealthPolicy {
        unhealthy_threshold: 1,
        max_cooldown: Duration::from_secs(60),
    };
    const FIVE: Duration = Duration::from_secs(5);

    fn probe(cell: &Arc<EndpointHealth>, now: Instant) -> ProbeGuard {
        match cell.admit(now) {
            Admission::Probe(p) => p,
            other => panic!("expected a probe, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn eject_probe_and_recover() {
        let cell = Arc::new(EndpointHealth::default());
        let t0 = Instant::now();
        assert!(matches!(cell.admit(t0), Admission::Open));
        assert_eq!(
            cell.record_failure(t0, FIVE, None, None, POLICY),
            Some(FIVE)
        );
        assert!(
            matches!(cell.admit(t0 + Duration::from_secs(4)), Admission::Closed(u) if u == t0 + FIVE)
        );
        let later = t0 + FIVE;
        let p = probe(&cell, later);
        // Only one probe.
        assert!(matches!(cell.admit(later), Admission::Closed(_)));
        cell.record_success(Some(p));
        assert!(cell.is_healthy());
        assert!(matches!(cell.admit(later), Admission::Open));
    }

    #[tokio::test(start_paused = true)]
    async fn probe_failure_doubles_and_caps() {
        let cell = Arc::new(EndpointHealth::default());
        let policy = HealthPolicy {
            max_cooldown: Duration::from_secs(18),
            ..POLICY
        };
        let mut now = Instant::now();
        assert_eq!(
            cell.record_failure(now, FIVE, None, None, policy),
            Some(FIVE)
        );
        for expected in [10, 18, 18] {
            now += Duration::from_secs(60);
            let p = probe(&cell, now);
            let cooldown = cell.record_failure(now, FIVE, None, Some(p), policy);
            assert_eq!(cooldown, Some(Duration::from_secs(expected)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_probe_frees_the_slot() {
        let cell = Arc::new(EndpointHealth::default());
        let now = Instant::now();
        cell.record_failure(now, FIVE, None, None, POLICY);
        let p = probe(&cell, now + FIVE);
        drop(p);
        let _again = probe(&cell, now + FIVE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_never_shortens_an_existing_one() {
        let cell = Arc::new(EndpointHealth::default());
        let now = Instant::now();
        let ten = Duration::from_secs(10);
        assert_eq!(
            cell.record_failure(now, FIVE, Some(ten), None, POLICY),
            Some(ten)
        );
        let until = |cell: &EndpointHealth| {
            cell.snapshot(EndpointId::from("x"), now)
                .seconds_until_return
        };
        // A late failure with a shorter Retry-After leaves the deadline alone.
        assert_eq!(
            cell.record_failure(now, FIVE, Some(Duration::from_secs(2)), None, POLICY),
            None
        );
        assert_eq!(until(&cell), 10.0);
        // A longer one pushes it out, without counting as another ejection.
        cell.record_failure(now, FIVE, Some(Duration::from_secs(20)), None, POLICY);
        assert_eq!(until(&cell), 20.0);
        assert_eq!(cell.snapshot(EndpointId::from("x"), now).ejections, 1);
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Advance(u64),
            Admit,
            ProbeSucceeds,
            ProbeFails(Option<u64>),
            ProbeCancelled,
            LateFailure(Option<u64>),
            LateSuccess,
        }

        fn op() -> impl Strategy<Value = Op> {
            let hint = proptest::option::of(0u64..120_000);
            prop_oneof![
                (0u64..20_000).prop_map(Op::Advance),
                Just(Op::Admit),
                Just(Op::ProbeSucceeds),
                hint.clone().prop_map(Op::ProbeFails),
                Just(Op::ProbeCancelled),
                hint.prop_map(Op::LateFailure),
                Just(Op::LateSuccess),
            ]
        }

        proptest! {
            /// Whatever happens, at most one probe is out, a deadline only moves later while
            /// the endpoint stays unhealthy, cooldowns stay within [interval, max_cooldown],
            /// and a success makes the endpoint healthy.
            #[test]
            fn health_state_machine_invariants(
                ops in proptest::collection::vec(op(), 1..200),
                threshold in 1u32..4,
                interval_ms in 1u64..10_000,
            ) {
                let policy = HealthPolicy { unhealthy_threshold: threshold, max_cooldown: Duration::from_secs(60) };
                let interval = Duration::from_millis(interval_ms);
                let cell = Arc::new(EndpointHealth::default());
                let start = Instant::now();
                let mut now = start;
                let mut probe: Option<ProbeGuard> = None;
                let mut last_until: Option<Instant> = None;
                for op in ops {
                    match op {
                        Op::Advance(ms) => now += Duration::from_millis(ms),
                        Op::Admit => match cell.admit(now) {
                            Admission::Open => prop_assert!(cell.is_healthy()),
                            Admission::Probe(guard) => {
                                prop_assert!(probe.is_none(), "a second probe while one is out");
                                probe = Some(guard);
                            }
                            Admission::Closed(until) => {
                                prop_assert!(until > now || probe.is_some(), "closed without reason");
                            }
                        },
                        Op::ProbeSucceeds => {
                            if let Some(guard) = probe.take() {
                                cell.record_success(Some(guard));
                                prop_assert!(cell.is_healthy());
                            }
                        }
                        Op::ProbeFails(hint) => {
                            if let Some(guard) = probe.take() {
                                let cooldown = cell.record_failure(now, interval, hint.map(Duration::from_millis), Some(guard), policy);
                                let cooldown = cooldown.expect("a failed probe always ejects again");
                                prop_assert!(cooldown >= interval.min(policy.max_cooldown));
                                prop_assert!(cooldown <= policy.max_cooldown);
                            }
                        }
                        Op::ProbeCancelled => drop(probe.take()),
                        Op::LateFailure(hint) => {
                            let hint = hint.map(Duration::from_millis);
                            if let Some(cooldown) = cell.record_failure(now, interval, hint, None, policy) {
                                let from_hint = hint.is_some_and(|h| cooldown == h.min(policy.max_cooldown));
                                prop_assert!(from_hint || cooldown >= interval.min(policy.max_cooldown));
                                prop_assert!(cooldown <= policy.max_cooldown);
                            }
                        }
                        Op::LateSuccess => {
                            cell.record_success(None);
                            prop_assert!(cell.is_healthy());
                            // A stale success clears the probe slot with everything else.
                            if let Some(guard) = probe.take() {
                                guard.resolved();
                            }
                        }
                    }
                    let state = cell.lock();
                    prop_assert_eq!(state.until.is_some(), !cell.is_healthy());
                    prop_assert_eq!(state.probe.is_some(), probe.is_some());
                    match (last_until, state.until) {
                        (Some(before), Some(after)) => prop_assert!(after >= before, "deadline moved earlier"),
                        (_, until) => last_until = until,
                    }
                    if let Some(until) = state.until {
                        last_until = Some(until);
                        prop_assert!(until <= now + policy.max_cooldown);
                    }
                }
            }
        }
    }
}
