//! [`ResponseBody`] of [`Retry`](crate::Retry).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of [`Retry`](crate::Retry): the upstream body, streamed through
    /// unbuffered. When the first frame was read ahead for `first_byte_timeout`, it is put
    /// back in front (that body is boxed: it had to be polled before it was handed on).
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
        first: Option<Frame<B::Data>>,
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
            first: None,
            inner: Inner::Streaming { body },
        }
    }

    /// A body with nothing in it.
    pub fn empty() -> Self {
        Self {
            first: None,
            inner: Inner::Empty,
        }
    }

    /// A body whose first frame was already read from `rest`.
    pub(crate) fn read_ahead(first: Option<Frame<B::Data>>, rest: Pin<Box<B>>) -> Self {
        Self {
            first,
            inner: Inner::ReadAhead { body: rest },
        }
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("read_ahead", &self.first.is_some())
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
        if let Some(frame) = this.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.inner.project() {
            InnerProjection::Streaming { body } => body.poll_frame(cx),
            InnerProjection::ReadAhead { body } => body.as_mut().poll_frame(cx),
            InnerProjection::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none()
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
        let Some(extra) = self.first.as_ref().and_then(Frame::data_ref) else {
            return hint;
        };
        let extra = extra.remaining() as u64;
        let mut adjusted = SizeHint::new();
        adjusted.set_lower(hint.lower() + extra);
        if let Some(upper) = hint.upper() {
            adjusted.set_upper(upper + extra);
        }
        adjusted
    }
}
