//! `FallbackLayer`: pick an endpoint, stay away from endpoints that are failing, let them back
//! in carefully, and fall back until a request succeeds.
//!
//! Per request the balancer
//!
//! 1. buffers the body once, up to `max_body_bytes` (over the cap: an
//!    [`ErrorKind::BodyTooLarge`] error, 413, and nothing is sent upstream);
//! 2. picks an endpoint: the best available `priority` tier first, then the strategy
//!    (round-robin, smooth weighted round-robin, or least-in-flight by power of two choices);
//!    endpoints that are cooling down are skipped, and after a cooldown exactly one request
//!    goes through as a probe;
//! 3. rewrites the URI to `base_url + path_and_query` (an absolute-form request URI never
//!    changes the destination), drops the inbound `Host`, inserts [`Selected`] and the
//!    [`Attempts`] log, and calls the inner service (typically retry → auth → client);
//! 4. on a failure that [`classify`] marks as falling back, counts it against the endpoint's
//!    health and tries the next untried endpoint (the rest of the tier, wrapping around, then
//!    the next tiers) unless the endpoint has `fallback: false`; other 4xx are returned at once
//!    and leave health alone;
//! 5. returns the first success, or the last upstream response as it came, or — when no
//!    response was ever received — an [`Error`] (502/503/504). Either way the [`Attempts`] list
//!    travels in the extensions.
//!
//! Health lives in a [`HealthRegistry`] (a `DashMap` keyed by endpoint id) that can be shared
//! between stacks and shown on an admin endpoint with [`HealthRegistry::snapshot`].
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use llm_tower_core::{BufferedBody, Endpoint, Selected};
//! use llm_tower_fallback::{FallbackLayer, HealthRegistry};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let endpoints = vec![
//!     Endpoint::builder("primary", "http://10.0.0.1/v1").build().unwrap(),
//!     Endpoint::builder("backup", "http://10.0.0.2/v1").priority(1).build().unwrap(),
//! ];
//! let registry = HealthRegistry::new();
//! let layer = FallbackLayer::builder(endpoints).build(registry.clone()).unwrap();
//!
//! // A stand-in upstream: the primary is down, the backup answers.
//! let upstream = service_fn(|req: Request<BufferedBody>| async move {
//!     let endpoint = req.extensions().get::<Selected>().unwrap().id().to_string();
//!     let status = if endpoint == "primary" { 503 } else { 200 };
//!     let response = Response::builder().status(status).body(endpoint).unwrap();
//!     Ok::<_, std::convert::Infallible>(response)
//! });
//! let service = ServiceBuilder::new().layer(layer).service(upstream);
//!
//! let response = service.oneshot(Request::new(String::from("{}"))).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.body().get_ref(), "backup");
//! // The primary is now cooling down.
//! assert_eq!(registry.get("primary").unwrap().status, llm_tower_fallback::Status::Ejected);
//! # }
//! ```

mod health;
mod select;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use llm_tower_core::{
    Attempts, BoxError, BufferedBody, Classification, Config, ConfigError, CooldownHint,
    DEFAULT_MAX_BODY_BYTES, Endpoint, Error, ErrorKind, MAX_COOLDOWN_LIMIT, Outcome, Selected,
    Strategy, WhenAllUnhealthy, buffer_request, classify, retry_after, strip_hop_by_hop,
};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use health::HealthPolicy;
pub use health::{EndpointSnapshot, HealthRegistry, Status};
use select::{Pick, Pool, Soonest};

/// Builder for [`FallbackLayer`]; see [`FallbackLayer::builder`].
#[derive(Debug)]
pub struct FallbackBuilder {
    endpoints: Vec<Endpoint>,
    strategy: Strategy,
    when_all_unhealthy: WhenAllUnhealthy,
    max_body_bytes: usize,
    unhealthy_threshold: u32,
    max_cooldown: Duration,
}

impl FallbackBuilder {
    /// Selection strategy (default round-robin).
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }
    /// What to do when every candidate is cooling down (default: try the soonest).
    #[must_use]
    pub fn when_all_unhealthy(mut self, when: WhenAllUnhealthy) -> Self {
        self.when_all_unhealthy = when;
        self
    }
    /// Cap for buffered request bodies (default 32 MiB).
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }
    /// Consecutive exhausted requests before an ejection (default 1).
    #[must_use]
    pub fn unhealthy_threshold(mut self, threshold: u32) -> Self {
        self.unhealthy_threshold = threshold;
        self
    }
    /// Cap for escalating cooldowns and `Retry-After` hints (default 60 s).
    #[must_use]
    pub fn max_cooldown(mut self, max: Duration) -> Self {
        self.max_cooldown = max;
        self
    }

    /// Validates and builds the layer over `registry`.
    ///
    /// # Errors
    ///
    /// No endpoints, duplicate ids, a zero threshold, body cap or cooldown cap.
    pub fn build(self, registry: HealthRegistry) -> Result<FallbackLayer, ConfigError> {
        let invalid = |field: &str, message: &str| ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        };
        if self.endpoints.is_empty() {
            return Err(invalid("endpoints", "at least one endpoint is required"));
        }
        let mut ids: Vec<&str> = self.endpoints.iter().map(|e| e.id().as_str()).collect();
        ids.sort_unstable();
        if let Some(dup) = ids.windows(2).find_map(|pair| match pair {
            [a, b] if a == b => Some(*a),
            _ => None,
        }) {
            return Err(invalid("endpoints", &format!("duplicate id `{dup}`")));
        }
        if self.unhealthy_threshold == 0 {
            return Err(invalid("unhealthy_threshold", "must be at least 1"));
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("max_body_bytes", "must be at least 1"));
        }
        if self.max_cooldown.is_zero() || self.max_cooldown > MAX_COOLDOWN_LIMIT {
            return Err(invalid(
                "max_cooldown",
                "must be greater than zero and at most 24h",
            ));
        }
        Ok(FallbackLayer {
            shared: Arc::new(Shared {
                pool: Pool::new(self.endpoints, &registry, self.strategy),
                registry,
                when_all_unhealthy: self.when_all_unhealthy,
                max_body_bytes: self.max_body_bytes,
                health: HealthPolicy {
                    unhealthy_threshold: self.unhealthy_threshold,
                    max_cooldown: self.max_cooldown,
                },
            }),
        })
    }
}

struct Shared {
    pool: Pool,
    registry: HealthRegistry,
    when_all_unhealthy: WhenAllUnhealthy,
    max_body_bytes: usize,
    health: HealthPolicy,
}

impl Shared {
    /// The first endpoint for a request, or what `when_all_unhealthy` says.
    fn first_pick(&self, now: Instant) -> Result<Pick, Error> {
        let mut soonest = Soonest::default();
        match self.pool.first(now, &mut soonest) {
            Some(pick) => Ok(pick),
            None => when_all_unhealthy(self, &soonest),
        }
    }

    /// The endpoint to fall back to after `failed`, if any.
    fn fallback_pick(&self, failed: usize, tried: &[bool], now: Instant) -> Option<Pick> {
        let mut soonest = Soonest::default();
        self.pool
            .next(failed, tried, now, &mut soonest)
            .or_else(|| {
                let (index, _) = soonest.0?;
                (self.when_all_unhealthy == WhenAllUnhealthy::TrySoonest)
                    .then_some(Pick { index, probe: None })
            })
    }

    /// Counts a failed request against the endpoint, with the upstream's cooldown hint.
    fn record_failure<RB>(
        &self,
        member: &select::Member,
        probe: Option<health::ProbeGuard>,
        result: &Result<Response<RB>, BoxError>,
        now: Instant,
    ) {
        let hint = result.as_ref().ok().and_then(|response| {
            response
                .extensions()
                .get::<CooldownHint>()
                .map(|h| h.0)
                .or_else(|| retry_after(response.headers()))
        });
        let endpoint = &member.endpoint;
        if let Some(cooldown) = member.health.record_failure(
            now,
            endpoint.health_check_interval(),
            hint,
            probe,
            self.health,
        ) {
            tracing::warn!(
                endpoint = %endpoint.id(),
                cooldown_ms = cooldown.as_millis() as u64,
                "endpoint ejected"
            );
        }
    }
}

/// Layer that balances and falls back; see the [crate documentation](crate).
#[derive(Clone)]
pub struct FallbackLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for FallbackLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<_> = self
            .shared
            .pool
            .members
            .iter()
            .map(|m| m.endpoint.id())
            .collect();
        f.debug_struct("FallbackLayer")
            .field("endpoints", &ids)
            .field("when_all_unhealthy", &self.shared.when_all_unhealthy)
            .field("max_body_bytes", &self.shared.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl FallbackLayer {
    /// Starts a builder over these endpoints (order matters for ties in priority).
    pub fn builder(endpoints: impl IntoIterator<Item = Endpoint>) -> FallbackBuilder {
        FallbackBuilder {
            endpoints: endpoints.into_iter().collect(),
            strategy: Strategy::default(),
            when_all_unhealthy: WhenAllUnhealthy::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            unhealthy_threshold: 1,
            max_cooldown: Duration::from_secs(60),
        }
    }

    /// A layer from a loaded [`Config`].
    ///
    /// # Errors
    ///
    /// Any validation error of the configuration.
    pub fn from_config(config: &Config, registry: HealthRegistry) -> Result<Self, ConfigError> {
        Self::builder(config.build_endpoints()?)
            .strategy(config.strategy)
            .when_all_unhealthy(config.when_all_unhealthy)
            .max_body_bytes(config.max_body_bytes)
            .unhealthy_threshold(config.unhealthy_threshold)
            .max_cooldown(config.max_cooldown)
            .build(registry)
    }

    /// The health registry this layer reports to.
    pub fn registry(&self) -> &HealthRegistry {
        &self.shared.registry
    }

    /// The endpoints, sorted by priority.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.shared.pool.members.iter().map(|m| &m.endpoint)
    }

    /// The request body cap.
    pub fn max_body_bytes(&self) -> usize {
        self.shared.max_body_bytes
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;

    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Service that balances and falls back; built by [`FallbackLayer`].
#[derive(Clone)]
pub struct Fallback<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Fallback<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Fallback<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Consumes the layer, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The future of [`Fallback`]: the whole control loop, boxed once per request.
pub type ResponseFuture<RB> = Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

impl<S, B, RB> Service<Request<B>> for Fallback<S>
where
    S: Service<Request<BufferedBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    RB: Send + 'static,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<ResponseBody<RB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready service goes into the future; this one keeps a fresh clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(run(self.shared.clone(), inner, request))
    }
}

/// One request: buffer, pick, call, judge, fall back.
async fn run<S, B, RB>(
    shared: Arc<Shared>,
    mut inner: S,
    request: Request<B>,
) -> Result<Response<ResponseBody<RB>>, BoxError>
where
    S: Service<Request<BufferedBody>, Response = Response<RB>> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send,
    B::Error: Into<BoxError>,
{
    let log = Attempts::new();
    let fail =
        |err: Error, log: &Attempts| -> BoxError { Box::new(err.with_attempts(log.clone())) };
    let request = buffer_request(request, shared.max_body_bytes)
        .await
        .map_err(|err| fail(err, &log))?;
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(http::header::HOST);
    strip_hop_by_hop(&mut parts.headers);
    // The client's HTTP version says nothing about the upstream's: the pool picks HTTP/1.1 or
    // HTTP/2 per connection (ALPN). Forwarding an h2 client's version to an HTTP/1-only
    // endpoint would fail every attempt.
    parts.version = http::Version::HTTP_11;
    // The buffered body knows its exact length; the client derives the framing from it.
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let original_uri = std::mem::take(&mut parts.uri);
    let pool = &shared.pool;

    let mut pick = shared
        .first_pick(Instant::now())
        .map_err(|err| fail(err, &log))?;
    let mut tried: Vec<bool> = Vec::new();
    let mut last_response: Option<Response<ResponseBody<RB>>> = None;
    let mut last_error: Option<BoxError> = None;
    loop {
        let member = &pool.members[pick.index];
        let endpoint = &member.endpoint;
        let uri = endpoint.base_url().join(&original_uri).map_err(|err| {
            fail(
                Error::new(
                    ErrorKind::InvalidRequest,
                    format!("cannot forward this request target: {err}"),
                ),
                &log,
            )
        })?;
        let mut attempt = Request::from_parts(parts.clone(), body.clone());
        *attempt.uri_mut() = uri;
        attempt.extensions_mut().insert(Selected(endpoint.clone()));
        attempt.extensions_mut().insert(log.clone());

        let recorded = log.len();
        let started = Instant::now();
        // The attempt counts as in flight until its response body ends (streams included).
        let in_flight = member.health.start_attempt();
        let call = match inner.ready().await {
            Ok(service) => Ok(service.call(attempt)),
            Err(err) => Err(err.into()),
        };
        let result = match call {
            Ok(future) => future.await.map_err(Into::into),
            Err(err) => Err(err),
        }
        .map(|response: Response<RB>| {
            response.map(|body| ResponseBody {
                inner: body,
                in_flight: Some(in_flight),
            })
        });
        if log.len() == recorded {
            // No retry layer inside: record the attempt here.
            log.record(endpoint.id(), false, started, Outcome::of(&result));
        }

        let class = classify(&result);
        match class {
            Classification::Success | Classification::ClientError => {
                if class == Classification::Success {
                    if pick.probe.is_some() {
                        tracing::info!(endpoint = %endpoint.id(), "probe succeeded; endpoint restored");
                    }
                    member.health.record_success(pick.probe);
                }
                // A client error says nothing about the endpoint: a probe slot is released.
                return finish(result, &log);
            }
            Classification::Retryable | Classification::BadCredentials => {}
        }

        let now = Instant::now();
        shared.record_failure(member, pick.probe, &result, now);
        // Keep the latest response; an error only matters while no response arrived.
        match result {
            Ok(response) => last_response = Some(response),
            Err(err) => last_error = Some(err),
        }
        if !endpoint.fallback() {
            return all_failed(last_response, last_error, &log);
        }
        if tried.is_empty() {
            tried = vec![false; pool.members.len()];
        }
        tried[pick.index] = true;
        let next = shared.fallback_pick(pick.index, &tried, now);
        match next {
            Some(next) => {
                tracing::info!(
                    from = %endpoint.id(),
                    to = %pool.members[next.index].endpoint.id(),
                    "falling back"
                );
                pick = next;
            }
            None => return all_failed(last_response, last_error, &log),
        }
    }
}

pin_project! {
    /// The response body of [`Fallback`]: the upstream body, unchanged, keeping its endpoint's
    /// in-flight count (used by `least_in_flight` and shown in snapshots) until the body ends
    /// or is dropped.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<health::InFlight>,
    }
}

impl<B> ResponseBody<B> {
    /// The upstream body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The upstream body, dropping the in-flight count.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            this.in_flight.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn with_attempts<RB>(mut response: Response<RB>, log: &Attempts) -> Response<RB> {
    response.extensions_mut().insert(log.clone());
    response
}

fn upstream_error(err: BoxError, log: &Attempts) -> BoxError {
    Box::new(Error::upstream(err).with_attempts(log.clone()))
}

/// A success or client error, returned as it came.
fn finish<RB>(
    result: Result<Response<RB>, BoxError>,
    log: &Attempts,
) -> Result<Response<RB>, BoxError> {
    match result {
        Ok(response) => Ok(with_attempts(response, log)),
        Err(err) => Err(upstream_error(err, log)),
    }
}

/// Every attempt failed: the last upstream response as it came, else the last error.
fn all_failed<RB>(
    last_response: Option<Response<RB>>,
    last_error: Option<BoxError>,
    log: &Attempts,
) -> Result<Response<RB>, BoxError> {
    match (last_response, last_error) {
        (Some(response), _) => Ok(with_attempts(response, log)),
        (None, Some(err)) => Err(upstream_error(err, log)),
        (None, None) => Err(Box::new(
            Error::new(ErrorKind::Internal, "no upstream attempt was made")
                .with_attempts(log.clone()),
        )),
    }
}

/// No endpoint admits the request: try the one whose cooldown ends first, or fail with 503.
fn when_all_unhealthy(shared: &Shared, soonest: &Soonest) -> Result<Pick, Error> {
    let Some((index, until)) = soonest.0 else {
        return Err(Error::new(
            ErrorKind::Internal,
            "the balancer has no endpoints",
        ));
    };
    match shared.when_all_unhealthy {
        WhenAllUnhealthy::TrySoonest => {
            tracing::debug!(
                endpoint = %shared.pool.members[index].endpoint.id(),
                "every endpoint is cooling down; trying the one that returns first"
            );
            Ok(Pick { index, probe: None })
        }
        WhenAllUnhealthy::Fail => {
            let wait = until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            Err(Error::new(
                ErrorKind::NoEndpointAvailable,
                "every upstream endpoint is cooling down after failures; retry later",
            )
            .with_retry_after(wait))
        }
    }
}
