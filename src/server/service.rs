//! [`TrackedService`]: the router as one connection sees it, with the request body deadline
//! and the connection's busy/idle bookkeeping.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use hyper::body::Incoming;
use llm_tower::auth::{ACCOUNT_HEADERS, CREDENTIAL_HEADERS};
use llm_tower::{Error, ErrorKind};
use pin_project_lite::pin_project;
use tower::Service;

use super::body::BodyDeadline;
use super::conn::ConnState;

#[derive(Clone)]
pub(crate) struct TrackedService {
    router: Router,
    state: Arc<ConnState>,
    body_read_timeout: Option<Duration>,
}

impl TrackedService {
    pub(crate) fn new(
        router: Router,
        state: Arc<ConnState>,
        body_read_timeout: Option<Duration>,
    ) -> Self {
        Self {
            router,
            state,
            body_read_timeout,
        }
    }
}

impl Service<Request<Incoming>> for TrackedService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A `Router` is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> TrackedFuture {
        self.state.request_started();
        mark_credentials_sensitive(request.headers_mut());
        if let Some(refusal) = host_problem(&request) {
            return TrackedFuture::refused(refusal, Done(self.state.clone()));
        }
        let request = match self.body_read_timeout {
            Some(limit) => request.map(|body| Body::new(BodyDeadline::new(body, limit))),
            None => request.map(Body::new),
        };
        TrackedFuture {
            inner: Some(self.router.call(request)),
            refused: None,
            done: Some(Done(self.state.clone())),
        }
    }
}

/// Whatever the auth layer strips is hidden from traces and `Debug` output from the start: one
/// pass over the request's headers (a handful), not a lookup per listed name.
fn mark_credentials_sensitive(headers: &mut http::HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if CREDENTIAL_HEADERS.contains(name) || ACCOUNT_HEADERS.contains(name) {
            value.set_sensitive(true);
        }
    }
}

/// HTTP/1.1 requires exactly one `Host` (RFC 9112, 3.2): a request without one, or with two
/// that different hops could read differently, is refused before it goes anywhere.
fn host_problem<B>(request: &Request<B>) -> Option<Response<Body>> {
    if request.version() != http::Version::HTTP_11 {
        return None;
    }
    let mut hosts = request.headers().get_all(http::header::HOST).iter();
    let problem = match (hosts.next(), hosts.next()) {
        (Some(_), None) => return None,
        (None, _) => "has no",
        (Some(_), Some(_)) => "has more than one",
    };
    Some(
        Error::new(
            ErrorKind::InvalidRequest,
            format!("the HTTP/1.1 request {problem} Host header"),
        )
        .to_response(),
    )
}

/// Tells the connection its request finished: when the response body ends or is dropped.
struct Done(Arc<ConnState>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

pin_project! {
    pub(crate) struct TrackedFuture {
        #[pin]
        inner: Option<<Router as Service<Request<Body>>>::Future>,
        refused: Option<Response<Body>>,
        done: Option<Done>,
    }
}

impl TrackedFuture {
    fn refused(response: Response<Body>, done: Done) -> Self {
        Self {
            inner: None,
            refused: Some(response),
            done: Some(done),
        }
    }
}

impl Future for TrackedFuture {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match (this.inner.as_pin_mut(), this.refused.take()) {
            (Some(inner), _) => ready!(inner.poll(cx))?,
            (None, Some(refused)) => refused,
            (None, None) => panic!("TrackedFuture polled after completion"),
        };
        let done = this.done.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, done })))
    }
}

pin_project! {
    pub(crate) struct TrackedBody {
        #[pin]
        inner: Body,
        done: Option<Done>,
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            this.done.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
