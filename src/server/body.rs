//! [`BodyDeadline`]: the whole request body must arrive by a deadline.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use llm_tower::{BoxError, Error, ErrorKind};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

pin_project! {
    /// The request body, failing with [`ErrorKind::RequestTimeout`] (408 from the balancer)
    /// when it has not all arrived by its deadline: a dripped upload is cut as surely as a
    /// stalled one. The timer is set only when the body has to be waited for: most bodies
    /// arrive with their head.
    pub(crate) struct BodyDeadline<B> {
        #[pin]
        inner: B,
        deadline: Instant,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> BodyDeadline<B> {
    pub(crate) fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + limit,
            timer: None,
        }
    }
}

impl<B> Body for BodyDeadline<B>
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
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = *this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(Box::new(Error::new(
            ErrorKind::RequestTimeout,
            "the request body did not arrive in time",
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
