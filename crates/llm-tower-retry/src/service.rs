//! [`Retry`], the service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use llm_tower_core::BoxError;
use tower::Service;

use crate::body::ResponseBody;
use crate::state::RetryState;

/// Service that retries; built by [`RetryLayer`](crate::RetryLayer).
///
/// ```
/// use llm_tower_retry::{Retry, RetryLayer};
/// use tower::Layer;
///
/// let retry: Retry<()> = RetryLayer::new().layer(());
/// assert_eq!(retry.get_ref(), &());
/// ```
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    state: RetryState,
}

impl<S: fmt::Debug> fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Future of [`Retry`]: the whole retry loop of one request, boxed once.
///
/// ```
/// use http::{Request, Response};
/// use llm_tower_core::BufferedBody;
/// use llm_tower_retry::{ResponseBody, ResponseFuture, RetryLayer};
/// use tower::{Layer, Service, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let inner = service_fn(|_: Request<BufferedBody>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// });
/// let mut service = RetryLayer::new().layer(inner);
/// let future: ResponseFuture<ResponseBody<_>> = service.call(Request::new(BufferedBody::default()));
/// assert_eq!(future.await.unwrap().status(), 200);
/// # }
/// ```
pub type ResponseFuture<RB> = Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

impl<S> Retry<S> {
    pub(crate) fn new(inner: S, state: RetryState) -> Self {
        Self { inner, state }
    }

    llm_tower_core::define_inner_service_accessors!();
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Clone + Send + Sync + 'static,
    RB: Body + Send + 'static,
    RB::Data: Send,
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
        crate::run::run(self.state.clone(), inner, request)
    }
}
