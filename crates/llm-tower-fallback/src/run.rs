//! The balancer's control loop for one request, as named steps: prepare the request once,
//! pick an endpoint, send one attempt, judge the outcome, then finish or fall back.

use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use http_body::Body;
use llm_tower_core::{
    AttemptContext, AttemptKind, Attempts, BoxError, BufferedBody, Classification, ContextOverflow,
    Deployment, Error, ErrorKind, Outcome, Selected, WebSocketUpgrade, buffer_body, classify,
    informational_as_error, is_upgrade_answer,
};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::balancer::{Balancer, Route};
use crate::body::{ResponseBody, StreamWatch};
pub(crate) use crate::failed::Failed;
use crate::hedge::{self, Raced, race};
use crate::mask::mask_headers;
use crate::pool::Member;
use crate::prepared::{Prepared, deployment_extension};
use crate::resume::offer_continuation;
use crate::service::ResponseFuture;

/// One request: buffer, pick, call, judge, fall back. This is the future of
/// [`Fallback`](crate::Fallback).
///
/// Not an `async fn`: the request's head is prepared before the future is made, and the
/// future keeps one copy of it and of each argument (an `async fn` keeps its arguments, and
/// again what it moves them into). The future is moved whole into its box and when awaited:
/// its size is copied on every move.
///
/// One function, past clippy's line count: the loop's steps are named functions, and what
/// is left is their order, which reads best in one place.
#[allow(clippy::too_many_lines)]
pub(crate) fn run<S, B, RB>(
    balancer: Arc<Balancer>,
    mut inner: S,
    request: Request<B>,
) -> ResponseFuture<ResponseBody<RB>>
where
    S: Service<Request<BufferedBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let log = attempt_log(&request);
    let (head, body) = match Prepared::head(request, balancer.settings.max_body_bytes) {
        Ok(split) => split,
        Err(err) => {
            let err: BoxError = Box::new(err.with_attempts(log));
            return Box::pin(std::future::ready(Err(err)));
        }
    };
    Box::pin(async move {
        let fail = |err: Error| -> BoxError { Box::new(err.with_attempts(log.clone())) };
        let body = buffer_body(body, balancer.settings.max_body_bytes)
            .await
            .map_err(fail)?;
        let prepared = Arc::new(Prepared::new(head, body));
        let mut route = prepared.route(&balancer).map_err(fail)?;
        let (mut step, mut pick) = balancer.first_pick(&route, Instant::now()).map_err(fail)?;
        let mut failed = Failed::new();
        loop {
            let mut member = &balancer.pool.members[pick.index];
            let (mut deployment, attempt) =
                Prepared::attempt_at(&prepared, (&route, step), member, pick.single_try, &log)
                    .map_err(fail)?;
            let tries_before = log.len();
            let raced = match hedge::policy(&balancer, &prepared, &pick, &failed) {
                None => Raced {
                    result: send(
                        &mut inner,
                        attempt,
                        &balancer,
                        pick.index,
                        &deployment,
                        &log,
                        None,
                    )
                    .await,
                    hedge: None,
                },
                // Boxed: the race holds two attempts' futures, and it is only run where
                // hedging is configured.
                Some(policy) => {
                    let racing = (&balancer, &prepared, (&route, step), &log);
                    Box::pin(race(
                        policy,
                        racing,
                        &mut inner,
                        attempt,
                        &mut pick,
                        &deployment,
                        &mut failed,
                    ))
                    .await
                }
            };
            if let Some((hedge, hedge_deployment)) = raced.hedge {
                // The hedge answered (or failed last): it is the attempt judged below.
                (pick, deployment) = (hedge, hedge_deployment);
                member = &balancer.pool.members[pick.index];
            }
            let result = raced.result;
            let classification = classify(&result);
            if balancer.pool.scores_latency()
                && answered_or_timed_out(classification, &result)
                && let Some(latency) = log.last_latency()
            {
                balancer.pool.observe_latency(pick.index, latency);
            }
            match classification {
                Classification::Success => {
                    let (tries, latest) = log.latest();
                    // The clock is read only when no try was recorded.
                    let (at, latency) =
                        latest.map_or_else(|| (Instant::now(), None), |(at, l)| (at, Some(l)));
                    member
                        .health
                        .succeeded(at, latency, tries > tries_before + 1, pick.probe);
                    let mut result = result;
                    if let Ok(response) = &mut result {
                        offer_continuation(
                            &balancer, &inner, &prepared, pick.index, step, &log, response,
                        );
                    }
                    return finish(result, member, &deployment, &log);
                }
                // None says anything about the endpoint: a probe slot is released on drop.
                Classification::ClientError if overflowed(&result) => {
                    // The prompt is too long for this model: a bigger one may take it.
                    let Some(next) = balancer.context_window_pick(&mut route, step, Instant::now())
                    else {
                        return finish(result, member, &deployment, &log);
                    };
                    let to = &balancer.pool.members[next.1.index];
                    moving_on(&route, member, to, next.0, "its context window fallback");
                    failed.keep(result, member, deployment);
                    failed.tried.fill(false);
                    (step, pick) = next;
                    continue;
                }
                Classification::ClientError | Classification::Unrecognized => {
                    return finish(result, member, &deployment, &log);
                }
                Classification::Local => {
                    tracing::error!(
                        endpoint = %member.id(),
                        "this process ran out of a resource (file descriptors, memory, ports); \
                         no endpoint is blamed and nothing is retried"
                    );
                    return finish(result, member, &deployment, &log);
                }
                Classification::Retryable | Classification::BadCredentials => {}
            }

            let now = Instant::now();
            let index = pick.index;
            balancer.record_failure(index, pick.probe.take(), &result, now);
            failed.keep(result, member, deployment);
            if !member.endpoint.fallback() {
                return failed.into_result(&log);
            }
            let tried = failed.mark_tried(&balancer, index);
            let Some((next_step, next)) = balancer.fallback_pick(&route, step, &pick, tried, now)
            else {
                return failed.into_result(&log);
            };
            let to = &balancer.pool.members[next.index];
            if next_step == step {
                tracing::info!(from = %member.id(), to = %to.id(), "falling back");
            } else {
                moving_on(&route, member, to, next_step, "the next model of the chain");
            }
            (step, pick) = (next_step, next);
        }
    })
}

/// Logs a move from `from` to `to`, a deployment of another model (the route's step `step`).
fn moving_on(route: &Route<'_>, from: &Member, to: &Member, step: usize, why: &str) {
    tracing::info!(
        from = %from.id(),
        to = %to.id(),
        model = route.model(step).map_or("", |m| &**m),
        "going on to {why}"
    );
}

/// Whether a response is a 400 saying the prompt does not fit the model's context window (the
/// retry layer read its body and said so).
fn overflowed<RB>(result: &Result<Response<RB>, BoxError>) -> bool {
    result
        .as_ref()
        .is_ok_and(|response| response.extensions().get::<ContextOverflow>().is_some())
}

/// Whether an outcome says how fast the deployment is, for `least_latency`: a success (its
/// latency to the first byte; the log's last try, so retries' backoffs do not count), or a
/// timeout (a lower bound that must weigh against it). Connect errors and error statuses
/// come back fast from a broken deployment: health deals with them, not the score.
fn answered_or_timed_out<R>(classification: Classification, result: &Result<R, BoxError>) -> bool {
    match (classification, result) {
        (Classification::Success, _) => true,
        (Classification::Retryable, Err(err)) => matches!(
            ErrorKind::of(&**err),
            ErrorKind::Timeout | ErrorKind::FirstByteTimeout
        ),
        _ => false,
    }
}

/// Sends one attempt (which the retry layer inside may turn into several tries) and records
/// it, as `kind` when given (else derived), when no layer inside records tries itself. An
/// informational answer is a protocol failure, never a response, but for the `101` to a
/// WebSocket upgrade asked for. Not an `async fn`, so that its future holds the attempt
/// once, not also as the argument it came in.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send<'a, S, RB>(
    inner: &'a mut S,
    attempt: Request<BufferedBody>,
    balancer: &'a Arc<Balancer>,
    member: usize,
    deployment: &'a Deployment,
    log: &'a Attempts,
    kind: Option<AttemptKind>,
) -> impl Future<Output = Result<Response<ResponseBody<RB>>, BoxError>> + 'a
where
    S: Service<Request<BufferedBody>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: 'a,
{
    let started = Instant::now();
    let member = &balancer.pool.members[member];
    // The attempt counts as in flight until its response body ends (streams included).
    let in_flight = member.health.start_attempt();
    let upgrade = attempt.extensions().get::<WebSocketUpgrade>().is_some();
    async move {
        // The readiness error is converted before the call is awaited: `S::Error` need not be
        // `Send`.
        let call = match inner.ready().await {
            Ok(service) => Ok(service.call(attempt)),
            Err(err) => Err(err.into()),
        };
        let result = match call {
            Ok(future) => future.await.map_err(Into::into),
            Err(err) => Err(err),
        };
        let result = match result {
            Ok(response) if is_upgrade_answer(&response, upgrade) => Ok(response),
            result => informational_as_error(result),
        };
        if let Ok(response) = &result {
            // Every answer's rate-limit headers, whatever its status: a deployment nearly out of
            // its window is skipped before it answers 429.
            member.health.read_rate_limits(response.headers());
        }
        if !log.is_recorded_inside() {
            log.record_as(
                &deployment.id,
                deployment.model.as_ref(),
                kind,
                started,
                Outcome::of(&result),
            );
        }
        let watch = StreamWatch {
            in_flight,
            endpoint: member.endpoint.clone(),
            log: log.clone(),
            // The latest record is this attempt's final try (the retry layer records each try).
            attempt: log.len().saturating_sub(1),
            counted: false,
            idle_timeout: member.endpoint.stream_idle_timeout(),
            idle: None,
            last_frame: None,
            idle_waker: None,
        };
        result.map(|response| response.map(|body| ResponseBody::new(body, watch)))
    }
}

/// The request's attempt log: the one a layer further out began, if any (a retry layer
/// put outside the balancer sends it the same request again, and every attempt goes in that
/// one log), else a new one.
fn attempt_log<B>(request: &Request<B>) -> Attempts {
    Attempts::of(request.extensions())
        .cloned()
        .unwrap_or_default()
}

/// The response carries the attempt log and the endpoint that answered; the headers of an
/// endpoint with a key (and the body of an error response) are checked for that key, which
/// the client must never see.
pub(crate) fn annotate<RB>(
    mut response: Response<ResponseBody<RB>>,
    selected: Selected,
    deployment: &Deployment,
    log: &Attempts,
) -> Response<ResponseBody<RB>> {
    if let Some(key) = selected.api_key() {
        mask_headers(response.headers_mut(), key);
        if !response.status().is_success() {
            response.headers_mut().remove(http::header::CONTENT_LENGTH);
            response.body_mut().mask_key(key.clone());
        }
    }
    let mut context = AttemptContext::new(selected, log.clone());
    // Where this balancer says nothing, what the answer said on its own stays.
    context.deployment = deployment_extension(deployment, &context.selected)
        .or_else(|| Deployment::of(response.extensions()).cloned());
    response.extensions_mut().insert(context);
    response
}

pub(crate) fn upstream_error(err: BoxError, log: &Attempts) -> BoxError {
    Box::new(Error::upstream(err).with_attempts(log.clone()))
}

/// A success, client error, unrecognised or local error, returned as it came.
fn finish<RB>(
    result: Result<Response<ResponseBody<RB>>, BoxError>,
    member: &Member,
    deployment: &Deployment,
    log: &Attempts,
) -> Result<Response<ResponseBody<RB>>, BoxError> {
    match result {
        Ok(response) => Ok(annotate(
            response,
            Selected(member.endpoint.clone()),
            deployment,
            log,
        )),
        Err(err) => Err(upstream_error(err, log)),
    }
}
