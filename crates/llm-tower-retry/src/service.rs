//! [`Retry`], the service.

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use llm_tower_core::{Attempts, BoxError};
use tower::Service;

use crate::body::ResponseBody;
use crate::per_try::PerTry;
use crate::policy::EndpointPolicy;

/// Service that retries; built by [`RetryLayer`](crate::RetryLayer).
///
/// ```
/// use llm_tower_retry::{Retry, RetryLayer};
/// use tower::Layer;
///
/// let retry: Retry<()> = RetryLayer::new().layer(());
/// assert_eq!(retry.get_ref(), &());
/// ```
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: tower::retry::Retry<EndpointPolicy, PerTry<S>>,
}

/// Future of [`Retry`]: tower's retry loop over [`PerTry`] attempts.
///
/// ```
/// use http::{Request, Response};
/// use llm_tower_core::BufferedBody;
/// use llm_tower_retry::{ResponseFuture, RetryLayer};
/// use tower::{Layer, Service, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let inner = service_fn(|_: Request<BufferedBody>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// });
/// let mut service = RetryLayer::new().layer(inner);
/// let future: ResponseFuture<_, BufferedBody> = service.call(Request::new(BufferedBody::default()));
/// assert_eq!(future.await.unwrap().status(), 200);
/// # }
/// ```
pub type ResponseFuture<S, B> =
    tower::retry::future::ResponseFuture<EndpointPolicy, PerTry<S>, Request<B>>;

impl<S> Retry<S> {
    pub(crate) fn new(inner: tower::retry::Retry<EndpointPolicy, PerTry<S>>) -> Self {
        Self { inner }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref().get_ref()
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut().get_mut()
    }

    /// Consumes this service, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().into_inner()
    }
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Clone,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(log) = request.extensions().get::<Attempts>() {
            // Every try of this request is recorded by `PerTry`.
            log.record_inside();
        }
        self.inner.call(request)
    }
}
