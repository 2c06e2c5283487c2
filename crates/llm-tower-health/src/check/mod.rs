//! The active health checker: one task per set of deployments that checks endpoints with a
//! [`HealthCheck`], so that no user request has to find out whether an endpoint is back.
//!
//! - An ejected deployment is checked when its cooldown ends: the checker holds its
//!   half-open probe slot (requests never get it while a checker runs). A check that passes
//!   restores it on probation (see `cell/checks.rs`), one that fails ejects it again with
//!   the usual doubling.
//! - With `interval`, healthy deployments are checked too (the first time within a tenth of
//!   the interval of the start, then an interval ±10 % after each check ends), and
//!   `unhealthy_threshold` consecutive failed checks eject one.
//! - One check per endpoint at a time, and the interval counts from the end of the last
//!   one: a slow or hanging endpoint is not checked back to back.
//! - The task waits on the earliest thing due, not on a tick. Any stack over the same
//!   registry wakes it when it ejects a deployment (a new deadline); it ends when its
//!   [`HealthChecker`] is dropped (a balancer keeps it: with the last clone of its stack).
//!
//! A check speaks for its endpoint: an endpoint that serves several models has one
//! deployment per model, and one check decides for every one of them that is due.

mod probe;
mod service;

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::Uri;
use llm_tower_core::{Endpoint, HealthCheck};
use tokio::sync::watch;
use tokio::time::Instant;

pub use service::CheckService;

use crate::cell::{EndpointHealth, ProbeGuard};
use crate::deployment::DeploymentHealth;
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
    deployments: Box<[Arc<DeploymentHealth>]>,
}

/// What one check decides for: its deployments by index, with their probe slot when the
/// check is their half-open probe (`None`: one taking traffic, in a periodic check).
struct Plan {
    deployments: Vec<(usize, Option<ProbeGuard>)>,
    periodic: bool,
}

/// The running health checker of a set of deployments (one background task); it stops when
/// this is dropped. From [`HealthChecker::start`].
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use http::{Request, Response};
/// use llm_tower_core::{BufferedBody, Endpoint, HealthCheck};
/// use llm_tower_health::{DeploymentHealth, HealthChecker, HealthPolicy, HealthRegistry};
/// use tower::service_fn;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let check = HealthCheck { interval: Some(Duration::from_secs(10)), ..HealthCheck::default() };
/// let endpoint = Arc::new(Endpoint::builder("a", "http://127.0.0.1:1/v1").health_check(check).build().unwrap());
/// let registry = HealthRegistry::new();
/// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: Duration::from_secs(60), max_probe_interval: Duration::from_secs(10) };
/// let a = Arc::new(DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy));
/// // A stand-in for auth over a client: every check answers 200.
/// let probe = service_fn(|_: Request<BufferedBody>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
/// });
/// let checker = HealthChecker::start([(endpoint, a)], probe).expect("`a` has a check");
/// tokio::time::sleep(Duration::from_secs(2)).await;
/// assert!(registry.get("a").unwrap().last_check.unwrap().passed);
/// drop(checker); // the task ends
/// # }
/// ```
pub struct HealthChecker {
    /// Never sent on: dropping it closes the channel the task watches.
    _stop: watch::Sender<()>,
}

impl fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecker").finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// Starts checking the `deployments` (each with its endpoint; the deployments of one
    /// endpoint next to each other) whose endpoint has a [`HealthCheck`], sending checks
    /// through `probe`: typically the stack below retry (the auth layer over the HTTP
    /// client), so that checks are authenticated like traffic and never retried. Returns
    /// `None` when no endpoint has a check.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime: the checker is a task of the current one.
    pub fn start<P: CheckService>(
        deployments: impl IntoIterator<Item = (Arc<Endpoint>, Arc<DeploymentHealth>)>,
        probe: P,
    ) -> Option<Self> {
        let now = Instant::now();
        let mut deployments = deployments.into_iter().peekable();
        let mut targets: Vec<Target> = Vec::new();
        let mut registry = None;
        while let Some((endpoint, first)) = deployments.next() {
            registry.get_or_insert_with(|| first.registry.clone());
            let mut of_endpoint = vec![first];
            while let Some((_, next)) =
                deployments.next_if(|(next, _)| Arc::ptr_eq(next, &endpoint))
            {
                of_endpoint.push(next);
            }
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
                    check: check.clone(),
                    endpoint,
                    uri,
                    deployments: of_endpoint.into_boxed_slice(),
                }),
                running: false,
                not_before: None,
            });
        }
        let registry = registry.filter(|_| !targets.is_empty())?;
        let stop = watch::Sender::new(());
        let checker = Checker {
            _owned: Owned::new(&targets),
            targets,
            signals: Signals {
                ejections: registry.watch_ejections(),
                stop: stop.subscribe(),
            },
            probe,
        };
        tokio::spawn(checker.run());
        Some(Self { _stop: stop })
    }
}

/// What the checker listens to.
struct Signals {
    /// Changes when a stack over the registry ejects a deployment.
    ejections: watch::Receiver<()>,
    /// Closes when the [`HealthChecker`] is dropped.
    stop: watch::Receiver<()>,
}

struct Checker<P> {
    targets: Vec<Target>,
    /// Marks the deployments as probed by a checker until the task ends.
    _owned: Owned,
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
    /// The [`HealthChecker`] is dropped.
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
                    running.push(async move {
                        let verdict = probe::check(&shared, probe).await;
                        let periodic = plan.periodic;
                        shared.apply(plan, &verdict);
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
    let mut stopped = pin!(signals.stop.changed());
    let mut ejected = pin!(signals.ejections.changed());
    let mut sleep = pin!(due.map(tokio::time::sleep_until));
    poll_fn(|cx| {
        // The stop sender is never used: its channel only ever closes.
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
            .filter_map(|(i, deployment)| match deployment.cell.admit_check(now) {
                Some(probe) => Some((i, Some(probe))),
                // Taking traffic: healthy, or on probation after a check restored it.
                None => (periodic
                    && (deployment.cell.is_healthy() || deployment.cell.is_on_probation()))
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

    /// When this endpoint needs the checker next: its periodic check, or when a deployment's
    /// probe is due (the end of its cooldown, or `max_probe_interval` after the last word or
    /// probe). A probe already due whose slot someone else holds
    /// (a request sent before this checker started, or another stack's checker on a shared
    /// registry) is looked at again after the check timeout, and at least a second later.
    fn next_due(&self, now: Instant) -> Option<Instant> {
        if self.running {
            return None;
        }
        let cooldowns = self.shared.deployments.iter().filter_map(|deployment| {
            let end = deployment.cell.probe_due()?;
            Some(if end > now || !deployment.cell.probe_in_flight() {
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
    fn apply(&self, plan: Plan, verdict: &Verdict) {
        let now = Instant::now();
        for (i, probe) in plan.deployments {
            let deployment = &self.deployments[i];
            match verdict {
                Verdict::Passed { .. } => {
                    if deployment.check_passed(probe, now) {
                        tracing::info!(endpoint = %deployment.id(), "health check passed; endpoint restored");
                    }
                }
                Verdict::Failed { outcome, hint, .. } => {
                    if let Some(cooldown) = deployment.check_failed(probe, now, *hint) {
                        tracing::warn!(
                            endpoint = %deployment.id(),
                            %outcome,
                            cooldown_ms = cooldown.as_millis() as u64,
                            "health check failed; endpoint ejected{}",
                            verdict.hint()
                        );
                    }
                }
                // Not the endpoint's doing: a probe slot is released, the deployment stays
                // as it is.
                Verdict::Inconclusive => drop(probe),
            }
        }
        if let Some((passed, outcome, latency)) = verdict.record() {
            for deployment in &*self.deployments {
                deployment.cell.checks.record(now, passed, outcome, latency);
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
            .flat_map(|t| t.shared.deployments.iter().map(|d| d.cell.clone()))
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
