//! [`Limit`], the service, and [`LimitsLayer`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use llm_tower_core::{
    BoxError, Caller, DEFAULT_MAX_BODY_BYTES, Deployment, Error, ErrorKind, UsageRecord,
    WebSocketUpgrade, buffer_request, requested_model,
};
use llm_tower_usage::Prices;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::{RequestBody, ResponseBody, Settlement};
use crate::estimate::estimate;
use crate::headers;
use crate::limiter::{Estimate, Limiter, Refusal};
use crate::settings::{Limits, LimitsTable};

/// What every clone of a [`Limit`] shares.
pub(crate) struct Shared {
    pub(crate) table: LimitsTable,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) prices: Arc<Prices>,
    pub(crate) max_body_bytes: usize,
}

/// Layer for [`Limit`]: put it inside `Respond` (which answers a refusal in the client's API
/// and puts the usage record on the request) and outside the balancer.
///
/// ```
/// use std::sync::Arc;
/// use llm_tower_limits::{Limiter, Limits, LimitsLayer, LimitsTable};
///
/// let table = LimitsTable::new([("team-a".into(), Limits { rpm: Some(60), ..Limits::default() })], None);
/// let layer = LimitsLayer::new(table).limiter(Arc::new(Limiter::default()));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct LimitsLayer {
    table: LimitsTable,
    limiter: Arc<Limiter>,
    prices: Arc<Prices>,
    max_body_bytes: usize,
}

impl std::fmt::Debug for LimitsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitsLayer")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl LimitsLayer {
    /// Clients held to the limits of `table`, counted by a limiter of its own.
    pub fn new(table: LimitsTable) -> Self {
        Self {
            table,
            limiter: Arc::default(),
            prices: Arc::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Counts with `limiter`: give a stack built anew (a reload) the old one's, and its
    /// clients keep their counts.
    #[must_use]
    pub fn limiter(mut self, limiter: Arc<Limiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Prices the budgets' spend (default none: no spend is counted).
    #[must_use]
    pub fn prices(mut self, prices: Arc<Prices>) -> Self {
        self.prices = prices;
        self
    }

    /// The most of a request body read to estimate it (the balancer's cap: 413 above it).
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limit<S>;

    fn layer(&self, inner: S) -> Limit<S> {
        Limit {
            inner,
            shared: Arc::new(Shared {
                table: self.table.clone(),
                limiter: self.limiter.clone(),
                prices: self.prices.clone(),
                max_body_bytes: self.max_body_bytes,
            }),
        }
    }
}

/// Holds each client ([`Caller`]) to its [`Limits`] before anything is sent upstream:
/// requests and tokens per minute (token buckets: a minute's worth at once, then at the
/// limit's pace), spend per calendar day or month, and the models it may ask for. A request
/// over a limit is an error (`RateLimited` or `QuotaExceeded`, 429 with `Retry-After`; a model
/// it may not use, `Forbidden`, 403) that `Respond` answers in the client's API. An admitted
/// request reserves its estimate (input at about 4 bytes a token, output its `max_tokens` or
/// 4096, priced) and settles it when its answer has ended, with the usage the answer reported;
/// its answer carries OpenAI's `x-ratelimit-*` headers. A request of a client without limits
/// passes untouched.
///
/// ```
/// use http::{Request, Response};
/// use llm_tower_core::{Caller, ErrorKind};
/// use llm_tower_limits::{Limits, LimitsLayer, LimitsTable};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let table = LimitsTable::new([("team-a".into(), Limits { rpm: Some(1), ..Limits::default() })], None);
/// let service = LimitsLayer::new(table).layer(service_fn(|_| async {
///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
/// }));
/// let request = || {
///     let mut request = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
///     request.extensions_mut().insert(Caller::new("team-a"));
///     request
/// };
/// let first = service.clone().oneshot(request()).await.unwrap();
/// assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "0");
/// let second = service.oneshot(request()).await.unwrap_err();
/// let error = llm_tower_core::Error::find_in(&*second).unwrap();
/// assert_eq!(error.kind(), ErrorKind::RateLimited);
/// # }
/// ```
pub struct Limit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Limit<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Limit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Limit<S> {
    llm_tower_core::define_inner_service_accessors!();
}

/// An admission under way: the body read, the limits checked, the inner service called.
type Admitting<RB> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<RB>>, BoxError>> + Send>>;

pin_project! {
    /// Future of [`Limit`]: the inner service's, for a client without limits (nothing boxed,
    /// nothing read); else the admission and then the inner service's.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use llm_tower_limits::{LimitsLayer, LimitsTable, ResponseFuture};
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let mut service = LimitsLayer::new(LimitsTable::default()).layer(service_fn(|_| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    /// }));
    /// let _future: ResponseFuture<_, String> = service.call(Request::new(http_body_util::Empty::<bytes::Bytes>::new()));
    /// ```
    pub struct ResponseFuture<F, RB> {
        #[pin]
        state: State<F, RB>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<F, RB> {
        /// A client without limits.
        Unlimited { #[pin] future: F },
        /// A client with limits.
        Admitting { future: Admitting<RB> },
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Unlimited { future } => future
                .poll(cx)
                .map(|result| Ok(result.map_err(Into::into)?.map(ResponseBody::plain))),
            StateProjection::Admitting { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, B, RB> Service<Request<B>> for Limit<S>
where
    S: Service<Request<RequestBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Send + 'static,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let limits = request.extensions().get::<Caller>().and_then(|caller| {
            Some((caller.clone(), self.shared.table.of(caller.name())?.clone()))
        });
        let Some((caller, limits)) = limits else {
            let future = self.inner.call(request.map(RequestBody::streaming));
            return ResponseFuture {
                state: State::Unlimited { future },
            };
        };
        // The service made ready is the one called; a clone takes its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let future = Box::pin(admitted(inner, shared, caller, limits, request));
        ResponseFuture {
            state: State::Admitting { future },
        }
    }
}

/// Admits `request` of `caller` (reading its body when its limits need it), calls `inner`,
/// and sets its answer to carry the standings and settle the reservation.
async fn admitted<S, B, RB>(
    mut inner: S,
    shared: Arc<Shared>,
    caller: Caller,
    limits: Arc<Limits>,
    request: Request<B>,
) -> Result<Response<ResponseBody<RB>>, BoxError>
where
    S: Service<Request<RequestBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let client: Arc<str> = caller.name().into();
    let upgrade = request.extensions().get::<WebSocketUpgrade>().is_some();
    if upgrade && (limits.tpm.is_some() || limits.budget.is_some()) {
        // A socket's tokens are not metered: a key held to tokens or spend could use any.
        return Err(Error::new(
            ErrorKind::Forbidden,
            "this key has token or spend limits, which WebSocket sessions cannot be held to",
        )
        .into());
    }
    let (request, reserved) = if limits.reads_body() {
        let request = buffer_request(request, shared.max_body_bytes).await?;
        let body = request.body().to_bytes();
        let model = requested_model(&body, request.uri(), upgrade);
        match &model {
            Some(model) if !limits.allows_model(model) => {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    format!("model `{model}` is not allowed for this key"),
                )
                .into());
            }
            // A key held to some models names one: a request that names none could be
            // served any (a provider's default). A request without a body (`GET …/models`)
            // asks for no model.
            None if limits.models.is_some() && (!body.is_empty() || upgrade) => {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    "this key may use only some models, and the request names none",
                )
                .into());
            }
            _ => {}
        }
        let reserved = estimate(&body, model.as_deref(), &shared.prices);
        (request.map(RequestBody::buffered), reserved)
    } else {
        (request.map(RequestBody::streaming), Estimate::default())
    };
    if limits.budget.is_some() && reserved.usd.is_none() {
        // Spend cannot be counted against a budget at no price.
        return Err(Error::new(
            ErrorKind::Forbidden,
            "this key has a budget, and the model it asks for has no price in the price table",
        )
        .into());
    }
    let admission = shared
        .limiter
        .admit(&client, &limits, reserved)
        .await
        .map_err(|refusal| refused(refusal, &limits))?;
    let mut settlement = Settlement {
        shared,
        client,
        limits,
        admission,
        record: UsageRecord::of(request.extensions()).cloned(),
        answered: None,
    };
    let mut response = match inner.call(request).await {
        Ok(response) => response,
        Err(err) => {
            // No answer: what was reserved is given back at once (as it is when this future
            // is dropped, its client gone, before an answer came).
            drop(settlement);
            return Err(err.into());
        }
    };
    headers::write(response.headers_mut(), &settlement.admission.standings);
    settlement.answered = Deployment::of(response.extensions()).cloned();
    Ok(response.map(|body| ResponseBody::settling(body, settlement)))
}

/// When a client refused because the store is down may try again.
const STORE_DOWN_RETRY: Duration = Duration::from_secs(1);

/// The error a refusal is answered with.
fn refused(refusal: Refusal, limits: &Limits) -> BoxError {
    let (kind, message, wait) = match refusal {
        Refusal::Requests(wait) => (
            ErrorKind::RateLimited,
            format!(
                "rate limit reached: {} requests per minute for this key",
                limits.rpm.unwrap_or_default()
            ),
            wait,
        ),
        Refusal::Tokens(wait) => (
            ErrorKind::RateLimited,
            format!(
                "rate limit reached: {} tokens per minute for this key",
                limits.tpm.unwrap_or_default()
            ),
            wait,
        ),
        Refusal::Unaffordable(cost) => {
            return Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "this request may cost up to {cost:.2} USD, more than this key's budget of \
                     {} USD: lower its max_tokens",
                    limits.budget.map_or(0.0, |b| b.usd)
                ),
            )
            .into();
        }
        Refusal::StoreDown => (
            ErrorKind::LimitsUnavailable,
            "this key's limits cannot be checked now: the store they are kept in is \
             unreachable"
                .to_owned(),
            STORE_DOWN_RETRY,
        ),
        Refusal::Budget(wait) => (
            ErrorKind::QuotaExceeded,
            format!(
                "budget spent: {} USD per {} for this key",
                limits.budget.map_or(0.0, |b| b.usd),
                match limits.budget.map(|b| b.per) {
                    Some(crate::Period::Month) => "month",
                    _ => "day",
                }
            ),
            wait,
        ),
    };
    Error::new(kind, message).with_retry_after(wait).into()
}
