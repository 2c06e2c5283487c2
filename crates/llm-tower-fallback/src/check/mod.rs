//! The active health checker: one task per stack that checks endpoints with a
//! [`HealthCheck`], so that no user request has to find out whether an endpoint is back.
//!
//! - An ejected deployment is checked when its cooldown ends: the checker holds its
//!   half-open probe slot (requests never get it while a checker runs). A check that passes
//!   restores it on probation (see `health/checks.rs`), one that fails ejects it again with
//!   the usual doubling.
//! - With `interval`, healthy deployments are checked too (the first time within a tenth of
//!   the interval of the start, then an interval ±10 % after each check ends), and
//!   `unhealthy_threshold` consecutive failed checks eject one.
//! - One check per endpoint at a time, and the interval counts from the end of the last
//!   one: a slow or hanging endpoint is not checked back to back.
//! - The task waits on the earliest thing due, not on a tick. Any balancer over the same
//!   registry wakes it when it ejects a deployment (a new deadline); it ends when its own
//!   balancer, and so the last clone of its stack, is dropped.
//!
//! A check speaks for its endpoint: an endpoint that serves several models has one
//! deployment per model, and one check decides for every one of them that is due.

mod probe;
mod record;
mod service;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::Uri;
use llm_tower_core::{Endpoint, EndpointId, HealthCheck};
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) use record::CheckLog;
pub use record::CheckSnapshot;
pub use service::CheckService;

use crate::health::{EndpointHealth, HealthPolicy, ProbeGuard};
use crate::registry::HealthRegistry;
use crate::select::Member;
use probe::Verdict;

/// How long to wait before checking again after a check that told nothing (this process ran
/// out of descriptors, or the probe service failed in a way nobody recognises): not a
/// failure of the endpoint, but no reason to spin either.
const INCONCLUSIVE_PAUSE: Duration = Duration::from_secs(1);

/// The shortest wait before looking again at a cooldown that is over but whose probe slot
/// someone else holds.
const SLOT_RECHECK: Duration = Duration::from_secs(1);

/// One endpoint with a check, and its deployments.
struct Target {
    shared: Arc<Checked>,
    running: bool,
    /// When the next periodic check is due (`None` without `interval`).
    next_periodic: Option<Instant>,
    /// No check before then (after an inconclusive one).
    not_before: Option<Instant>,
}

/// What a running check needs to know about its endpoint.
struct Checked {
    endpoint: Arc<Endpoint>,
    check: HealthCheck,
    uri: Uri,
    deployments: Box<[(EndpointId, Arc<EndpointHealth>)]>,
    /// Told of the ejections and restores the checks make, for other replicas.
    registry: HealthRegistry,
}

/// What one check decides for: its deployments by index, with their probe slot when the
/// check is their half-open probe (`None`: one taking traffic, in a periodic check).
struct Plan {
    deployments: Vec<(usize, Option<ProbeGuard>)>,
    periodic: bool,
}

/// Starts the checker for the `members` whose endpoint has a check, sending checks through
/// `probe`. Returns `false` when no endpoint has one.
pub(crate) fn spawn<P: CheckService>(
    members: &[Member],
    policy: HealthPolicy,
    signals: Signals,
    probe: P,
) -> bool {
    let now = Instant::now();
    // Members of one endpoint are next to each other (the pool is built endpoint by endpoint).
    let mut targets: Vec<Target> = Vec::new();
    let mut start = 0;
    while start < members.len() {
        let endpoint = &members[start].endpoint;
        let end = start
            + members[start..]
                .iter()
                .take_while(|m| Arc::ptr_eq(&m.endpoint, endpoint))
                .count();
        let deployments = &members[start..end];
        start = end;
        let Some(check) = endpoint.health_check() else {
            continue;
        };
        let Ok(uri) = check.uri(endpoint.base_url()) else {
            // Refused when the endpoint was built.
            continue;
        };
        targets.push(Target {
            next_periodic: check
                .interval
                .map(|interval| now + jitter(interval.mul_f64(0.1), 0.0..1.0)),
            shared: Arc::new(Checked {
                endpoint: endpoint.clone(),
                check: check.clone(),
                uri,
                deployments: deployments
                    .iter()
                    .map(|m| (m.id.clone(), m.health.clone()))
                    .collect(),
                registry: signals.registry.clone(),
            }),
            running: false,
            not_before: None,
        });
    }
    if targets.is_empty() {
        return false;
    }
    let checker = Checker {
        _owned: Owned::new(&targets),
        targets,
        policy,
        signals,
        probe,
    };
    tokio::spawn(checker.run());
    true
}

/// What the checker listens to.
pub(crate) struct Signals {
    /// The balancer's registry.
    pub(crate) registry: HealthRegistry,
    /// Changes when a balancer over the registry ejects a deployment.
    pub(crate) ejections: watch::Receiver<()>,
    /// Closes when the checker's balancer is dropped.
    pub(crate) balancer: watch::Receiver<()>,
}

struct Checker<P> {
    targets: Vec<Target>,
    /// Marks the deployments as probed by a checker until the task ends.
    _owned: Owned,
    policy: HealthPolicy,
    signals: Signals,
    probe: P,
}

/// A check's end: which target, what it found, and whether it was the periodic one.
type Finished = (usize, Verdict, bool);

enum Event {
    /// Something may be due: a deadline passed, or a deployment was ejected.
    Due,
    /// A check ended.
    Finished(Finished),
    /// The balancer is gone.
    Stopped,
}

impl<P: CheckService> Checker<P> {
    async fn run(mut self) {
        let mut running = FuturesUnordered::new();
        loop {
            let now = Instant::now();
            for (index, target) in self.targets.iter_mut().enumerate() {
                if let Some(plan) = target.plan(now) {
                    let shared = target.shared.clone();
                    let probe = self.probe.clone();
                    let policy = self.policy;
                    running.push(async move {
                        let verdict = probe::check(&shared, probe).await;
                        let periodic = plan.periodic;
                        shared.apply(plan, &verdict, policy);
                        (index, verdict, periodic)
                    });
                }
            }
            let due = self.targets.iter().filter_map(|t| t.next_due(now)).min();
            match next_event(&mut self.signals, &mut running, due).await {
                Event::Stopped => return,
                Event::Due => {}
                Event::Finished((index, verdict, periodic)) => {
                    self.targets[index].finished(Instant::now(), &verdict, periodic);
                }
            }
        }
    }
}

/// Waits for a signal, a running check to end, or `due`.
async fn next_event<F>(
    signals: &mut Signals,
    running: &mut FuturesUnordered<F>,
    due: Option<Instant>,
) -> Event
where
    F: Future<Output = Finished>,
{
    let mut stopped = pin!(signals.balancer.changed());
    let mut ejected = pin!(signals.ejections.changed());
    let mut sleep = pin!(due.map(tokio::time::sleep_until));
    poll_fn(|cx| {
        // The balancer's sender is never used: its channel only ever closes.
        if stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Stopped);
        }
        if let Poll::Ready(Some(finished)) = running.poll_next_unpin(cx) {
            return Poll::Ready(Event::Finished(finished));
        }
        // The registry outlives every balancer: its channel does not close while we run.
        if ejected.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Due);
        }
        match sleep.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Event::Due),
            _ => Poll::Pending,
        }
    })
    .await
}

impl Target {
    /// The check to start now, if one is due: the deployments whose cooldown is over (their
    /// probe slots taken), and the healthy ones when the periodic check is due.
    fn plan(&mut self, now: Instant) -> Option<Plan> {
        if self.running || self.not_before.is_some_and(|t| now < t) {
            return None;
        }
        let periodic = self.next_periodic.is_some_and(|due| due <= now);
        let deployments: Vec<(usize, Option<ProbeGuard>)> = self
            .shared
            .deployments
            .iter()
            .enumerate()
            .filter_map(|(i, (_, health))| match health.admit_check(now) {
                Some(probe) => Some((i, Some(probe))),
                // Taking traffic: healthy, or on probation after a check restored it.
                None => (periodic && (health.is_healthy() || health.is_on_probation()))
                    .then_some((i, None)),
            })
            .collect();
        if deployments.is_empty() {
            if periodic {
                // Every deployment is out and none is due: nothing to learn now.
                self.schedule_periodic(now);
            }
            return None;
        }
        self.running = true;
        Some(Plan {
            deployments,
            periodic,
        })
    }

    /// A check ended at `now`.
    fn finished(&mut self, now: Instant, verdict: &Verdict, periodic: bool) {
        self.running = false;
        if periodic {
            self.schedule_periodic(now);
        }
        if matches!(verdict, Verdict::Inconclusive) {
            self.not_before = Some(now + INCONCLUSIVE_PAUSE);
        }
    }

    fn schedule_periodic(&mut self, now: Instant) {
        self.next_periodic = self
            .shared
            .check
            .interval
            .map(|interval| now + jitter(interval, 0.9..1.1));
    }

    /// When this endpoint needs the checker next: its periodic check, or the end of a
    /// deployment's cooldown. A cooldown already over whose probe slot someone else holds
    /// (a request sent before this checker started, or another stack's checker on a shared
    /// registry) is looked at again after the check timeout, and at least a second later.
    fn next_due(&self, now: Instant) -> Option<Instant> {
        if self.running {
            return None;
        }
        let cooldowns = self.shared.deployments.iter().filter_map(|(_, health)| {
            let end = health.cooldown_end()?;
            Some(if end > now || !health.probe_in_flight() {
                end
            } else {
                now + self.shared.check.timeout.max(SLOT_RECHECK)
            })
        });
        let due = cooldowns.chain(self.next_periodic).min()?;
        Some(self.not_before.map_or(due, |t| due.max(t)))
    }
}

impl Checked {
    /// Applies a check's verdict to the deployments it decides for.
    fn apply(&self, plan: Plan, verdict: &Verdict, policy: HealthPolicy) {
        let now = Instant::now();
        let cooldown = self.endpoint.health_check_interval();
        for (i, probe) in plan.deployments {
            let (id, health) = &self.deployments[i];
            match verdict {
                Verdict::Passed { .. } => {
                    if health.check_passed(probe, now) {
                        tracing::info!(endpoint = %id, "health check passed; endpoint restored");
                        self.registry.restored(id);
                    }
                }
                Verdict::Failed { outcome, hint, .. } => {
                    if let Some(cooldown) = health.check_failed(probe, now, cooldown, *hint, policy)
                    {
                        tracing::warn!(
                            endpoint = %id,
                            %outcome,
                            cooldown_ms = cooldown.as_millis() as u64,
                            "health check failed; endpoint ejected{}",
                            verdict.hint()
                        );
                        self.registry.ejected(id, health);
                    }
                }
                // Not the endpoint's doing: a probe slot is released, the deployment stays
                // as it is.
                Verdict::Inconclusive => drop(probe),
            }
        }
        if let Some((passed, outcome, latency)) = verdict.record() {
            for (_, health) in &*self.deployments {
                health.checks.record(now, passed, outcome, latency);
            }
        }
    }
}

/// `base` scaled by a random factor in `range`.
fn jitter(base: Duration, range: std::ops::Range<f64>) -> Duration {
    base.mul_f64(range.start + fastrand::f64() * (range.end - range.start))
}

/// The deployments a checker probes: marked when it starts, unmarked when its task ends
/// (or is dropped with its runtime), so that requests probe them again.
struct Owned(Vec<Arc<EndpointHealth>>);

impl Owned {
    fn new(targets: &[Target]) -> Self {
        let cells: Vec<Arc<EndpointHealth>> = targets
            .iter()
            .flat_map(|t| t.shared.deployments.iter().map(|(_, h)| h.clone()))
            .collect();
        for cell in &cells {
            cell.checker_started();
        }
        Self(cells)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        for cell in &self.0 {
            cell.checker_stopped();
        }
    }
}
