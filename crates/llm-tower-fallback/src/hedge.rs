//! Hedging: an attempt whose first byte is late (`hedge.after`) is sent to the next
//! deployment as well; the first of the two to answer is the answer, and the other is
//! cancelled (its connection dropped, recorded as `hedge_lost`, nothing held against its
//! health). At most one hedge per request, and at most `max_percent` of an endpoint's
//! requests over the last ten seconds (a budget like the retry budget).
//!
//! An attempt's future ends when its answer's head and first body frame are in (the retry
//! layer reads that far ahead), so the race is over before any byte reaches the client: a
//! request is never hedged once its client has bytes.

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use llm_tower_core::{
    AttemptKind, Attempts, BoxError, BufferedBody, Deployment, ErrorKind, Hedge, Outcome, classify,
    is_generation_path,
};
use tokio::time::Instant;
use tower::Service;

use crate::balancer::{Balancer, Route};
use crate::body::ResponseBody;
use crate::pool::Pick;
use crate::prepared::Prepared;
use crate::run::{Failed, send};

/// How long the budget remembers requests, in one-second buckets.
const BUDGET_SECONDS: usize = 10;

/// One endpoint's hedging: when, and how much of its traffic may be hedged.
pub(crate) struct HedgePolicy {
    after: Duration,
    budget: HedgeBudget,
}

impl HedgePolicy {
    pub(crate) fn new(hedge: Hedge) -> Self {
        Self {
            after: hedge.after,
            budget: HedgeBudget::new(hedge.max_percent),
        }
    }
}

/// Requests and hedges over the last ten seconds, per second: a hedge is allowed while the
/// hedges stay within `max_percent` of the requests (exactly: tower's `TpsBudget` rounds the
/// share to one in a whole number of requests). No floor: a quiet endpoint is hedged no
/// more than its share.
struct HedgeBudget {
    max_percent: u64,
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// The second the last bucket is of, since `origin`.
    second: u64,
    origin: Option<Instant>,
    requests: [u64; BUDGET_SECONDS],
    hedges: [u64; BUDGET_SECONDS],
}

impl Window {
    /// Moves the window to `now`, emptying the buckets of the seconds gone by.
    fn advance(&mut self, now: Instant) -> usize {
        let origin = *self.origin.get_or_insert(now);
        let second = now.saturating_duration_since(origin).as_secs();
        let gone = second
            .saturating_sub(self.second)
            .min(BUDGET_SECONDS as u64);
        for past in 1..=gone {
            let bucket = ((self.second + past) % BUDGET_SECONDS as u64) as usize;
            self.requests[bucket] = 0;
            self.hedges[bucket] = 0;
        }
        self.second = self.second.max(second);
        (self.second % BUDGET_SECONDS as u64) as usize
    }
}

impl HedgeBudget {
    fn new(max_percent: u32) -> Self {
        Self {
            max_percent: u64::from(max_percent),
            window: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request came.
    fn deposit(&self, now: Instant) {
        let mut window = self.lock();
        let bucket = window.advance(now);
        window.requests[bucket] += 1;
    }

    /// Whether one more hedge stays within the share.
    fn allows(&self, now: Instant) -> bool {
        let mut window = self.lock();
        window.advance(now);
        let (requests, hedges): (u64, u64) =
            (window.requests.iter().sum(), window.hedges.iter().sum());
        (hedges + 1) * 100 <= requests * self.max_percent
    }

    /// A hedge was sent.
    fn withdraw(&self, now: Instant) {
        let mut window = self.lock();
        let bucket = window.advance(now);
        window.hedges[bucket] += 1;
    }
}

/// What a race ended with: the answer (or the last failure), and the deployment it came
/// from when that is the hedge's.
pub(crate) struct Raced<RB> {
    pub(crate) result: Result<Response<ResponseBody<RB>>, BoxError>,
    pub(crate) hedge: Option<(Pick, Deployment)>,
}

/// What every attempt of one request shares: the balancer, the request, where the route
/// is, the log.
pub(crate) type Racing<'a, 'r> = (
    &'a Arc<Balancer>,
    &'a Arc<Prepared>,
    (&'a Route<'r>, usize),
    &'a Attempts,
);

/// What an attempt on a deployment is: where it went, and when.
struct Sent<'a> {
    deployment: &'a Deployment,
    kind: AttemptKind,
    started: Instant,
}

/// The hedging of the attempt on `pick`, when it may be hedged: its endpoint hedges, the
/// request was not hedged already, it is not a probe (its answer, late or not, is what
/// restores or ejects the deployment), nor from an endpoint that may not fall back, and
/// only for the APIs that generate (a request with effects of its own, a file upload, must
/// not be made twice) over HTTP (a WebSocket session is opened once).
pub(crate) fn policy<'b, RB>(
    balancer: &'b Balancer,
    prepared: &Prepared,
    pick: &Pick,
    failed: &Failed<RB>,
) -> Option<&'b HedgePolicy> {
    let member = &balancer.pool.members[pick.index];
    member.hedge.as_ref().filter(|_| {
        !failed.hedged
            && pick.probe.is_none()
            && !pick.single_try
            && member.endpoint.fallback()
            && !prepared.upgrade
            && is_generation_path(prepared.target.path())
    })
}

/// Sends `attempt` on `pick` (its `deployment`), hedged by `policy` when the answer is late.
/// A failure of one of the two while the other is still out is judged here (its health,
/// `failed`); the result is the first success, else the later failure.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn race<S, RB>(
    policy: &HedgePolicy,
    (balancer, prepared, (route, step), log): Racing<'_, '_>,
    inner: &mut S,
    attempt: Request<BufferedBody>,
    pick: &mut Pick,
    deployment: &Deployment,
    failed: &mut Failed<RB>,
) -> Raced<RB>
where
    S: Service<Request<BufferedBody>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
{
    let mut hedge_inner = inner.clone();
    let first_sent = Sent {
        deployment,
        kind: if log.is_empty() {
            AttemptKind::First
        } else {
            AttemptKind::Fallback
        },
        started: Instant::now(),
    };
    let mut first = pin!(send(
        inner,
        attempt,
        balancer,
        pick.index,
        deployment,
        log,
        Some(first_sent.kind)
    ));
    policy.budget.deposit(first_sent.started);
    tokio::select! {
        biased;
        result = &mut first => return Raced { result, hedge: None },
        () = tokio::time::sleep(policy.after) => {}
    }
    let Some((mut next, to_deployment, attempt)) =
        hedge_for(balancer, prepared, route, step, pick, log, failed)
    else {
        return Raced {
            result: first.await,
            hedge: None,
        };
    };
    failed.hedged = true;
    let second_sent = Sent {
        deployment: &to_deployment,
        kind: AttemptKind::Hedge,
        started: Instant::now(),
    };
    let mut second = pin!(send(
        &mut hedge_inner,
        attempt,
        balancer,
        next.index,
        &to_deployment,
        log,
        Some(AttemptKind::Hedge)
    ));
    let (mut first_out, mut second_out) = (false, false);
    loop {
        tokio::select! {
            result = &mut first, if !first_out => {
                // A failure another deployment may mend waits for the hedge; any other
                // answer (a success, the client's error) is the answer.
                if second_out || !classify(&result).falls_back() {
                    if !second_out {
                        lost(log, &second_sent);
                    }
                    return Raced { result, hedge: None };
                }
                first_out = true;
                judge(balancer, failed, pick, result, deployment);
            }
            result = &mut second, if !second_out => {
                if first_out || !classify(&result).falls_back() {
                    if !first_out {
                        lost(log, &first_sent);
                    }
                    return Raced { result, hedge: Some((next, to_deployment.clone())) };
                }
                second_out = true;
                judge(balancer, failed, &mut next, result, &to_deployment);
            }
        }
    }
}

/// Whether the budget lets `pick`'s late attempt be hedged, and where: the next deployment
/// of the step by fallback's order that admits a request now (never one cooling down,
/// tried, or low on headroom); with the request for it.
fn hedge_for<RB>(
    balancer: &Arc<Balancer>,
    prepared: &Arc<Prepared>,
    route: &Route<'_>,
    step: usize,
    pick: &Pick,
    log: &Attempts,
    failed: &mut Failed<RB>,
) -> Option<(Pick, Deployment, Request<BufferedBody>)> {
    let member = &balancer.pool.members[pick.index];
    let now = Instant::now();
    let budget = &member.hedge.as_ref()?.budget;
    if !budget.allows(now) {
        return None;
    }
    // Never the deployment the attempt is on; what was tried stays as it was.
    let was_tried = failed.is_tried(pick.index);
    let tried = failed.mark_tried(balancer, pick.index);
    let next = balancer.hedge_pick(route, step, pick, tried, now);
    tried[pick.index] = was_tried;
    let next = next?;
    let to = &balancer.pool.members[next.index];
    let (to_deployment, mut attempt) =
        Prepared::attempt_at(prepared, (route, step), to, next.single_try, log).ok()?;
    AttemptKind::Hedge.mark(attempt.extensions_mut());
    budget.withdraw(now);
    tracing::info!(from = %member.id(), to = %to.id(), "hedging a late answer");
    Some((next, to_deployment, attempt))
}

/// One of a hedged pair failed while the other is still out: counted against its health,
/// kept as the answer should the other fail too, and not tried again.
fn judge<RB>(
    balancer: &Balancer,
    failed: &mut Failed<RB>,
    pick: &mut Pick,
    result: Result<Response<ResponseBody<RB>>, BoxError>,
    deployment: &Deployment,
) {
    balancer.record_failure(pick.index, pick.probe.take(), &result, Instant::now());
    let member = &balancer.pool.members[pick.index];
    failed.keep(result, member, deployment.clone());
    failed.mark_tried(balancer, pick.index);
}

/// Records an attempt given up on because the other of a hedged pair answered first.
fn lost(log: &Attempts, sent: &Sent<'_>) {
    log.record_as(
        &sent.deployment.id,
        sent.deployment.model.as_ref(),
        Some(sent.kind),
        sent.started,
        Outcome::Error(ErrorKind::HedgeLost),
    );
}
