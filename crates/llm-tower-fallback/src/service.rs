//! [`Fallback`], the service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use llm_tower_core::{BoxError, BufferedBody};
use tower::Service;

use crate::balancer::Balancer;
use crate::body::ResponseBody;

/// Service that balances and falls back; built by [`FallbackLayer`](crate::FallbackLayer).
///
/// ```
/// use llm_tower_core::Endpoint;
/// use llm_tower_fallback::{Fallback, FallbackLayer, HealthRegistry};
/// use tower::Layer;
///
/// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
/// let layer = FallbackLayer::builder(endpoints).build(HealthRegistry::new()).unwrap();
/// let service: Fallback<()> = layer.layer(());
/// assert_eq!(service.get_ref(), &());
/// ```
#[derive(Clone)]
pub struct Fallback<S> {
    inner: S,
    balancer: Arc<Balancer>,
}

impl<S> Fallback<S> {
    pub(crate) fn new(inner: S, balancer: Arc<Balancer>) -> Self {
        Self { inner, balancer }
    }

    llm_tower_core::define_inner_service_accessors!();

    /// The deployment ids this service balances over (see
    /// [`FallbackLayer::deployments`](crate::FallbackLayer::deployments)), in priority order.
    ///
    /// ```
    /// use llm_tower_core::Endpoint;
    /// use llm_tower_fallback::{FallbackLayer, HealthRegistry};
    /// use tower::Layer;
    ///
    /// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").models(["m1", "m2"]).build().unwrap()];
    /// let service = FallbackLayer::builder(endpoints).build(HealthRegistry::new()).unwrap().layer(());
    /// let ids: Vec<_> = service.deployment_ids().map(|id| id.as_str()).collect();
    /// assert_eq!(ids, ["a/m1", "a/m2"]);
    /// ```
    pub fn deployment_ids(&self) -> impl Iterator<Item = &llm_tower_core::EndpointId> {
        self.balancer
            .pool
            .members
            .iter()
            .map(crate::pool::Member::id)
    }
}

impl<S: fmt::Debug> fmt::Debug for Fallback<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Future of [`Fallback`]: the whole control loop (the crate's private `run`), boxed once per
/// request.
///
/// ```
/// use http::{Request, Response};
/// use llm_tower_core::Endpoint;
/// use llm_tower_fallback::{FallbackLayer, HealthRegistry, ResponseBody, ResponseFuture};
/// use tower::{Layer, Service, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
/// let layer = FallbackLayer::builder(endpoints).build(HealthRegistry::new()).unwrap();
/// let mut service = layer.layer(service_fn(|_| async {
///     Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
/// }));
/// let future: ResponseFuture<ResponseBody<String>> = service.call(Request::new(String::new()));
/// assert_eq!(future.await.unwrap().status(), 200);
/// # }
/// ```
pub type ResponseFuture<RB> = Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

impl<S, B, RB> Service<Request<B>> for Fallback<S>
where
    S: Service<Request<BufferedBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
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
        crate::run::run(self.balancer.clone(), inner, request)
    }
}
