//! [`ResponseBody`] of [`ErrorResponse`](super::ErrorResponse).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use llm_tower_core::BoxError;
use pin_project_lite::pin_project;

pin_project! {
    /// The body a client receives from the stack: the upstream body streamed through
    /// untouched, or the JSON of an error. Its error type is [`BoxError`], so it fits axum and
    /// hyper servers as it is.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use llm_tower::error_response::ResponseBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body: ResponseBody<Empty<Bytes>> = ResponseBody::error(Bytes::from_static(b"{}"));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        state: State<B>,
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
        }
    }

    /// A body of one error document.
    pub fn error(json: Bytes) -> Self {
        Self {
            state: State::Error { json: Some(json) },
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
        match self.project().state.project() {
            StateProjection::Upstream { body } => body.poll_frame(cx).map_err(Into::into),
            StateProjection::Error { json } => Poll::Ready(json.take().map(|j| Ok(Frame::data(j)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Upstream { body } => body.is_end_stream(),
            State::Error { json } => json.is_none(),
        }
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
