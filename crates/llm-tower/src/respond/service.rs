//! [`Respond`], the service.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use llm_tower_core::{BoxError, Caller, ClientApi, UsageRecord};

use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::shared::Shared;
use super::span::request_span;

/// The outermost service of the stack, which responds to the client whatever happened
/// below: turns errors into OpenAI-style JSON responses (so its
/// error type is [`Infallible`] and it fits axum's `nest_service`, `route_service` and
/// `fallback_service`), strips hop-by-hop headers from responses, and adds optional response
/// headers, an access log and metrics.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, StatusCode};
/// use llm_tower::{BoxError, Error, ErrorKind, RespondLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let failing = service_fn(|_: Request<()>| async {
///     Err::<http::Response<String>, BoxError>(Error::new(ErrorKind::Timeout, "too slow").into())
/// });
/// let response = RespondLayer::new().layer(failing).oneshot(Request::new(())).await;
/// let response = response.unwrap(); // Infallible
/// assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// # }
/// ```
pub struct Respond<S> {
    inner: S,
    shared: Arc<Shared>,
    not_ready: Option<BoxError>,
}

impl<S> Respond<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            not_ready: None,
        }
    }

    llm_tower_core::define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Respond<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Respond")
            .field("inner", &self.inner)
            .field("settings", &self.shared.settings())
            .finish_non_exhaustive()
    }
}

impl<S: Clone> Clone for Respond<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.shared.clone())
    }
}

impl<S, B, RB> tower::Service<Request<B>> for Respond<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: http_body::Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<RB>>;
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
        // Request headers are cleaned by the balancer, which every attempt passes through.
        let caller = request.extensions().get::<Caller>().cloned();
        let span = request_span(&request, caller.as_ref(), self.shared.mounted_at());
        // How a stream that breaks is told, in band: in the API the client speaks.
        let api = ClientApi::of_path(request.uri().path());
        if let Some(err) = self.not_ready.take() {
            return ResponseFuture::failed(err, self.shared.clone(), caller, span);
        }
        // Where the attempts leave the usage of their answers.
        let usage = self.shared.accounting().map(|_| {
            let record = UsageRecord::default();
            request.extensions_mut().insert(record.clone());
            record
        });
        // The attempts' spans are its children, whether made now or when polled.
        let future = span.in_scope(|| self.inner.call(request));
        ResponseFuture::inner(future, self.shared.clone(), caller, api, usage, span)
    }
}
