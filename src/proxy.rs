//! The outermost wrapper: hop-by-hop headers, errors as responses, response headers, metrics.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum_core::body::Body;
use bytes::Bytes;
use dashmap::DashMap;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Request, Response};
use llm_tower_core::{
    Attempt, AttemptKind, Attempts, BoxError, EndpointId, Error, Outcome, strip_hop_by_hop,
};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Response header naming the endpoint whose response this is.
pub const ENDPOINT_HEADER: &str = "x-llm-tower-endpoint";
/// Response header counting the upstream attempts made.
pub const ATTEMPTS_HEADER: &str = "x-llm-tower-attempts";

#[derive(Clone, Copy, Debug, Default)]
struct Settings {
    response_headers: bool,
    metrics: bool,
    access_log: bool,
}

/// Metric handles, registered once per endpoint (and outcome) instead of once per request.
#[derive(Default)]
struct MetricHandles {
    endpoints: DashMap<EndpointId, EndpointMetrics>,
    attempts: DashMap<(EndpointId, Outcome), metrics::Counter>,
}

#[derive(Clone)]
struct EndpointMetrics {
    latency: metrics::Histogram,
    retries: metrics::Counter,
    fallbacks: metrics::Counter,
}

impl MetricHandles {
    fn record(&self, attempt: &Attempt) {
        let id = &attempt.endpoint;
        let endpoint = self.endpoints.get(id).map_or_else(
            || {
                let label = || ("endpoint", id.to_string());
                let handles = EndpointMetrics {
                    latency: metrics::histogram!("llm_tower_upstream_latency_seconds", &[label()]),
                    retries: metrics::counter!("llm_tower_retries_total", &[label()]),
                    fallbacks: metrics::counter!("llm_tower_fallbacks_total", &[label()]),
                };
                self.endpoints.insert(id.clone(), handles.clone());
                handles
            },
            |m| m.clone(),
        );
        endpoint.latency.record(attempt.latency.as_secs_f64());
        match attempt.kind {
            AttemptKind::Retry => endpoint.retries.increment(1),
            AttemptKind::Fallback => endpoint.fallbacks.increment(1),
            AttemptKind::First => {}
        }
        let key = (id.clone(), attempt.outcome);
        if let Some(counter) = self.attempts.get(&key) {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(
            "llm_tower_attempts_total",
            "endpoint" => id.to_string(),
            "outcome" => attempt.outcome.to_string()
        );
        counter.increment(1);
        self.attempts.insert(key, counter);
    }
}

/// Layer for [`Proxy`].
#[derive(Clone, Debug, Default)]
pub struct ProxyLayer {
    settings: Settings,
}

/// What every clone of a [`Proxy`] shares.
struct Shared {
    settings: Settings,
    metrics: MetricHandles,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ProxyLayer {
    /// Hop-by-hop stripping and error responses only.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds `x-llm-tower-endpoint` and `x-llm-tower-attempts` to responses.
    #[must_use]
    pub fn response_headers(mut self, on: bool) -> Self {
        self.settings.response_headers = on;
        self
    }
    /// Records attempts, retries, fallbacks and latency through the `metrics` facade.
    #[must_use]
    pub fn metrics(mut self, on: bool) -> Self {
        self.settings.metrics = on;
        self
    }
    /// Logs one `info` line per request with its status and attempts (target
    /// `llm_tower::access`).
    #[must_use]
    pub fn access_log(mut self, on: bool) -> Self {
        self.settings.access_log = on;
        self
    }
}

impl<S> Layer<S> for ProxyLayer {
    type Service = Proxy<S>;
    fn layer(&self, inner: S) -> Proxy<S> {
        Proxy {
            inner,
            shared: Arc::new(Shared {
                settings: self.settings,
                metrics: MetricHandles::default(),
            }),
            not_ready: None,
        }
    }
}

/// Outermost service of the stack: strips hop-by-hop headers both ways, turns errors into
/// OpenAI-style JSON responses (so its error type is [`Infallible`] and it fits axum's
/// `nest_service`, `route_service` and `fallback_service`), and adds optional response
/// headers, metrics and an access log.
#[derive(Debug)]
pub struct Proxy<S> {
    inner: S,
    shared: Arc<Shared>,
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for Proxy<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            not_ready: None,
        }
    }
}

impl<S> Proxy<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for Proxy<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if let Err(err) = ready!(self.inner.poll_ready(cx)) {
            // Answered as an error response by the next call.
            self.not_ready = Some(err.into());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(err) = self.not_ready.take() {
            return ResponseFuture::Failed { error: Some(err) };
        }
        strip_hop_by_hop(request.headers_mut());
        ResponseFuture::Inner {
            future: self.inner.call(request),
            shared: self.shared.clone(),
        }
    }
}

pin_project! {
    /// Future of [`Proxy`].
    #[project = Projection]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F> {
        Inner { #[pin] future: F, shared: Arc<Shared> },
        Failed { error: Option<BoxError> },
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match self.project() {
            Projection::Inner { future, shared } => {
                finish(ready!(future.poll(cx)).map_err(Into::into), shared)
            }
            Projection::Failed { error } => error_response(
                error
                    .take()
                    .unwrap_or_else(|| "polled after completion".into()),
            ),
        }))
    }
}

fn finish<RB>(result: Result<Response<RB>, BoxError>, shared: &Shared) -> Response<Body>
where
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let mut response = match result {
        Ok(response) => {
            let mut response = response.map(Body::new);
            strip_hop_by_hop(response.headers_mut());
            drop_inconsistent_length(&mut response);
            response
        }
        Err(err) => error_response(err),
    };
    let settings = shared.settings;
    let attempts = response.extensions().get::<Attempts>().cloned();
    if let Some(attempts) = attempts {
        if settings.response_headers || settings.metrics {
            let list = attempts.to_vec();
            if settings.response_headers {
                add_attempt_headers(&mut response, &list);
            }
            if settings.metrics {
                for attempt in &list {
                    shared.metrics.record(attempt);
                }
            }
        }
        if settings.access_log {
            tracing::info!(
                target: "llm_tower::access",
                status = response.status().as_u16(),
                attempts = %attempts,
                "request"
            );
        }
    }
    response
}

/// An error as the client sees it: OpenAI-style JSON with the right status.
fn error_response(err: BoxError) -> Response<Body> {
    let err = err
        .downcast::<Error>()
        .map_or_else(Error::upstream, |err| *err);
    if err.status().is_server_error() {
        tracing::warn!(kind = %err.kind(), detail = %err.detail(), "request failed");
    }
    err.to_response()
}

/// Keeps `content-length` only when it matches what the body says about itself; hyper derives
/// the framing from the body otherwise.
fn drop_inconsistent_length(response: &mut Response<Body>) {
    use http_body::Body as _;
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
    if let Some(declared) = declared {
        if declared != response.body().size_hint().exact() {
            response.headers_mut().remove(CONTENT_LENGTH);
        }
    }
}

fn add_attempt_headers(response: &mut Response<Body>, list: &[Attempt]) {
    if let Some(last) = list.last() {
        if let Ok(value) = HeaderValue::from_str(last.endpoint.as_str()) {
            response.headers_mut().insert(ENDPOINT_HEADER, value);
        }
    }
    response
        .headers_mut()
        .insert(ATTEMPTS_HEADER, HeaderValue::from(list.len()));
}

/// Publishes per-endpoint health (`llm_tower_endpoint_healthy` 1/0) and the ejection counter
/// (`llm_tower_ejections_total`) from a registry snapshot; call it before rendering metrics.
pub fn record_health_metrics(registry: &llm_tower_fallback::HealthRegistry) {
    for snapshot in registry.snapshot() {
        let endpoint = snapshot.id.to_string();
        let healthy = snapshot.status == llm_tower_fallback::Status::Healthy;
        metrics::gauge!("llm_tower_endpoint_healthy", "endpoint" => endpoint.clone())
            .set(if healthy { 1.0 } else { 0.0 });
        metrics::counter!("llm_tower_ejections_total", "endpoint" => endpoint)
            .absolute(snapshot.total_ejections);
    }
}
