//! `RetryLayer`: retry what is worth retrying, on the same endpoint, politely.
//!
//! Built on [`tower::retry`]. For each request the policy comes from the [`Selected`]
//! endpoint (or a layer-level default when there is none):
//!
//! - only retryable outcomes are retried (connect errors, per-try timeouts, resets before the
//!   response head, 408, 429, 500, 502, 503, 504, 529; see [`llm_tower_core::classify`]);
//! - `NoRetry`, `CountBased` (immediate) or `ExponentialBackoff` (full jitter);
//! - `Retry-After` (`retry-after`, `retry-after-ms`, `x-ms-retry-after-ms`) is honoured: the
//!   next attempt waits at least that long. A wait longer than `max_retry_after` is not slept:
//!   the response is returned with a [`CooldownHint`] so the balancer cools the endpoint down
//!   and moves on;
//! - a per-endpoint retry budget ([`TpsBudget`]) caps the extra load retries add;
//! - the endpoint's `timeout` bounds the wait for the response head of each try, and its
//!   optional `first_byte_timeout` bounds the wait for the first body frame of a 2xx
//!   response (the frame is then passed on, never lost or duplicated);
//! - a response that is retried is drained (at most 64 KiB, only while the backoff runs) so
//!   its connection can be reused, else dropped;
//! - every attempt is appended to the request's [`Attempts`] log and is a tracing span;
//! - dropping the response future stops everything: no further attempt, no timer.
//!
//! Requests must have a clonable body; use llm-tower-core's
//! [`BufferedBody`](llm_tower_core::BufferedBody) (the balancer buffers for you) so every attempt
//! sends identical bytes.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use http::{Request, Response, StatusCode};
//! use llm_tower_core::{BufferedBody, CountBased, Endpoint, RetryPolicy, Selected};
//! use llm_tower_retry::RetryLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let upstream = {
//!     let calls = calls.clone();
//!     service_fn(move |_req: Request<BufferedBody>| {
//!         // 503 twice, then 200.
//!         let status = if calls.fetch_add(1, Ordering::SeqCst) < 2 { 503 } else { 200 };
//!         async move {
//!             let response = Response::builder().status(status).body(String::new()).unwrap();
//!             Ok::<_, std::convert::Infallible>(response)
//!         }
//!     })
//! };
//! let service = ServiceBuilder::new().layer(RetryLayer::new()).service(upstream);
//!
//! let endpoint = Endpoint::builder("main", "http://127.0.0.1:9")
//!     .retry_policy(RetryPolicy::CountBased(CountBased { times: 2 }))
//!     .build()
//!     .unwrap();
//! let mut request = Request::new(BufferedBody::from(bytes::Bytes::from_static(b"{}")));
//! request.extensions_mut().insert(Selected(Arc::new(endpoint)));
//!
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use dashmap::DashMap;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use llm_tower_core::{
    Attempts, BoxError, CooldownHint, EndpointId, Error, ErrorKind, Outcome, RetryBudgetConfig,
    RetryPolicy, Selected, classify, retry_after,
};
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service};
use tracing::Instrument;

/// At most this much of a discarded response body is read so its connection can be reused.
pub const DRAIN_LIMIT: usize = 64 * 1024;

/// `max_retry_after` for policies without a `max_interval` (`NoRetry`, `CountBased`).
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

#[derive(Clone)]
struct Shared {
    default_policy: RetryPolicy,
    budget: RetryBudgetConfig,
    max_retry_after: Option<Duration>,
    budgets: Arc<DashMap<EndpointId, Arc<TpsBudget>>>,
}

impl Shared {
    fn budget_for(&self, id: &EndpointId) -> Arc<TpsBudget> {
        if let Some(budget) = self.budgets.get(id) {
            return budget.clone();
        }
        self.budgets
            .entry(id.clone())
            .or_insert_with(|| {
                let b = self.budget;
                Arc::new(TpsBudget::new(b.ttl, b.min_per_second, b.percent / 100.0))
            })
            .clone()
    }
}

/// Layer that retries; see the [crate documentation](crate).
#[derive(Clone)]
pub struct RetryLayer {
    shared: Shared,
}

impl fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("default_policy", &self.shared.default_policy)
            .field("budget", &self.shared.budget)
            .field("max_retry_after", &self.shared.max_retry_after)
            .finish_non_exhaustive()
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// The endpoint id budgets are kept under for requests without a [`Selected`] endpoint.
const DEFAULT_ENDPOINT: &str = "default";

impl RetryLayer {
    /// A layer with the default policy (`ExponentialBackoff` defaults) for requests without a
    /// [`Selected`] endpoint, the default budget (20 % + 10/s over 10 s) and `max_retry_after`
    /// from each policy.
    pub fn new() -> Self {
        Self {
            shared: Shared {
                default_policy: RetryPolicy::default(),
                budget: RetryBudgetConfig::default(),
                max_retry_after: None,
                budgets: Arc::new(DashMap::new()),
            },
        }
    }

    /// The policy for requests without a [`Selected`] endpoint.
    #[must_use]
    pub fn default_policy(mut self, policy: RetryPolicy) -> Self {
        self.shared.default_policy = policy;
        self
    }

    /// The retry budget kept per endpoint.
    ///
    /// # Panics
    ///
    /// When `percent` is outside 0..=1000 or `ttl` outside 1 s..=60 s
    /// ([`Config::validate`](llm_tower_core::Config::validate) checks this at load).
    #[must_use]
    pub fn budget(mut self, budget: RetryBudgetConfig) -> Self {
        assert!(
            (0.0..=1000.0).contains(&budget.percent),
            "retry budget percent must be between 0 and 1000"
        );
        assert!(
            (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&budget.ttl),
            "retry budget ttl must be between 1s and 60s"
        );
        self.shared.budget = budget;
        self.shared.budgets = Arc::new(DashMap::new());
        self
    }

    /// The longest `Retry-After` wait that is slept before retrying; longer waits stop the
    /// retries and become a [`CooldownHint`]. Default: the policy's `max_interval`, or 5 s.
    #[must_use]
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.shared.max_retry_after = Some(max);
        self
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner: tower::retry::Retry::new(
                EndpointPolicy {
                    shared: self.shared.clone(),
                    retries: 0,
                    budget: None,
                },
                PerTry { inner },
            ),
        }
    }
}

/// Service that retries; built by [`RetryLayer`].
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: tower::retry::Retry<EndpointPolicy, PerTry<S>>,
}

impl<S> Retry<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner.get_ref().inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner.get_mut().inner
    }
    /// Consumes the layer, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().inner
    }
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Clone,
    RB: Body + Unpin + Send + 'static,
    RB::Data: Send + Unpin,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = tower::retry::future::ResponseFuture<EndpointPolicy, PerTry<S>, Request<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.inner.call(request)
    }
}

/// Marks a request clone as retry number `n` (1-based) for [`PerTry`].
#[derive(Clone, Copy, Debug)]
struct RetryIndex(u32);

/// The [`tower::retry::Policy`] of [`Retry`]: reads the endpoint's [`RetryPolicy`] from
/// [`Selected`], applies the budget and `Retry-After`, and drains discarded responses.
#[derive(Clone)]
pub struct EndpointPolicy {
    shared: Shared,
    /// Retries made so far for this request.
    retries: u32,
    /// This request's endpoint budget, looked up once.
    budget: Option<Arc<TpsBudget>>,
}

impl fmt::Debug for EndpointPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointPolicy")
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// The endpoint's policy, or the layer's default for requests without [`Selected`].
fn policy_for<'a>(default: &'a RetryPolicy, selected: Option<&'a Selected>) -> &'a RetryPolicy {
    selected.map_or(default, |s| s.retry_policy())
}

impl<B, RB> tower::retry::Policy<Request<B>, Response<ResponseBody<RB>>, BoxError>
    for EndpointPolicy
where
    B: Clone,
    RB: Body + Unpin + Send + 'static,
    RB::Data: Send + Unpin,
{
    type Future = BoxFuture<()>;

    fn retry(
        &mut self,
        request: &mut Request<B>,
        result: &mut Result<Response<ResponseBody<RB>>, BoxError>,
    ) -> Option<Self::Future> {
        let selected = request.extensions().get::<Selected>();
        let budget = self.budget.get_or_insert_with(|| {
            let id =
                selected.map_or_else(|| EndpointId::from(DEFAULT_ENDPOINT), |s| s.id().clone());
            let budget = self.shared.budget_for(&id);
            // One deposit per request, made when its first attempt has finished.
            budget.deposit();
            budget
        });
        if !classify(result).retry_same_endpoint() {
            return None;
        }
        let policy = policy_for(&self.shared.default_policy, selected);
        let wait = result.as_ref().ok().and_then(|r| retry_after(r.headers()));
        let max_wait = self
            .shared
            .max_retry_after
            .or_else(|| policy.max_interval())
            .unwrap_or(DEFAULT_MAX_RETRY_AFTER);
        if let Some(wait) = wait.filter(|w| *w > max_wait) {
            tracing::debug!(
                ?wait,
                ?max_wait,
                "Retry-After longer than allowed; not retrying here"
            );
            if let Ok(response) = result {
                response.extensions_mut().insert(CooldownHint(wait));
            }
            return None;
        }
        if self.retries >= policy.max_retries() {
            return None;
        }
        if !budget.withdraw() {
            tracing::debug!("retry budget exhausted; not retrying");
            return None;
        }
        let ceiling = policy.backoff_ceiling(self.retries);
        let jittered = Duration::from_nanos(fastrand::u64(0..=ceiling.as_nanos() as u64));
        let delay = jittered.max(wait.unwrap_or(Duration::ZERO));
        self.retries += 1;
        request.extensions_mut().insert(RetryIndex(self.retries));
        let discarded = result
            .as_mut()
            .ok()
            .map(|r| std::mem::replace(r.body_mut(), ResponseBody::empty()));
        Some(Box::pin(backoff(delay, discarded)))
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        let policy = policy_for(
            &self.shared.default_policy,
            request.extensions().get::<Selected>(),
        );
        if self.retries >= policy.max_retries() {
            // No retry can follow this attempt: skip the copy.
            return None;
        }
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.version_mut() = request.version();
        *clone.headers_mut() = request.headers().clone();
        *clone.extensions_mut() = request.extensions().clone();
        Some(clone)
    }
}

/// Sleeps `delay`, draining the discarded response body meanwhile (at most [`DRAIN_LIMIT`]).
async fn backoff<RB>(delay: Duration, discarded: Option<ResponseBody<RB>>)
where
    RB: Body + Unpin,
    RB::Data: Unpin,
{
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    if let Some(mut body) = discarded {
        let drain = async {
            let mut read = 0;
            while read <= DRAIN_LIMIT {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Buf::remaining),
                    _ => break,
                }
            }
        };
        tokio::select! {
            biased;
            () = drain => {}
            () = &mut sleep => return,
        }
    }
    sleep.await;
}

/// The per-attempt service inside [`Retry`]: applies the endpoint's per-try and first-byte
/// timeouts, records the attempt in the [`Attempts`] log, and traces it.
#[derive(Clone, Debug)]
pub struct PerTry<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for PerTry<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Body + Unpin + Send + 'static,
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
        let id = selected
            .as_ref()
            .map_or_else(|| EndpointId::from(DEFAULT_ENDPOINT), |s| s.id().clone());
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

async fn wait_first_frame<RB>(
    response: Response<RB>,
    limit: Duration,
) -> Result<Response<ResponseBody<RB>>, BoxError>
where
    RB: Body + Unpin,
    RB::Error: Into<BoxError>,
{
    let (parts, mut body) = response.into_parts();
    match tokio::time::timeout(limit, body.frame()).await {
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
                ResponseBody {
                    first,
                    inner: Some(body),
                },
            ))
        }
    }
}

/// The response body of [`Retry`]: the upstream body, with the first frame that was read
/// ahead for `first_byte_timeout` put back in front. It streams through unbuffered.
pub struct ResponseBody<B: Body> {
    first: Option<Frame<B::Data>>,
    inner: Option<B>,
}

impl<B: Body> ResponseBody<B> {
    /// Wraps a body.
    pub fn new(body: B) -> Self {
        Self {
            first: None,
            inner: Some(body),
        }
    }

    /// A body with nothing in it.
    pub fn empty() -> Self {
        Self {
            first: None,
            inner: None,
        }
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("read_ahead", &self.first.is_some())
            .field("empty", &self.inner.is_none())
            .finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body + Unpin,
    B::Data: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut this.inner {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self
            .inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        if let Some(data) = self.first.as_ref().and_then(Frame::data_ref) {
            let extra = data.remaining() as u64;
            let mut adjusted = SizeHint::new();
            adjusted.set_lower(hint.lower() + extra);
            if let Some(upper) = hint.upper() {
                adjusted.set_upper(upper + extra);
            }
            hint = adjusted;
        }
        hint
    }
}
