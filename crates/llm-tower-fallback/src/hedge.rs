//! Hedging: an attempt whose first byte is late (`hedge.after`) is sent to the next
//! deployment as well; the first of the two to answer is the answer, and the other is
//! cancelled (its connection dropped, recorded as `hedge_lost`, nothing held against its
//! health). At most one hedge per request, and at most `max_percent` of an endpoint's
//! requests (a budget like the retry budget, tower's `TpsBudget`).
//!
//! An attempt's future ends when its answer's head and first body frame are in (the retry
//! layer reads that far ahead), so the race is over before any byte reaches the client: a
//! request is never hedged once its client has bytes.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use llm_tower_core::{
    AttemptKind, Attempts, BoxError, BufferedBody, Classification, Deployment, ErrorKind, Hedge,
    Outcome, classify,
};
use tokio::time::Instant;
use tower::Service;
use tower::retry::budget::{Budget, TpsBudget};

use crate::balancer::{Balancer, Route};
use crate::body::ResponseBody;
use crate::pool::Pick;
use crate::run::{Failed, Prepared, send};

/// How long the budget remembers requests.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// One endpoint's hedging: when, and how much of its traffic may be hedged.
pub(crate) struct HedgePolicy {
    after: Duration,
    budget: TpsBudget,
}

impl HedgePolicy {
    pub(crate) fn new(hedge: Hedge) -> Self {
        Self {
            after: hedge.after,
            // No floor: a quiet endpoint is not hedged more than the share allows.
            budget: TpsBudget::new(BUDGET_WINDOW, 0, hedge.max_percent as f32 / 100.0),
        }
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

/// Sends `attempt` on `pick` (its `deployment`); unless the request was `hedged` already,
/// hedged when the deployment's endpoint hedges and the answer is late. A failure of one of
/// the two while the other is still out is judged here (its health, `failed`); the result
/// is the first success, else the later failure.
pub(crate) async fn race<S, RB>(
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
    let member = &balancer.pool.members[pick.index];
    let policy = member.hedge.as_ref().filter(|_| !failed.hedged);
    let Some(policy) = policy else {
        let result = send(inner, attempt, balancer, pick.index, deployment, log).await;
        return Raced {
            result,
            hedge: None,
        };
    };
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
    let mut first = pin!(send(inner, attempt, balancer, pick.index, deployment, log));
    policy.budget.deposit();
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
        log
    ));
    let (mut first_out, mut second_out) = (false, false);
    loop {
        tokio::select! {
            result = &mut first, if !first_out => {
                if classify(&result) == Classification::Success || second_out {
                    if !second_out {
                        lost(log, &second_sent);
                    }
                    return Raced { result, hedge: None };
                }
                // The first failed; the hedge is still out.
                first_out = true;
                judge(balancer, failed, pick, result, deployment);
            }
            result = &mut second, if !second_out => {
                if classify(&result) == Classification::Success || first_out {
                    if !first_out {
                        lost(log, &first_sent);
                    }
                    return Raced { result, hedge: Some((next, to_deployment.clone())) };
                }
                // The hedge failed; the first is still out.
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
    let tried = failed.mark_tried(balancer, pick.index);
    let next = balancer.hedge_pick(route, step, pick, tried, Instant::now());
    tried[pick.index] = false;
    let member = &balancer.pool.members[pick.index];
    let next = next.filter(|_| member.hedge.as_ref().is_some_and(|p| p.budget.withdraw()))?;
    let to = &balancer.pool.members[next.index];
    let (to_deployment, mut attempt) =
        Prepared::attempt_at(prepared, (route, step), to, next.single_try, log).ok()?;
    attempt.extensions_mut().insert(AttemptKind::Hedge);
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
