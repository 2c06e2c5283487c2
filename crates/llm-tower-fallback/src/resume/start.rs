//! How the run offers a stream's body its continuation: [`offer_continuation`] gives the
//! body of a 2xx event stream a [`Resume`] whose [`Start`] asks a `continuation: prefill`
//! deployment for the rest, through the same inner stack as any attempt.

use std::sync::Arc;

use http::{Request, Response};
use llm_tower_core::{
    AttemptKind, Attempts, BoxError, BufferedBody, ClientApi, ModelRoute, classify, is_event_stream,
};
use tokio::time::Instant;
use tower::Service;

use super::{Asked, Resume, Start, prefill};
use crate::balancer::Balancer;
use crate::body::ResponseBody;
use crate::prepared::{Prepared, deployment};
use crate::run::send;

/// When the balancer can continue streams and `response` (from `index`, at the route's step
/// `step`) is one, its body is given what a continuation needs, should it break.
pub(crate) fn offer_continuation<S, RB>(
    balancer: &Arc<Balancer>,
    inner: &S,
    prepared: &Arc<Prepared>,
    index: usize,
    step: usize,
    log: &Attempts,
    response: &mut Response<ResponseBody<RB>>,
) where
    S: Service<Request<BufferedBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    if !balancer.continues()
        || !response.status().is_success()
        || !is_event_stream(response.headers())
    {
        return;
    }
    let api = ClientApi::of_path(prepared.target.path());
    let start = resume_start(balancer, inner, prepared, index, step, log, api);
    if let Some(resume) = Resume::new(api, start, balancer.settings.max_continuations) {
        response.body_mut().resume_with(resume);
    }
}

/// How the body asks for the continuation of a stream that `broken` broke off at the route's
/// step `step`: a deployment that declares `continuation: prefill` (not `broken`, nor one
/// whose own continuation broke) is sent the request with the text so far; its answer counts
/// for its health like any attempt's.
fn resume_start<S, RB>(
    balancer: &Arc<Balancer>,
    inner: &S,
    prepared: &Arc<Prepared>,
    broken: usize,
    step: usize,
    log: &Attempts,
    api: ClientApi,
) -> Start<RB>
where
    S: Service<Request<BufferedBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let (balancer, inner, prepared, log) = (
        balancer.clone(),
        inner.clone(),
        prepared.clone(),
        log.clone(),
    );
    let mut broken = broken;
    Box::new(move |delivered: &str| {
        let request = prepared.body.to_bytes();
        let route = balancer.route(&request).ok()?;
        let (at, pick) = balancer.continuation_pick(&route, step, broken, Instant::now())?;
        let member = &balancer.pool.members[pick.index];
        let model = route
            .model(at)
            .map(|model| member.route.as_ref().map_or(model, ModelRoute::upstream));
        let body = prefill(api, &request, delivered, model.map(|m| &**m))?;
        let deployment = deployment(&route, at, member);
        let mut attempt =
            Prepared::attempt(&prepared, member, &deployment, true, &log, body.into()).ok()?;
        AttemptKind::Continuation.mark(attempt.extensions_mut());
        broken = pick.index;
        let (balancer, mut inner, log) = (balancer.clone(), inner.clone(), log.clone());
        let asked: Asked<RB> = Box::pin(async move {
            let result = send(
                &mut inner,
                attempt,
                &balancer,
                pick.index,
                &deployment,
                &log,
                None,
            )
            .await;
            let streams = result.as_ref().is_ok_and(|response| {
                response.status().is_success() && is_event_stream(response.headers())
            });
            if !streams {
                // Refused or failed: the broken stream's failure is what the client hears.
                if classify(&result).counts_against_health() {
                    balancer.record_failure(pick.index, pick.probe, &result, Instant::now());
                }
                return None;
            }
            let (at, latency) = log
                .latest()
                .1
                .map_or((Instant::now(), None), |(at, l)| (at, Some(l)));
            let member = &balancer.pool.members[pick.index];
            member.health.succeeded(at, latency, false, pick.probe);
            let (body, watch) = result.ok()?.into_body().into_parts();
            Some((body?, watch?))
        });
        Some(asked)
    })
}
