//! [`ResponseBody`] of [`Fallback`](crate::Fallback), and the watch it keeps on a response
//! stream once its head has gone to the client.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use llm_tower_core::{ApiKey, Attempts, BoxError, Error, ErrorKind, Outcome};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use llm_tower_core::Endpoint;
use llm_tower_health::InFlight;

use crate::mask::{KeyMask, mask_headers};
use crate::resume::Resume;

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
    /// - In a non-2xx response of an endpoint with a key, every copy of the key (in the body
    ///   or its trailers) is masked (`sk-...abcd`) as the body streams; only the last bytes
    ///   of a frame, which might begin the key, wait for the next one.
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
        // While set, the endpoint's key is masked in the body. Boxed, as the trailers below:
        // only error bodies are masked, and every response is moved whole through the
        // futures outside, so what most never use is kept out of line.
        mask: Option<Box<KeyMask>>,
        // Trailers that wait for the bytes the mask kept back.
        trailers: Option<Box<HeaderMap>>,
        #[pin]
        inner: Option<B>,
        watch: Option<StreamWatch>,
        // For a stream that a continuation may carry on when it breaks.
        resume: Option<Box<Resume<B>>>,
    }
}

/// What the body needs to judge its own stream.
pub(crate) struct StreamWatch {
    /// The deployment's in-flight count (until dropped), and where a broken stream is told.
    pub(crate) in_flight: InFlight,
    /// Whose key to mask.
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) log: Attempts,
    /// The attempt in `log` this body belongs to.
    pub(crate) attempt: usize,
    /// The response was already judged a failure at its head (and counted): a broken body
    /// does not count it again.
    pub(crate) counted: bool,
    pub(crate) idle_timeout: Option<Duration>,
    /// Armed on the first wait for a frame; when it runs out, moved on past the last frame.
    pub(crate) idle: Option<Pin<Box<Sleep>>>,
    /// When the last frame came, if one came since the timer was armed or moved on.
    pub(crate) last_frame: Option<Instant>,
    /// The waker the timer was last polled with. While the body is polled with it and the
    /// timer has not run out, polling the timer again would only register it again (the
    /// timer's lock, at every wait for an event).
    pub(crate) idle_waker: Option<Waker>,
}

impl StreamWatch {
    /// The key of the endpoint this body comes from, if it has one.
    fn key(&self) -> Option<&ApiKey> {
        self.endpoint.api_key()
    }

    /// The stream failed after its head was sent: record it, and blame the endpoint when the
    /// failure is the upstream's.
    fn failed(&self, kind: ErrorKind) {
        if self.counted {
            return;
        }
        self.log.set_outcome(self.attempt, Outcome::Error(kind));
        self.in_flight.stream_failed(kind);
    }

    /// Polls the idle timer while the upstream has nothing; `Ready` when no frame came for
    /// the limit.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Duration> {
        let Some(limit) = self.idle_timeout else {
            return Poll::Pending;
        };
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        let registered = self.idle_waker.as_ref();
        if !idle.is_elapsed() && registered.is_some_and(|waker| waker.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        loop {
            if idle.as_mut().poll(cx).is_pending() {
                self.idle_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            // Run out: idle, unless a frame came since; the limit then counts from that one.
            match self.last_frame.take() {
                Some(at) => idle.as_mut().reset(at + limit),
                None => return Poll::Ready(limit),
            }
        }
    }

    /// A frame arrived: the idle limit counts from now. Noted, not set on the timer: a
    /// stream's frames come far more often than its limit runs out, and moving a timer takes
    /// the timer wheel's lock where reading the clock takes nothing.
    fn progressed(&mut self) {
        if self.idle.is_some() {
            self.last_frame = Some(Instant::now());
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, watch: StreamWatch) -> Self {
        Self {
            mask: None,
            trailers: None,
            inner: Some(inner),
            watch: Some(watch),
            resume: None,
        }
    }

    /// When this stream breaks after text reached the client, `resume` may carry it on.
    pub(crate) fn resume_with(&mut self, resume: Resume<B>) {
        self.resume = Some(Box::new(resume));
    }

    /// The upstream body and its watch, taken apart.
    pub(crate) fn into_parts(self) -> (Option<B>, Option<StreamWatch>) {
        (self.inner, self.watch)
    }

    /// Masks `key` in the body and its trailers.
    pub(crate) fn mask_key(&mut self, key: ApiKey) {
        self.mask = Some(Box::new(KeyMask::new(key)));
    }

    /// This response was counted as a failure when its head was judged.
    pub(crate) fn failure_counted(&mut self) {
        if let Some(watch) = &mut self.watch {
            watch.counted = true;
        }
    }

    /// The upstream body.
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }

    /// The upstream body, dropping the watch (`None` once a masked body was read to its end).
    pub fn into_inner(self) -> Option<B> {
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
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(*trailers))));
        }
        loop {
            if let Some(resume) = this.resume.as_mut().filter(|r| r.asking()) {
                match ready!(resume.poll_asked(cx)) {
                    Ok((body, watch)) => {
                        this.inner.set(Some(body));
                        *this.watch = Some(watch);
                        continue;
                    }
                    Err(err) => {
                        *this.resume = None;
                        return Poll::Ready(Some(Err(err)));
                    }
                }
            }
            let frame = ready!(poll_upstream(this.inner.as_mut(), this.watch, cx));
            let mut frame = match (this.resume.as_mut(), frame) {
                (Some(resume), Some(Ok(frame))) if frame.is_data() => {
                    let data = frame.into_data().unwrap_or_default();
                    let out = resume.pass(&data);
                    if out.is_empty() {
                        continue;
                    }
                    Some(Ok(Frame::data(out)))
                }
                (Some(resume), Some(Err(err))) => match resume.failed(err) {
                    Ok(()) => continue,
                    Err(err) => {
                        *this.resume = None;
                        Some(Err(err))
                    }
                },
                (Some(resume), None) => {
                    let rest = resume.end();
                    *this.resume = None;
                    this.inner.set(None);
                    (!rest.is_empty()).then(|| Ok(Frame::data(rest)))
                }
                (_, frame) => frame,
            };
            let Some(mask) = this.mask.as_mut() else {
                // A success's body is not searched for the key, but its trailers are, as
                // every header the client gets.
                if let (Some(Ok(frame)), Some(watch)) = (&mut frame, this.watch.as_ref())
                    && let (Some(trailers), Some(key)) = (frame.trailers_mut(), watch.key())
                {
                    mask_headers(trailers, key);
                }
                return Poll::Ready(frame);
            };
            let frame = match frame {
                Some(Ok(frame)) => frame,
                Some(Err(err)) => {
                    *this.mask = None;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    let rest = this.mask.take().map(|m| m.finish()).unwrap_or_default();
                    this.inner.set(None);
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))));
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    let masked = mask.feed(&data);
                    if !masked.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(masked))));
                    }
                }
                Err(frame) => {
                    // Trailers end the body: what the mask kept goes first, then them.
                    let Ok(mut trailers) = frame.into_trailers() else {
                        continue;
                    };
                    mask.mask_trailers(&mut trailers);
                    let rest = this.mask.take().map(|m| m.finish()).unwrap_or_default();
                    if rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    *this.trailers = Some(Box::new(trailers));
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.trailers.is_none()
            && self.mask.is_none()
            && self.resume.is_none()
            && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        if self.mask.is_some() || self.resume.is_some() {
            // Masking changes the length, and so may a continuation.
            return SizeHint::new();
        }
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
