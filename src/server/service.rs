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
use http_body_util::BodyExt;
use hyper::body::Incoming;
use llm_tower::{BoxError, Error, ErrorKind};
use pin_project_lite::pin_project;
use tower::Service;
use tower_http::timeout::{DeadlineBody, TimeoutError};

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

    fn call(&mut self, request: Request<Incoming>) -> TrackedFuture {
        self.state.request_started();
        let request = match self.body_read_timeout {
            Some(deadline) => request.map(|body| Body::new(with_deadline(deadline, body))),
            None => request.map(Body::new),
        };
        TrackedFuture {
            inner: self.router.call(request),
            done: Some(Done(self.state.clone())),
        }
    }
}

/// The request body, failing with [`ErrorKind::RequestTimeout`] (408) when it has not all
/// arrived `deadline` after the head: a dripped upload is cut as surely as a stalled one.
fn with_deadline(
    deadline: Duration,
    body: Incoming,
) -> impl http_body::Body<Data = Bytes, Error = BoxError> {
    DeadlineBody::new(deadline, body).map_err(|err| {
        if err.is::<TimeoutError>() {
            Box::new(Error::new(
                ErrorKind::RequestTimeout,
                "the request body did not arrive in time",
            )) as BoxError
        } else {
            err
        }
    })
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
        inner: <Router as Service<Request<Body>>>::Future,
        done: Option<Done>,
    }
}

impl Future for TrackedFuture {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
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
