//! The span a request's events are logged in, made before anything else handles the
//! request, so that every line a request causes can be told apart from another's.

use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;

/// The span every request's events are logged in: method and path only, since a query string
/// may carry a client's `?key=`.
pub(crate) fn request_span<B>(request: &Request<B>) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
    )
}

/// Runs each request in its [`request_span`] (see [`Spanned`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpanLayer;

impl<S> Layer<S> for SpanLayer {
    type Service = Spanned<S>;

    fn layer(&self, inner: S) -> Spanned<S> {
        Spanned { inner }
    }
}

/// The inner service is called, and its future polled, in the request's span. Only the
/// span: no events of its own (the access log says how each request ended).
#[derive(Clone, Debug)]
pub(crate) struct Spanned<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Spanned<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let span = request_span(&request);
        let future = span.in_scope(|| self.inner.call(request));
        future.instrument(span)
    }
}
