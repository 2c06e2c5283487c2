//! [`ResponseBody`] of [`Retry`](crate::Retry).

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of [`Retry`](crate::Retry): the upstream body, streamed through
    /// unbuffered. The frames read ahead before the head was passed on (the first frame of a
    /// 2xx, an error body up to [`DRAIN_LIMIT`](crate::DRAIN_LIMIT)) are put back in front;
    /// a body that had to be polled before it was handed on is boxed.
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
        ahead: VecDeque<Frame<B::Data>>,
        #[pin]
        inner: Inner<B>,
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
            ahead: VecDeque::new(),
            inner: Inner::Streaming { body },
        }
    }

    /// A body with nothing in it.
    pub fn empty() -> Self {
        Self {
            ahead: VecDeque::new(),
            inner: Inner::Empty,
        }
    }

    /// A body whose first frames were already read from `rest` (`None` when it ended).
    pub(crate) fn read_ahead(ahead: VecDeque<Frame<B::Data>>, rest: Option<Pin<Box<B>>>) -> Self {
        Self {
            ahead,
            inner: rest.map_or(Inner::Empty, |body| Inner::ReadAhead { body }),
        }
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("read_ahead", &self.ahead.len())
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
        if let Some(frame) = this.ahead.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.inner.project() {
            InnerProjection::Streaming { body } => body.poll_frame(cx),
            InnerProjection::ReadAhead { body } => body.as_mut().poll_frame(cx),
            InnerProjection::Empty => Poll::Ready(None),
        }
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
        let extra: u64 = self
            .ahead
            .iter()
            .filter_map(Frame::data_ref)
            .map(|data| data.remaining() as u64)
            .sum();
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
