//! [`PerTry`]: one attempt, with its timeouts, record and span.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use llm_tower_core::{Attempts, BoxError, EndpointId, Error, ErrorKind, Outcome, Selected};
use tokio::time::Instant;
use tower::Service;
use tracing::Instrument;

use crate::body::ResponseBody;
use crate::policy::RetryIndex;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The per-attempt service inside [`Retry`](crate::Retry): applies the endpoint's per-try and
/// first-byte timeouts, records the attempt in the [`Attempts`] log, and traces it.
///
/// ```
/// use llm_tower_retry::{Retry, RetryLayer};
/// use tower::Layer;
///
/// // Built by the layer around your inner service.
/// let retry: Retry<()> = RetryLayer::new().layer(());
/// # let _ = retry;
/// ```
#[derive(Clone, Debug)]
pub struct PerTry<S> {
    inner: S,
}

impl<S> PerTry<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }

    llm_tower_core::define_inner_service_accessors!();
}

impl<S, B, RB> Service<Request<B>> for PerTry<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Body + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<ResponseBody<RB>>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let extensions = request.extensions();
        let selected = extensions.get::<Selected>().cloned();
        let log = extensions.get::<Attempts>().cloned();
        let retry = extensions.get::<RetryIndex>().map_or(0, |r| r.0);
        let future = self.inner.call(request);
        let id = selected.as_ref().map_or_else(
            || EndpointId::from(crate::DEFAULT_ENDPOINT),
            |s| s.id().clone(),
        );
        let span = tracing::debug_span!(
            "upstream_attempt",
            endpoint = %id,
            retry,
            outcome = tracing::field::Empty,
        );
        let attempt = async move {
            let started = Instant::now();
            let (timeout, first_byte) = selected
                .as_ref()
                .map_or((None, None), |s| (s.timeout(), s.first_byte_timeout()));
            let result = match timeout {
                None => future.await.map_err(Into::into),
                Some(limit) => match tokio::time::timeout(limit, future).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(_) => Err(Error::new(
                        ErrorKind::Timeout,
                        format!("no response head within the per-try timeout of {limit:?}"),
                    )
                    .into()),
                },
            };
            let result = match (result, first_byte) {
                (Ok(response), Some(limit)) if response.status().is_success() => {
                    wait_first_frame(response, limit).await
                }
                (result, _) => result.map(|r| r.map(ResponseBody::new)),
            };
            let outcome = Outcome::of(&result);
            tracing::Span::current().record("outcome", tracing::field::display(outcome));
            tracing::debug!(
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                "attempt finished"
            );
            if let Some(log) = &log {
                log.record(&id, retry > 0, started, outcome);
            }
            result
        };
        Box::pin(attempt.instrument(span))
    }
}

/// Waits at most `limit` for the first body frame of a 2xx response, and puts it back in
/// front of the body.
async fn wait_first_frame<RB>(
    response: Response<RB>,
    limit: Duration,
) -> Result<Response<ResponseBody<RB>>, BoxError>
where
    RB: Body,
    RB::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let mut body = Box::pin(body);
    match tokio::time::timeout(limit, body.as_mut().frame()).await {
        Err(_) => Err(Error::new(
            ErrorKind::FirstByteTimeout,
            format!("no response body within the first-byte timeout of {limit:?}"),
        )
        .into()),
        Ok(Some(Err(err))) => Err(err.into()),
        Ok(first) => {
            let first = first.and_then(Result::ok);
            Ok(Response::from_parts(
                parts,
                ResponseBody::read_ahead(first, body),
            ))
        }
    }
}
