//! [`SingleFrame`]: the scripted upstream's response body.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// A response body of at most one data frame, optionally held back until a point in
/// Tokio's time.
///
/// Its size hint is exact. Empty data makes a body without frames.
///
/// ```
/// use std::time::Duration;
///
/// use http_body::Body;
/// use http_body_util::BodyExt;
/// use llm_tower_mock::scripted::SingleFrame;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let body = SingleFrame::new("hello").after(Duration::from_secs(30));
/// assert_eq!(body.size_hint().exact(), Some(5));
/// let started = tokio::time::Instant::now();
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
/// assert_eq!(started.elapsed(), Duration::from_secs(30));
///
/// assert!(SingleFrame::empty().is_end_stream());
/// # }
/// ```
#[derive(Debug, Default)]
pub struct SingleFrame {
    data: Option<Bytes>,
    /// When the frame may be sent, if it is held back.
    ready_at: Option<Instant>,
    /// The timer for `ready_at`, made when first polled.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl SingleFrame {
    /// A body of one frame of `data` (text, `Bytes`, …), sent at once.
    pub fn new(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        SingleFrame {
            data: (!data.is_empty()).then_some(data),
            ready_at: None,
            sleep: None,
        }
    }

    /// A body without frames.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Holds the frame back until `delay` from now (Tokio's clock).
    #[must_use]
    pub fn after(mut self, delay: Duration) -> Self {
        self.ready_at = Some(Instant::now() + delay);
        self.sleep = None;
        self
    }

    /// The bytes not yet read.
    pub fn bytes(&self) -> &[u8] {
        self.data.as_deref().unwrap_or_default()
    }

    /// The bytes not yet read, without waiting.
    pub fn into_bytes(self) -> Bytes {
        self.data.unwrap_or_default()
    }
}

impl Body for SingleFrame {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.data.is_some()
            && let Some(ready_at) = this.ready_at
        {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(ready_at)));
            std::task::ready!(sleep.as_mut().poll(cx));
            this.ready_at = None;
            this.sleep = None;
        }
        Poll::Ready(this.data.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.bytes().len() as u64)
    }
}
