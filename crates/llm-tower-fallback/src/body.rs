//! [`ResponseBody`] of [`Fallback`](crate::Fallback).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Body;
use pin_project_lite::pin_project;

use crate::health::InFlight;

pin_project! {
    /// The response body of [`Fallback`](crate::Fallback): the upstream body, unchanged,
    /// keeping its endpoint's in-flight count (used by `least_in_flight` and shown in
    /// snapshots) until the body ends or is dropped.
    ///
    /// ```
    /// use llm_tower_core::Endpoint;
    /// use llm_tower_fallback::{FallbackLayer, HealthRegistry, ResponseBody};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
    /// let layer = FallbackLayer::builder(endpoints).build(HealthRegistry::new()).unwrap();
    /// let upstream = service_fn(|_| async { Ok::<_, std::convert::Infallible>(http::Response::new("hi")) });
    /// let response = layer.layer(upstream).oneshot(http::Request::new(String::new())).await.unwrap();
    /// let body: &ResponseBody<&str> = response.body();
    /// assert_eq!(*body.get_ref(), "hi");
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, in_flight: InFlight) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
        }
    }

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
