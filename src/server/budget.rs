//! [`BodyBudget`]: how many request body bytes the whole process may hold at once.
//!
//! The balancer buffers every request body (up to `max_body_bytes`) so that it can send it
//! again on a retry or a fallback. Each body alone is capped; their sum is what this bounds:
//! without it, a hundred clients each sending 30 MB take 3 GB, and one HTTP/2 connection
//! with a few hundred streams over a gigabyte.
//!
//! A request takes its share from the budget as its bytes arrive, frame by frame, and a
//! body that declares a `content-length` that does not fit in what is left is refused at
//! once, on its head alone (never after it was read whole). The declared length is not
//! taken ahead: a client that declares 32 MiB and then sends a byte every few seconds would
//! otherwise hold 32 MiB of everyone's budget for nothing until its body deadline. What a
//! request took is given back when its response head goes out, or when it is dropped
//! unanswered: by then the balancer has let go of the body (nothing keeps a request body
//! while the response streams).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use llm_tower::{BoxError, Error, ErrorKind};
use pin_project_lite::pin_project;

/// How long a client refused for want of memory is asked to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The process's budget for buffered request bytes; shared by every connection of a
/// listener.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
    /// `llm_tower_requests_refused_total{reason="buffered_bytes"}`, registered once.
    refused: metrics::Counter,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            refused: metrics::counter!(
                "llm_tower_requests_refused_total",
                "reason" => "buffered_bytes"
            ),
        })
    }

    /// Takes `bytes` if they fit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes held by requests now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The share of a request whose body declares `declared` bytes (0 when it declares
    /// none), empty at first; or the refusal to send when that many bytes do not fit in
    /// what is left now. A body larger than the whole budget is let through here: no single
    /// body may be that large (`max_body_bytes` is at most the budget), and the balancer
    /// refuses it with 413 before reading it.
    pub(crate) fn share(self: &Arc<Self>, declared: u64) -> Result<Arc<Share>, Error> {
        let declared = usize::try_from(declared).unwrap_or(usize::MAX);
        let left = self.limit.saturating_sub(self.used.load(Ordering::Acquire));
        if declared <= self.limit && declared > left {
            return Err(self.refusal());
        }
        Ok(Arc::new(Share {
            budget: self.clone(),
            taken: AtomicUsize::new(0),
        }))
    }

    fn refusal(&self) -> Error {
        self.refused.increment(1);
        tracing::warn!(
            limit = self.limit,
            "request refused: the gateway holds as many request bytes as server.max_buffered_bytes allows"
        );
        Error::new(
            ErrorKind::Overloaded,
            "the gateway is holding as many request bodies as it may; retry shortly",
        )
        .with_retry_after(RETRY_AFTER)
    }
}

/// What one request took from the budget; given back when the last holder drops it (the
/// request's body, and the request's future until its response head is out).
#[derive(Debug)]
pub(crate) struct Share {
    budget: Arc<BodyBudget>,
    taken: AtomicUsize,
}

impl Share {
    /// Makes room for a body that has now read `read` bytes in all.
    fn cover(&self, read: usize) -> Result<(), Error> {
        let taken = self.taken.load(Ordering::Relaxed);
        if read <= taken {
            return Ok(());
        }
        if !self.budget.take(read - taken) {
            return Err(self.budget.refusal());
        }
        self.taken.store(read, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.give_back(*self.taken.get_mut());
    }
}

pin_project! {
    /// A request body that takes each of its bytes from the budget before handing it on;
    /// the first that does not fit ends the body with [`ErrorKind::Overloaded`] (503 from
    /// the balancer), and reading stops there.
    pub(crate) struct Budgeted<B> {
        #[pin]
        inner: B,
        share: Arc<Share>,
        read: usize,
    }
}

impl<B> Budgeted<B> {
    pub(crate) fn new(inner: B, share: Arc<Share>) -> Self {
        Self {
            inner,
            share,
            read: 0,
        }
    }
}

impl<B> Body for Budgeted<B>
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
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other.map(|f| f.map_err(Into::into))),
        };
        if let Some(data) = frame.data_ref() {
            *this.read += data.len();
            if let Err(refusal) = this.share.cover(*this.read) {
                return Poll::Ready(Some(Err(Box::new(refusal))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    use http_body_util::BodyExt;

    /// A body of several frames with no size hint, like a chunked upload.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunked(frames: &[&'static [u8]]) -> Chunks {
        Chunks(frames.iter().map(|f| Bytes::from_static(f)).collect())
    }

    #[tokio::test]
    async fn a_declared_length_that_cannot_fit_is_refused_before_reading_and_not_taken_ahead() {
        let budget = BodyBudget::new(10);
        let first = budget.share(6).unwrap();
        assert_eq!(budget.used(), 0, "declared, not yet sent: nothing held");
        let body = Budgeted::new(chunked(&[b"abcdef"]), first.clone());
        body.collect().await.unwrap();
        assert_eq!(budget.used(), 6);
        let err = budget.share(5).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Overloaded);
        assert_eq!(err.status(), 503);
        let response: http::Response<Bytes> = err.to_response();
        assert_eq!(response.headers()["retry-after"], "1");
        // Larger than the whole budget: left to the balancer's 413.
        let huge = budget.share(11).unwrap();
        assert_eq!(budget.used(), 6);
        drop((first, huge));
        assert_eq!(budget.used(), 0);
        assert!(budget.share(10).is_ok());
    }

    #[tokio::test]
    async fn a_chunked_body_takes_its_bytes_as_they_come_and_stops_at_the_first_that_does_not_fit()
    {
        let budget = BodyBudget::new(10);
        let held = budget.share(5).unwrap();
        Budgeted::new(chunked(&[b"12345"]), held.clone())
            .collect()
            .await
            .unwrap();
        let share = budget.share(0).unwrap();
        let body = Budgeted::new(chunked(&[b"abc", b"def", b"ghi"]), share.clone());
        let err = body.collect().await.unwrap_err();
        assert_eq!(Error::find_in(&*err).unwrap().kind(), ErrorKind::Overloaded);
        // The first frame fitted, the second did not: 5 + 3 held.
        assert_eq!(budget.used(), 8);
        drop((held, share));
        assert_eq!(budget.used(), 0);
        // A body that fits takes what it read, until its share is dropped.
        let share = budget.share(9).unwrap();
        let body = Budgeted::new(chunked(&[b"abc", b"def", b"ghi"]), share.clone());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdefghi");
        assert_eq!(budget.used(), 9);
        drop(share);
        assert_eq!(budget.used(), 0);
    }
}
