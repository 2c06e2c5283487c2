//! The active health checker: one task per stack that checks endpoints with a
//! [`HealthCheck`], so that no user request has to find out whether an endpoint is back.
//!
//! - An ejected deployment is checked when its cooldown ends: the checker holds its
//!   half-open probe slot (requests never get it while a checker runs), and the check's
//!   outcome restores it or ejects it again, with the usual doubling.
//! - With `interval`, healthy deployments are checked too (jittered by ±10 %, the first
//!   time within a tenth of the interval of the start), and `unhealthy_threshold`
//!   consecutive failed checks eject one.
//! - One check per endpoint at a time: a check that outlasts the interval delays the next.
//! - The task waits on the earliest thing due, not on a tick; the balancer wakes it when it
//!   ejects a checked deployment (a new deadline), and it ends when the balancer, and so
//!   the last clone of the stack, is dropped.
//!
//! A check speaks for its endpoint: an endpoint that serves several models has one
//! deployment per model, and one check decides for every one of them that is due.

mod probe;
mod record;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{Request, Response, Uri};
use http_body::Body;
use llm_tower_core::{BoxError, BufferedBody, Endpoint, EndpointId, HealthCheck};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::Service;

pub(crate) use record::CheckLog;
pub use record::CheckSnapshot;

use crate::health::{EndpointHealth, HealthPolicy, ProbeGuard};
use crate::select::Member;
use probe::Verdict;

/// How long to wait before checking again after a check failed here, not upstream (this
/// process ran out of descriptors or memory): not a failure of the endpoint, but no reason
/// to spin either.
const LOCAL_FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// One endpoint with a check, and its deployments.
struct Target {
    shared: Arc<Checked>,
    running: bool,
    /// When the next periodic check is due (`None` without `interval`).
    next_periodic: Option<Instant>,
    /// No check before then (after a local failure).
    not_before: Option<Instant>,
}

/// What a running check needs to know about its endpoint.
struct Checked {
    endpoint: Arc<Endpoint>,
    check: HealthCheck,
    uri: Uri,
    deployments: Box<[(EndpointId, Arc<EndpointHealth>)]>,
}

/// What one check decides: the deployments whose probe it is, and, for a periodic check,
/// the healthy ones.
struct Plan {
    probes: Vec<(usize, ProbeGuard)>,
    healthy: Vec<usize>,
}

/// Starts the checker for the `members` whose endpoint has a check, sending checks through
/// `probe`. Returns `false` when no endpoint has one.
pub(crate) fn spawn<P, RB>(
    members: &[Member],
    policy: HealthPolicy,
    signal: watch::Receiver<()>,
    probe: P,
) -> bool
where
    P: Service<Request<BufferedBody>, Response = Response<RB>> + Clone + Send + 'static,
    P::Error: Into<BoxError>,
    P::Future: Send,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
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
        signal,
        probe,
    };
    tokio::spawn(checker.run());
    true
}

struct Checker<P> {
    targets: Vec<Target>,
    /// Marks the deployments as probed by a checker until the task ends.
    _owned: Owned,
    policy: HealthPolicy,
    signal: watch::Receiver<()>,
    probe: P,
}

enum Event {
    /// Something may be due: a deadline passed, or the balancer ejected a deployment.
    Due,
    /// The check of `targets[index]` ended.
    Finished(usize, Verdict),
    /// The balancer is gone.
    Stopped,
}

impl<P, RB> Checker<P>
where
    P: Service<Request<BufferedBody>, Response = Response<RB>> + Clone + Send + 'static,
    P::Error: Into<BoxError>,
    P::Future: Send,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
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
                        shared.apply(plan, &verdict, policy);
                        (index, verdict)
                    });
                }
            }
            let due = self.targets.iter().filter_map(|t| t.next_due(now)).min();
            match next_event(&mut self.signal, &mut running, due).await {
                Event::Stopped => return,
                Event::Due => {}
                Event::Finished(index, verdict) => {
                    let target = &mut self.targets[index];
                    target.running = false;
                    if matches!(verdict, Verdict::Local) {
                        target.not_before = Some(Instant::now() + LOCAL_FAILURE_PAUSE);
                    }
                }
            }
        }
    }
}

/// Waits for the balancer's signal, a running check to end, or `due`.
async fn next_event<F>(
    signal: &mut watch::Receiver<()>,
    running: &mut FuturesUnordered<F>,
    due: Option<Instant>,
) -> Event
where
    F: Future<Output = (usize, Verdict)>,
{
    let mut changed = pin!(signal.changed());
    let mut sleep = pin!(due.map(tokio::time::sleep_until));
    poll_fn(|cx| {
        if let Poll::Ready(changed) = changed.as_mut().poll(cx) {
            return Poll::Ready(match changed {
                Ok(()) => Event::Due,
                Err(_) => Event::Stopped,
            });
        }
        if let Poll::Ready(Some((index, verdict))) = running.poll_next_unpin(cx) {
            return Poll::Ready(Event::Finished(index, verdict));
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
        let deployments = &self.shared.deployments;
        let probes: Vec<(usize, ProbeGuard)> = deployments
            .iter()
            .enumerate()
            .filter_map(|(i, (_, health))| Some((i, health.admit_check(now)?)))
            .collect();
        let mut healthy = Vec::new();
        if let (Some(due), Some(interval)) = (self.next_periodic, self.shared.check.interval) {
            if due <= now {
                healthy = (0..deployments.len())
                    .filter(|&i| deployments[i].1.is_healthy())
                    .collect();
                self.next_periodic = Some(now + jitter(interval, 0.9..1.1));
            }
        }
        if probes.is_empty() && healthy.is_empty() {
            return None;
        }
        self.running = true;
        Some(Plan { probes, healthy })
    }

    /// When this endpoint needs the checker next: its periodic check, or the end of a
    /// deployment's cooldown. A cooldown already over whose probe slot someone else holds
    /// (a request sent before this checker started, or another stack's checker on a shared
    /// registry) is looked at again after the check timeout.
    fn next_due(&self, now: Instant) -> Option<Instant> {
        if self.running {
            return None;
        }
        let cooldowns = self.shared.deployments.iter().filter_map(|(_, health)| {
            let end = health.cooldown_end()?;
            Some(if end > now {
                end
            } else {
                now + self.shared.check.timeout
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
        for (i, probe) in plan.probes {
            let (id, health) = &self.deployments[i];
            match verdict {
                Verdict::Passed { .. } => {
                    health.record_success(Some(probe));
                    tracing::info!(endpoint = %id, "health check passed; endpoint restored");
                }
                Verdict::Failed { outcome, hint, .. } => {
                    if let Some(cooldown) =
                        health.record_failure(now, cooldown, *hint, Some(probe), policy)
                    {
                        tracing::warn!(
                            endpoint = %id,
                            %outcome,
                            cooldown_ms = cooldown.as_millis() as u64,
                            "health check failed; endpoint ejected again"
                        );
                    }
                }
                // Not the endpoint's fault: the slot is released, the deployment stays out.
                Verdict::Local => drop(probe),
            }
        }
        for i in plan.healthy {
            let (id, health) = &self.deployments[i];
            match verdict {
                Verdict::Passed { .. } => health.record_check_passed(),
                Verdict::Failed { outcome, hint, .. } => {
                    if let Some(cooldown) =
                        health.record_failure(now, cooldown, *hint, None, policy)
                    {
                        tracing::warn!(
                            endpoint = %id,
                            %outcome,
                            cooldown_ms = cooldown.as_millis() as u64,
                            "health checks failed; endpoint ejected"
                        );
                    }
                }
                Verdict::Local => {}
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
