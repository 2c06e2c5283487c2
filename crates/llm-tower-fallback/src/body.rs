//! [`ResponseBody`] of [`Fallback`](crate::Fallback), and the watch it keeps on a response
//! stream once its head has gone to the client.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use llm_tower_core::{ApiKey, Attempts, BoxError, Error, ErrorKind, Outcome, classify_error_kind};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::balancer::Balancer;
use crate::health::InFlight;
use crate::mask::{Held, KeyMask};

pin_project! {
    /// The response body of [`Fallback`](crate::Fallback): the upstream body, streamed
    /// through, watched until it ends.
    ///
    /// - It keeps its endpoint's in-flight count (used by `least_in_flight` and shown in
    ///   snapshots) until the body ends or is dropped.
    /// - When no frame arrives for the endpoint's `stream_idle_timeout`, the body fails with
    ///   [`ErrorKind::StreamIdleTimeout`]: the client's stream is aborted, never ended as if
    ///   it were complete.
    /// - A body that fails after its head was sent (stalled, reset, malformed) is recorded as
    ///   that failure in the [`Attempts`] log, and counts against the endpoint's health.
    /// - A non-2xx response of an endpoint with a key is held back (up to
    ///   [`MASK_LIMIT`](crate::MASK_LIMIT) bytes) and every copy of the key in it is masked
    ///   (`sk-...abcd`); a longer body streams through unchanged.
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
    /// let upstream = service_fn(|_| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
    /// });
    /// let response = layer.layer(upstream).oneshot(http::Request::new(String::new())).await.unwrap();
    /// let body: &ResponseBody<String> = response.body();
    /// assert_eq!(body.get_ref().map(String::as_str), Some("hi"));
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        // While set, the body is held back and checked for the endpoint's key.
        mask: Option<KeyMask>,
        // Bytes or trailers held back by the mask, sent before anything else.
        prefix: Option<Bytes>,
        trailers: Option<HeaderMap>,
        #[pin]
        inner: Option<B>,
        watch: Option<StreamWatch>,
    }
}

/// What the body needs to judge its own stream.
pub(crate) struct StreamWatch {
    /// Held for its `Drop`: the endpoint's in-flight count.
    pub(crate) _in_flight: InFlight,
    pub(crate) balancer: Arc<Balancer>,
    pub(crate) member: usize,
    pub(crate) log: Attempts,
    /// The attempt in `log` this body belongs to.
    pub(crate) attempt: usize,
    pub(crate) idle_timeout: Option<Duration>,
    /// Armed on the first wait for a frame; reset by every frame.
    pub(crate) idle: Option<Pin<Box<Sleep>>>,
}

impl StreamWatch {
    /// The stream failed after its head was sent: record it, and blame the endpoint when the
    /// failure is the upstream's.
    fn failed(&self, kind: ErrorKind) {
        self.log.set_outcome(self.attempt, Outcome::Error(kind));
        if classify_error_kind(kind).counts_against_health() {
            self.balancer.record_stream_failure(self.member, kind);
        }
    }

    /// Polls the idle timer while the upstream has nothing; `Ready` when it expired.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Duration> {
        let Some(limit) = self.idle_timeout else {
            return Poll::Pending;
        };
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(idle.as_mut().poll(cx));
        Poll::Ready(limit)
    }

    /// A frame arrived: the idle timer starts over.
    fn progressed(&mut self) {
        if let (Some(idle), Some(limit)) = (&mut self.idle, self.idle_timeout) {
            idle.as_mut().reset(Instant::now() + limit);
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, watch: StreamWatch) -> Self {
        Self {
            mask: None,
            prefix: None,
            trailers: None,
            inner: Some(inner),
            watch: Some(watch),
        }
    }

    /// Holds the body back until it ends and masks `key` in it.
    pub(crate) fn mask_key(&mut self, key: ApiKey) {
        self.mask = Some(KeyMask::new(key));
    }

    /// The upstream body.
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }

    /// The upstream body, dropping the watch (`None` once it was read to its end).
    pub fn into_inner(self) -> Option<B> {
        self.inner
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("prefix", &self.prefix.as_ref().map(Bytes::len))
            .finish_non_exhaustive()
    }
}

/// One frame of the upstream body, with the watch's idle timer and failure records.
fn poll_upstream<B>(
    inner: Pin<&mut Option<B>>,
    watch: &mut Option<StreamWatch>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let Some(inner) = inner.as_pin_mut() else {
        watch.take();
        return Poll::Ready(None);
    };
    let frame = match inner.poll_frame(cx) {
        Poll::Ready(frame) => frame.map(|f| f.map_err(Into::into)),
        Poll::Pending => {
            let Some(watching) = watch.as_mut() else {
                return Poll::Pending;
            };
            let limit = ready!(watching.poll_idle(cx));
            Some(Err(Error::new(
                ErrorKind::StreamIdleTimeout,
                format!("no response body frame for the stream idle timeout of {limit:?}"),
            )
            .into()))
        }
    };
    match &frame {
        Some(Ok(_)) => {
            if let Some(watching) = watch.as_mut() {
                watching.progressed();
            }
        }
        Some(Err(err)) => {
            if let Some(watching) = watch.take() {
                watching.failed(ErrorKind::of(&**err));
            }
        }
        // The end: the in-flight count drops with the watch.
        None => drop(watch.take()),
    }
    Poll::Ready(frame)
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        loop {
            let frame = ready!(poll_upstream(this.inner.as_mut(), this.watch, cx));
            let Some(mask) = this.mask.as_mut() else {
                return Poll::Ready(frame);
            };
            let frame = match frame {
                Some(Ok(frame)) => frame,
                Some(Err(err)) => {
                    *this.mask = None;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    let masked = this.mask.take().map(KeyMask::finish).unwrap_or_default();
                    this.inner.set(None);
                    return Poll::Ready((!masked.is_empty()).then(|| Ok(Frame::data(masked))));
                }
            };
            match frame.into_data() {
                Ok(data) => match mask.push(&data) {
                    Held::More => {}
                    Held::Overflow(held) => {
                        *this.mask = None;
                        return Poll::Ready(Some(Ok(Frame::data(held))));
                    }
                },
                Err(frame) => {
                    // Trailers end the body: send what was held, masked, then them.
                    let masked = this.mask.take().map(KeyMask::finish).unwrap_or_default();
                    *this.trailers = frame.into_trailers().ok();
                    return Poll::Ready(Some(Ok(Frame::data(masked))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && self.trailers.is_none()
            && self.mask.is_none()
            && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        if self.mask.is_some() {
            // Masking changes the length.
            return SizeHint::new();
        }
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let Some(inner) = &self.inner else {
            return SizeHint::with_exact(prefix);
        };
        let hint = inner.size_hint();
        let mut adjusted = SizeHint::new();
        adjusted.set_lower(hint.lower() + prefix);
        if let Some(upper) = hint.upper() {
            adjusted.set_upper(upper + prefix);
        }
        adjusted
    }
}
