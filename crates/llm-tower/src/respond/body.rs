//! [`ResponseBody`] of [`Respond`](super::Respond).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use llm_tower_core::BoxError;
use pin_project_lite::pin_project;

use super::completion::Completion;

pin_project! {
    /// The body a client receives from the stack: the upstream body streamed through
    /// untouched, or the JSON of an error. Its error type is [`BoxError`], so it fits axum and
    /// hyper servers as it is.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use llm_tower::respond::ResponseBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body: ResponseBody<Empty<Bytes>> = ResponseBody::error(Bytes::from_static(b"{}"));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        state: State<B>,
        // Logs and counts the response when the body ends.
        completion: Option<Completion>,
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

pin_project! {
    #[project = StateProjection]
    #[derive(Debug)]
    enum State<B> {
        Upstream { #[pin] body: B },
        Error { json: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the upstream's body.
    pub fn upstream(body: B) -> Self {
        Self {
            state: State::Upstream { body },
            completion: None,
        }
    }

    /// A body of one error document.
    pub fn error(json: Bytes) -> Self {
        Self {
            state: State::Error { json: Some(json) },
            completion: None,
        }
    }

    pub(crate) fn with_completion(mut self, completion: Option<Completion>) -> Self {
        self.completion = completion;
        self
    }
}

/// An empty body: what a layer put over the stack answers with when it answers for it (tower-http's
/// `TimeoutLayer::with_status_code`, for one, needs a default body).
///
/// ```
/// use http_body::Body;
/// use llm_tower::respond::ResponseBody;
///
/// let body = ResponseBody::<llm_tower::HttpClientBody>::default();
/// assert!(body.is_end_stream());
/// ```
impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self {
            state: State::Error { json: None },
            completion: None,
        }
    }
}

impl<B: Body> State<B> {
    fn is_end(&self) -> bool {
        match self {
            Self::Upstream { body } => body.is_end_stream(),
            Self::Error { json } => json.is_none(),
        }
    }
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
        let frame = match this.state.as_mut().project() {
            StateProjection::Upstream { body } => {
                ready!(body.poll_frame(cx)).map(|f| f.map_err(Into::into))
            }
            StateProjection::Error { json } => json.take().map(|j| Ok(Frame::data(j))),
        };
        let ended = match &frame {
            // A body that knows it is over is not polled again: its last frame is its end.
            Some(Ok(_)) if !this.state.as_ref().get_ref().is_end() => return Poll::Ready(frame),
            Some(Ok(_)) | None => None,
            Some(Err(err)) => Some(err),
        };
        if let Some(completion) = this.completion.take() {
            completion.ended(ended);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.state.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Upstream { body } => body.size_hint(),
            State::Error { json } => {
                SizeHint::with_exact(json.as_ref().map_or(0, |j| j.len() as u64))
            }
        }
    }
}
