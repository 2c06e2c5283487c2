//! The retry loop of one request, as named steps: find out what the request may do, try,
//! judge, wait, try again. It is the future of [`Retry`](crate::Retry), boxed once per
//! request; tries and waits are steps of the same future, not futures of their own.
//!
//! Not an `async fn`: what the request may do is read before the future is made, and the
//! future keeps one copy of the request and of each argument (an `async fn` keeps its
//! arguments, and again what it moves them into). The future is moved whole into its box:
//! its size is copied.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Request, Response};
use http_body::Body;
use llm_tower_core::{
    AttemptFacts, Attempts, BoxError, CooldownHint, Endpoint, EndpointId, Replay, RetryOn,
    RetryPolicy, Selected, classify, cooldown_hint,
};
use tower::Service;
use tower::retry::budget::{Budget, TpsBudget};

use crate::attempt::{Target, try_once};
use crate::backoff::backoff;
use crate::body::ResponseBody;
use crate::service::ResponseFuture;
use crate::state::RetryState;

pub(crate) fn run<S, B, RB>(
    state: RetryState,
    mut inner: S,
    mut request: Request<B>,
) -> ResponseFuture<ResponseBody<RB>>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Clone + Send + Sync + 'static,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    let facts = AttemptFacts::of(request.extensions());
    let log = facts.log().cloned();
    let selected = facts.selected().cloned();
    let deployment = facts.deployment().cloned();
    let kind = facts.kind();
    // A half-open probe is tried once: nobody waits through retries on an endpoint that is
    // probably still down.
    let max_retries = if facts.single_try() {
        0
    } else {
        policy_of(&state, selected.as_ref()).max_retries()
    };
    match &log {
        // Every try of this request is recorded here, not by the balancer.
        Some(log) => log.record_inside(),
        // No balancer outside: one may be inside (the wrong order, or a stack of one's
        // own), and each try of this layer is then a run of its own there. They all
        // record into one log, so that the answer's log has every attempt.
        None => {
            request.extensions_mut().insert(Attempts::new());
        }
    }
    let replay = (max_retries > 0).then(|| replay_of(&request));
    let mut next = Some(request);
    Box::pin(async move {
        let policy = policy_of(&state, selected.as_ref());
        let retry_on = selected
            .as_deref()
            .map_or_else(RetryOn::default, Endpoint::retry_on);
        let default_id;
        let id = if let Some(selected) = &selected {
            selected.id()
        } else {
            default_id = EndpointId::from(crate::DEFAULT_ENDPOINT);
            &default_id
        };
        let target = Target {
            selected: selected.as_ref(),
            // Tries are recorded under the deployment the balancer chose (an endpoint, or one of
            // its models); the budget stays the endpoint's.
            recorded_as: deployment.as_ref().map_or(id, |d| &d.id),
            model: deployment.as_ref().and_then(|d| d.model.as_ref()),
            log: log.as_ref(),
            kind,
        };

        let mut budget: Option<Arc<TpsBudget>> = None;
        let mut retries = 0;
        loop {
            let request = match (next.take(), &replay) {
                (Some(request), _) => request,
                (None, Some(replay)) => replay.request(),
                (None, None) => unreachable!("a retry is decided only when a replay exists"),
            };
            let mut result = try_once(&mut inner, request, &target, retries).await;
            let budget = budget.get_or_insert_with(|| {
                let budget = state.budget_for(id);
                // One deposit per request, made when its first try has finished.
                budget.deposit();
                budget
            });
            let Some(delay) = retry_delay(
                &state,
                policy,
                retry_on,
                &mut result,
                retries,
                max_retries,
                budget,
            ) else {
                return result;
            };
            retries += 1;
            let discarded = result.ok().map(Response::into_body);
            backoff(delay, discarded).await;
        }
    })
}

/// The retry policy of the endpoint a request goes to, else the layer's.
fn policy_of<'a>(state: &'a RetryState, selected: Option<&'a Selected>) -> &'a RetryPolicy {
    selected.map_or(&state.default_policy, |s| s.retry_policy())
}

/// How the request is made again: from the balancer's [`Replay`] when there is one (no copy
/// now), else from a copy made now, before the request is sent.
fn replay_of<B: Clone + Send + Sync + 'static>(request: &Request<B>) -> Replay<B> {
    if let Some(replay) = request.extensions().get::<Replay<B>>() {
        return replay.clone();
    }
    let copy = copy_of(request);
    Replay::new(move || copy_of(&copy))
}

fn copy_of<B: Clone>(request: &Request<B>) -> Request<B> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    copy
}

/// Whether to try again after `result`, and after how long: only a retryable outcome that
/// the endpoint's `retry_on` names (a timeout, by default, moves to the next deployment at
/// once instead), within the policy's count and the budget, and never sooner than the
/// upstream asked. A wait longer than `max_retry_after` is not slept: it goes on the
/// response as a [`CooldownHint`] for the balancer.
fn retry_delay<RB>(
    state: &RetryState,
    policy: &RetryPolicy,
    retry_on: RetryOn,
    result: &mut Result<Response<RB>, BoxError>,
    retries: u32,
    max_retries: u32,
    budget: &TpsBudget,
) -> Option<Duration> {
    if !classify(result).retry_same_endpoint() || !retry_on.allows(result) {
        return None;
    }
    // A 429 without Retry-After asks, through its rate-limit headers, to wait until the
    // windows it spent reset.
    let wait = result
        .as_ref()
        .ok()
        .and_then(|r| cooldown_hint(r.status(), r.headers(), SystemTime::now()));
    let max_wait = state.max_retry_after(policy);
    if let Some(wait) = wait.filter(|w| *w > max_wait) {
        tracing::debug!(
            ?wait,
            ?max_wait,
            "the wait asked for is longer than allowed; not retrying here"
        );
        if let Ok(response) = result {
            response.extensions_mut().insert(CooldownHint(wait));
        }
        return None;
    }
    if retries >= max_retries {
        return None;
    }
    if !budget.withdraw() {
        tracing::debug!("retry budget exhausted; not retrying");
        return None;
    }
    let ceiling = policy.backoff_ceiling(retries);
    let jittered = Duration::from_nanos(fastrand::u64(0..=ceiling.as_nanos() as u64));
    Some(jittered.max(wait.unwrap_or(Duration::ZERO)))
}
