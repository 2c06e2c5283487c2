//! [`ResponseBody`] of [`Retry`](crate::Retry).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use llm_tower_core::HeldSpan;
use pin_project_lite::pin_project;

use crate::ahead::Ahead;
use tracing::Span;

pin_project! {
    /// The response body of [`Retry`](crate::Retry): the upstream body, streamed through
    /// unbuffered. The frames read ahead before the head was passed on (the first frame of a
    /// 2xx, an error body up to [`DRAIN_LIMIT`](crate::DRAIN_LIMIT)) are put back in front;
    /// a body that had to be polled before it was handed on is boxed. When a tracing backend
    /// listens, it holds the try's span, which ends with it.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use llm_tower_retry::ResponseBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body = ResponseBody::new(Full::new(Bytes::from_static(b"hello")));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
    /// # }
    /// ```
    #[project = Projection]
    pub struct ResponseBody<B: Body> {
        ahead: Ahead<B::Data>,
        #[pin]
        inner: Inner<B>,
        span: Option<Box<HeldSpan>>,
    }
}

pin_project! {
    #[project = InnerProjection]
    enum Inner<B> {
        Streaming { #[pin] body: B },
        ReadAhead { body: Pin<Box<B>> },
        Empty,
    }
}

impl<B: Body> ResponseBody<B> {
    /// Wraps a body.
    pub fn new(body: B) -> Self {
        Self {
            ahead: Ahead::default(),
            inner: Inner::Streaming { body },
            span: None,
        }
    }

    /// A body with nothing in it.
    pub fn empty() -> Self {
        Self {
            ahead: Ahead::default(),
            inner: Inner::Empty,
            span: None,
        }
    }

    /// A body whose first frames were already read from `rest` (`None` when it ended).
    pub(crate) fn read_ahead(ahead: Ahead<B::Data>, rest: Option<Pin<Box<B>>>) -> Self {
        Self {
            ahead,
            inner: rest.map_or(Inner::Empty, |body| Inner::ReadAhead { body }),
            span: None,
        }
    }

    /// Keeps `span` open until the body ends or is dropped, and records on it a body that
    /// breaks off.
    pub(crate) fn in_span(mut self, span: Span) -> Self {
        self.span = Some(Box::new(HeldSpan::new(span)));
        self
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("read_ahead", &self.ahead.len())
            .field("span", &self.span)
            .field("empty", &matches!(self.inner, Inner::Empty))
            .finish()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        if let Some(frame) = this.ahead.pop() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let polled = match this.inner.project() {
            InnerProjection::Streaming { body } => body.poll_frame(cx),
            InnerProjection::ReadAhead { body } => body.as_mut().poll_frame(cx),
            InnerProjection::Empty => Poll::Ready(None),
        };
        match (&polled, this.span.as_deref()) {
            (Poll::Ready(Some(Err(_))), Some(held)) => {
                held.span().record("error.type", "stream_broken");
                held.span().record("otel.status_code", "error");
            }
            // The end of the answer is the end of its try.
            (Poll::Ready(None), Some(_)) => *this.span = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty()
            && match &self.inner {
                Inner::Streaming { body } => body.is_end_stream(),
                Inner::ReadAhead { body } => body.is_end_stream(),
                Inner::Empty => true,
            }
    }

    fn size_hint(&self) -> SizeHint {
        let hint = match &self.inner {
            Inner::Streaming { body } => body.size_hint(),
            Inner::ReadAhead { body } => body.size_hint(),
            Inner::Empty => SizeHint::with_exact(0),
        };
        let extra: u64 = self.ahead.data().map(|data| data.remaining() as u64).sum();
        if extra == 0 {
            return hint;
        }
        let mut adjusted = SizeHint::new();
        adjusted.set_lower(hint.lower().saturating_add(extra));
        if let Some(upper) = hint.upper() {
            adjusted.set_upper(upper.saturating_add(extra));
        }
        adjusted
    }
}
