//! Per-deployment health: the state machine of one deployment (healthy → ejected →
//! half-open → healthy), its probe slot and in-flight count. What the health checker does to
//! it is in `checks.rs`; the property test of the whole is in `tests.rs`.
//!
//! Over 500 lines on purpose: every transition takes the one `State` under the one lock, and
//! reads as a step of one machine; about a fifth of the file is the runnable examples of the
//! crate's public `HealthPolicy`, `Admission` and `ProbeGuard`.

mod checks;
mod remote;

pub(crate) use remote::Cooldown;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use llm_tower_core::{EndpointId, ModelName};
use tokio::time::Instant;

use crate::activity::Activity;
use crate::check_log::CheckLog;
use crate::headroom::Headroom;
use crate::latency::PeakEwma;
use crate::snapshot::{EndpointSnapshot, Status};

/// How failures are judged: how many in a row eject a deployment, and the longest cooldown
/// its doubling (or an upstream's `Retry-After`) may reach. A balancer's settings give it
/// (`llm_tower_fallback::FallbackSettings` owns the defaults).
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::Endpoint;
/// use llm_tower_health::{DeploymentHealth, HealthPolicy, HealthRegistry};
///
/// let policy = HealthPolicy { unhealthy_threshold: 3, max_cooldown: Duration::from_secs(300), max_probe_interval: Duration::from_secs(10) };
/// let registry = HealthRegistry::new();
/// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
/// let _a = DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy);
/// assert_eq!(registry.max_cooldown(), Duration::from_secs(300));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Failed requests in a row (each after its retries) that eject a deployment.
    pub unhealthy_threshold: u32,
    /// The longest cooldown.
    pub max_cooldown: Duration,
    /// The longest wait between two probes of an ejected deployment, whatever its escalated
    /// cooldown (an upstream's `Retry-After` excepted): a recovered deployment is back
    /// within it, while failed probes still keep user traffic away for the cooldown.
    pub max_probe_interval: Duration,
}

#[derive(Default)]
struct State {
    /// Ejections since the last success of a request.
    ejections: u32,
    /// `Some` while ejected or half-open: when the cooldown ends.
    until: Option<Instant>,
    /// Token of the probe in flight.
    probe: Option<u64>,
    /// `ejections` when the half-open round of the probe (or probation) began: its failure
    /// escalates once from there, not once more on top of another replica's ejection for
    /// the same round heard meanwhile.
    round: u32,
    next_token: u64,
    /// Restored by a health check, and no request has succeeded since: requests are let
    /// through as single tries, and the first failure ejects again with the cooldown
    /// doubled (a check can pass while what users call is still broken: `/models` answers
    /// while completions fail, or one model of the endpoint is down). Any new deadline (a
    /// failure, another replica's ejection) ends it.
    probation: bool,
    /// The deadline in `until` is the upstream's `Retry-After` rather than the doubling
    /// cooldown (told to other replicas, which share the upstream's key).
    retry_after: bool,
    /// The deadline in `until` was last set by another replica's ejection: not this
    /// replica's to tell again.
    remote: bool,
    /// When the last probe slot was taken (by a request or a check): the next early probe
    /// waits `max_probe_interval` from the later of this and `since`.
    probed_at: Option<Instant>,
    /// The newest word that the deployment is out, of the cooldown in force: when it began,
    /// or when a later failure (here, or told by another replica) pushed its deadline. A
    /// restore from before then is stale.
    since: Option<Instant>,
    /// When the deployment was last seen answering after a cooldown, here or (as told) by
    /// another replica: events from before then are stale. Kept across resets.
    restored_at: Option<Instant>,
    /// The latest time stamp of a restore another replica told (by that replica's clock):
    /// the one Redis keeps, and so the one a reconnect reads back, which then changes
    /// nothing. Kept across resets.
    restore_told: Option<SystemTime>,
}

impl State {
    /// When the half-open probe is due: at the end of the cooldown, or `interval` after the
    /// newest word (or the last probe), whichever is first. An upstream's `Retry-After` is
    /// honoured to its end: the provider asked for the pause.
    fn probe_due(&self, interval: Duration) -> Option<Instant> {
        let until = self.until?;
        if self.retry_after {
            return Some(until);
        }
        let early = self
            .since
            .max(self.probed_at)
            .and_then(|last| last.checked_add(interval));
        Some(early.map_or(until, |early| early.min(until)))
    }

    /// Whether a request sent at `sent` left before the latest word on this deployment's
    /// health: before the cooldown in force began (or was last pushed out), or before a
    /// check put it on probation.
    fn sent_before_last_word(&self, sent: Instant) -> bool {
        let word = match self.until {
            Some(_) => self.since,
            None if self.probation => self.restored_at,
            None => None,
        };
        word.is_some_and(|word| sent < word)
    }

    /// Word, given at `said`, that the deployment is out until `deadline`: pushes the
    /// deadline out (never in) and, if it moved, makes `said` the cooldown's newest word
    /// unless a newer one is known. A cooldown that is over (half-open) is not extended but
    /// replaced: a restore from between the two must not end the new one. Returns whether
    /// the deadline moved.
    fn push_deadline(
        &mut self,
        said: Instant,
        now: Instant,
        deadline: Instant,
        remote: bool,
    ) -> bool {
        let before = self.until;
        // No cooldown in force: none began, or the last one is over.
        let over = self.until.is_none_or(|until| until <= now);
        extend(&mut self.until, deadline);
        let moved = self.until != before;
        if moved {
            // Only word that moved the deadline is the cooldown's: a shorter one says
            // nothing of the deadline in force, which a restore may still end.
            self.since = Some(match self.since {
                Some(since) if !over => since.max(said),
                _ => said,
            });
            self.remote = remote;
            // Out again: whatever probation there was has ended, in failure.
            self.probation = false;
        }
        moved
    }
}

/// One endpoint's health. Lock-free reads on the healthy path; a small mutex for transitions.
///
/// `repr(C)`, hot fields first: the healthy path reads and writes only the atomics at the
/// top, which then share one cache line, while the state, the latency score and the check
/// log (a few hundred bytes, touched on transitions, by `least_latency` and by the checker)
/// follow. A balancer over 1 024 deployments touches a different cell on every request.
#[derive(Default)]
#[repr(C)]
pub(crate) struct EndpointHealth {
    /// `true` while `state.until` is `Some` or on probation; read without locking on the hot
    /// path.
    unhealthy: AtomicBool,
    /// Failed requests in a row.
    consecutive_failures: AtomicU32,
    /// Failed periodic health checks in a row: a count of their own, so that a check that
    /// passes cannot clear the failures of requests (or the other way round).
    check_failures: AtomicU32,
    /// Running health checkers that probe this deployment: while there is one, the
    /// half-open probe is theirs and no request is one.
    checkers: AtomicU32,
    in_flight: AtomicUsize,
    total_ejections: AtomicU64,
    state: Mutex<State>,
    /// For `least_latency`.
    pub(crate) latency: PeakEwma,
    /// What the health checker found.
    pub(crate) checks: CheckLog,
    /// The last minute of requests, and the last failure, for operators.
    pub(crate) activity: Activity,
    /// Its rate-limit windows, as its provider last told them.
    pub(crate) headroom: Headroom,
    /// Where the configuration in force puts it (the last pool built over it says).
    placement: Mutex<Option<Placement>>,
    /// `max_probe_interval` of the configuration in force, in milliseconds (0: none, the
    /// probe waits for the end of the cooldown).
    max_probe_interval_ms: AtomicU64,
}

/// A deployment's place in the configuration: its endpoint, model and priority tier.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    pub(crate) endpoint: EndpointId,
    pub(crate) model: Option<ModelName>,
    pub(crate) priority: u32,
}

/// Whether a request may go to a deployment now, from [`DeploymentHealth::admit`](crate::DeploymentHealth::admit).
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::Endpoint;
/// use llm_tower_health::{Admission, DeploymentHealth, HealthPolicy, HealthRegistry};
/// use tokio::time::Instant;
///
/// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
/// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: Duration::from_secs(60), max_probe_interval: Duration::from_secs(10) };
/// let a = DeploymentHealth::new(&HealthRegistry::new(), "a".into(), &endpoint, None, policy);
/// assert!(matches!(a.admit(Instant::now()), Admission::Open));
/// ```
#[derive(Debug)]
pub enum Admission {
    /// Healthy.
    Open,
    /// Restored by a health check, not yet by a request: a single try.
    Probation,
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

    pub(crate) fn place(&self, placement: Placement, max_probe_interval: Duration) {
        *self
            .placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(placement);
        let ms = u64::try_from(max_probe_interval.as_millis()).unwrap_or(u64::MAX);
        self.max_probe_interval_ms.store(ms, Ordering::Relaxed);
    }

    /// The longest wait between probes while ejected (`Duration::MAX`: none).
    fn max_probe_interval(&self) -> Duration {
        match self.max_probe_interval_ms.load(Ordering::Relaxed) {
            0 => Duration::MAX,
            ms => Duration::from_millis(ms),
        }
    }

    /// When the half-open probe is next due, while out.
    pub(crate) fn probe_due(&self) -> Option<Instant> {
        if self.is_healthy() {
            return None;
        }
        self.lock().probe_due(self.max_probe_interval())
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
            None if state.probation => Admission::Probation,
            None => Admission::Open,
            Some(until)
                if state.probe.is_some()
                    || self.checkers.load(Ordering::Acquire) > 0
                    || state
                        .probe_due(self.max_probe_interval())
                        .is_some_and(|due| now < due) =>
            {
                Admission::Closed(until)
            }
            Some(_) => Admission::Probe(self.take_probe(&mut state, now)),
        }
    }

    fn take_probe(self: &Arc<Self>, state: &mut State, now: Instant) -> ProbeGuard {
        state.next_token += 1;
        let token = state.next_token;
        state.probe = Some(token);
        state.probed_at = Some(now);
        state.round = state.ejections;
        ProbeGuard {
            cell: Some(self.clone()),
            token,
        }
    }

    /// An attempt starts here (until [`end_attempt`](Self::end_attempt)).
    pub(crate) fn start_attempt(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end_attempt(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// A request sent at `sent` succeeded here: everything resets. Returns whether that
    /// restored it from a cooldown.
    ///
    /// Only a request sent after the deployment was put out (or restored on probation) may
    /// restore it: one sent before says nothing of the outage that followed. Without this,
    /// the slow successes still in flight at an ejection would end it at once (a
    /// `Retry-After` pause included), and each be told to the other replicas as a restore.
    pub(crate) fn record_success(&self, probe: Option<ProbeGuard>, sent: Instant) -> bool {
        // Resetting the state below clears the probe slot; a healthy cell has none to clear.
        let was_probe = probe.is_some();
        if let Some(probe) = probe {
            probe.resolved();
        }
        if self.is_healthy()
            && self.consecutive_failures.load(Ordering::Relaxed) == 0
            && self.check_failures.load(Ordering::Relaxed) == 0
        {
            return false;
        }
        let mut state = self.lock();
        if !was_probe && state.sent_before_last_word(sent) {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.check_failures.store(0, Ordering::Relaxed);
        let restored = state.until.is_some();
        if restored {
            // How fast it was before its outage says nothing about now.
            self.latency.reset();
        }
        *state = State {
            next_token: state.next_token,
            restored_at: if restored {
                Some(Instant::now())
            } else {
                state.restored_at
            },
            restore_told: state.restore_told,
            ..State::default()
        };
        self.unhealthy.store(false, Ordering::Release);
        restored
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
        let was_probe = resolve(&mut state, probe) | std::mem::take(&mut state.probation);
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        self.fail(&mut state, now, interval, hint, was_probe, failures, policy)
    }

    /// The `failures`-th failure in a row (of requests or of checks), or of the probe. A probe
    /// that fails ejects again with the cooldown doubled; otherwise an ejection comes at the
    /// threshold, and a deployment already out only has its deadline pushed by an explicit
    /// `Retry-After`.
    #[allow(clippy::too_many_arguments)]
    fn fail(
        &self,
        state: &mut State,
        now: Instant,
        interval: Duration,
        hint: Option<Duration>,
        was_probe: bool,
        failures: u32,
        policy: HealthPolicy,
    ) -> Option<Duration> {
        let hint = hint.map(|h| h.min(policy.max_cooldown));
        if state.until.is_some() && !was_probe {
            // A late failure of a request sent before the ejection, or a forced attempt:
            // only an explicit Retry-After may push the deadline out (and is then told).
            let hint = hint?;
            if !state.push_deadline(now, now, now + hint, false) {
                return None;
            }
            state.retry_after = true;
            return Some(hint);
        }
        if !was_probe && failures < policy.unhealthy_threshold {
            // Below the threshold, but the upstream asked for a pause: honour it, without
            // counting an ejection.
            let hint = hint.filter(|h| !h.is_zero())?;
            state.push_deadline(now, now, now + hint, false);
            state.retry_after = true;
            self.unhealthy.store(true, Ordering::Release);
            return Some(hint);
        }
        state.ejections = if was_probe {
            state.ejections.max(state.round.saturating_add(1))
        } else {
            state.ejections.saturating_add(1)
        };
        let doubling = 2u32.saturating_pow(state.ejections - 1);
        let doubled = interval.saturating_mul(doubling).min(policy.max_cooldown);
        let cooldown = doubled.max(hint.unwrap_or(Duration::ZERO));
        state.push_deadline(now, now, now + cooldown, false);
        state.retry_after = cooldown > doubled;
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
        let on_probation = state.probation;
        let ejections = state.ejections;
        drop(state);
        let (checks_passed, checks_failed) = self.checks.counts();
        let placement = self
            .placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let activity = self.activity.snapshot(now);
        EndpointSnapshot {
            endpoint: placement.as_ref().map(|p| p.endpoint.clone()),
            model: placement.as_ref().and_then(|p| p.model.clone()),
            priority: placement.map(|p| p.priority),
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
            recent_latency_ms: activity.recent_latency_ms,
            last_failure: activity.last_failure,
            last_minute: activity.last_minute,
            on_probation,
            rate_limits: self.headroom.snapshot(now),
        }
    }
}

/// Frees the slot of `probe` if it is still the one in flight; returns whether it was.
fn resolve(state: &mut State, probe: Option<ProbeGuard>) -> bool {
    probe.is_some_and(|probe| {
        let current = state.probe == Some(probe.token);
        if current {
            state.probe = None;
        }
        probe.resolved();
        current
    })
}

/// A later deadline never shortens an existing one.
fn extend(until: &mut Option<Instant>, deadline: Instant) {
    *until = Some(until.map_or(deadline, |u| u.max(deadline)));
}

/// The half-open probe slot of a deployment, held by the request (or health check) that is
/// its probe: [`Admission::Probe`]. Handing it to the outcome
/// ([`DeploymentHealth::succeeded`](crate::DeploymentHealth::succeeded) or
/// [`failed`](crate::DeploymentHealth::failed)) resolves it; dropping it unresolved (the
/// request was cancelled, or ended with an outcome that says nothing about health) frees
/// the slot for the next request.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::{Endpoint, Outcome};
/// use llm_tower_health::{Admission, DeploymentHealth, HealthPolicy, HealthRegistry};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
/// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: Duration::from_secs(60), max_probe_interval: Duration::from_secs(10) };
/// let a = DeploymentHealth::new(&HealthRegistry::new(), "a".into(), &endpoint, None, policy);
/// a.failed(Instant::now(), Outcome::Status(http::StatusCode::SERVICE_UNAVAILABLE), None, None);
/// tokio::time::advance(Duration::from_secs(5)).await;
/// let Admission::Probe(probe) = a.admit(Instant::now()) else { panic!("half-open") };
/// // One probe at a time.
/// assert!(matches!(a.admit(Instant::now()), Admission::Closed(_)));
/// drop(probe);
/// assert!(matches!(a.admit(Instant::now()), Admission::Probe(_)));
/// # }
/// ```
pub struct ProbeGuard {
    /// `None` once resolved.
    cell: Option<Arc<EndpointHealth>>,
    token: u64,
}

impl ProbeGuard {
    /// The cell's state has been updated by the caller: nothing to release.
    fn resolved(mut self) {
        self.cell = None;
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            cell.release_probe(self.token);
        }
    }
}

impl fmt::Debug for ProbeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeGuard")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
