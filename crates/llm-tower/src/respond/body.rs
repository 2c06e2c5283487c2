//! [`ResponseBody`] of [`Respond`](super::Respond).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use llm_tower_core::{BoxError, ClientApi, Error, ErrorKind};
use pin_project_lite::pin_project;

use super::completion::Completion;

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
    // Out of line: the response is moved whole through every future outside the stack (a
    // server's, a router's, each middleware's), and the layers' bodies nested here are a few
    // hundred bytes; boxed, each of those moves is of the head and one pointer.
    inner: Pin<Box<Inner<B>>>,
}

pin_project! {
    struct Inner<B> {
        #[pin]
        state: State<B>,
        // Logs and counts the response when the body ends.
        completion: Option<Completion>,
        // For an event stream: the API in which a failure of the stream is told in band.
        in_band: Option<ClientApi>,
        // The stream's failure, once its event went out; `true` once the writer had its turn.
        failed: Option<(BoxError, bool)>,
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("state", &self.inner.state)
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
    fn new(state: State<B>) -> Self {
        Self {
            inner: Box::pin(Inner {
                state,
                completion: None,
                in_band: None,
                failed: None,
            }),
        }
    }

    /// Wraps the upstream's body.
    pub fn upstream(body: B) -> Self {
        Self::new(State::Upstream { body })
    }

    /// A body of one error document.
    pub fn error(json: Bytes) -> Self {
        Self::new(State::Error { json: Some(json) })
    }

    pub(crate) fn with_completion(mut self, completion: Option<Completion>) -> Self {
        *self.inner.as_mut().project().completion = completion;
        self
    }

    /// A failure of this event stream is told first as one event in `api`'s format, then as
    /// the body's error (which aborts the response): SDKs raise the event, clients that read
    /// the transport see the abort, and nobody takes the text so far for a whole answer.
    pub(crate) fn with_in_band_errors(mut self, api: Option<ClientApi>) -> Self {
        *self.inner.as_mut().project().in_band = api;
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
        Self::new(State::Error { json: None })
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

/// What the client is told of a stream that failed after it began: the failure's kind, and
/// that the answer is incomplete (never the cause chain, which can name internal hosts).
fn stream_failure(err: &(dyn std::error::Error + 'static)) -> Error {
    let kind = ErrorKind::of(err);
    let what = Error::find_in(err).map_or_else(
        || format!("the upstream stream failed ({})", kind.code()),
        |error| error.message().to_owned(),
    );
    Error::new(
        kind,
        format!("{what}; the response is incomplete, and was ended early"),
    )
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
        let mut this = self.get_mut().inner.as_mut().project();
        // What the body does is the request's: an attempt it makes (a continuation of a
        // broken stream) is a child of the request's span.
        let span = this.completion.as_ref().and_then(|c| c.span()).cloned();
        let _entered = span.as_ref().map(tracing::Span::enter);
        let frame = if let Some((err, flushed)) = this.failed.take() {
            if !flushed {
                // One turn for the writer before the error: hyper writes the frames it has
                // buffered only between polls of the body, and drops them on its error.
                *this.failed = Some((err, true));
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Some(Err(err))
        } else {
            match this.state.as_mut().project() {
                StateProjection::Upstream { body } => {
                    ready!(body.poll_frame(cx)).map(|f| f.map_err(Into::into))
                }
                StateProjection::Error { json } => json.take().map(|j| Ok(Frame::data(j))),
            }
        };
        let frame = match (frame, this.in_band.take()) {
            (Some(Err(err)), Some(api)) => {
                let event = api.stream_error_event(&stream_failure(&*err));
                *this.failed = Some((err, false));
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            (frame, in_band) => {
                *this.in_band = in_band;
                frame
            }
        };
        let ended = match &frame {
            // A body that knows it is over is not polled again: its last frame is its end.
            Some(Ok(_)) if !this.state.as_ref().get_ref().is_end() => return Poll::Ready(frame),
            Some(Ok(_)) | None => None,
            Some(Err(err)) => Some(err),
        };
        if let Some(completion) = this.completion.as_mut() {
            completion.end(ended);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.failed.is_none() && self.inner.state.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner.state {
            State::Upstream { body } => body.size_hint(),
            State::Error { json } => {
                SizeHint::with_exact(json.as_ref().map_or(0, |j| j.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http::{Request, Response};
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;
    use crate::RespondLayer;

    /// A body of `frames`, then `Err` when `fails` (a stream cut mid-way).
    struct Frames {
        frames: VecDeque<&'static str>,
        fails: bool,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if let Some(frame) = self.frames.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(frame.as_bytes())))));
            }
            if std::mem::take(&mut self.fails) {
                let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
                return Poll::Ready(Some(Err(reset.into())));
            }
            Poll::Ready(None)
        }
    }

    async fn through_respond(
        content_type: &'static str,
        path: &str,
        fails: bool,
    ) -> (String, bool) {
        let upstream = service_fn(move |_: Request<()>| async move {
            let body = Frames {
                frames: ["data: {\"a\":1}\n\n"].into(),
                fails,
            };
            let response = Response::builder()
                .header("content-type", content_type)
                .body(body);
            Ok::<_, BoxError>(response.unwrap())
        });
        let request = Request::post(path).body(()).unwrap();
        let response = RespondLayer::new()
            .layer(upstream)
            .oneshot(request)
            .await
            .unwrap();
        let mut body = response.into_body();
        let mut text = String::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => text.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap()),
                Err(_) => return (text, true),
            }
        }
        (text, false)
    }

    #[tokio::test]
    async fn a_broken_event_stream_is_told_in_band_then_aborted() {
        let (text, failed) = through_respond(
            "text/event-stream; charset=utf-8",
            "/v1/chat/completions",
            true,
        )
        .await;
        assert!(failed);
        let event = text.strip_prefix("data: {\"a\":1}\n\n").unwrap();
        assert!(
            event.starts_with("data: {\"error\":{") && event.ends_with("\n\n"),
            "{event}"
        );
        let json: serde_json::Value = serde_json::from_str(event["data: ".len()..].trim()).unwrap();
        assert_eq!(json["error"]["code"], "upstream_connection_closed");

        let (text, failed) = through_respond("text/event-stream", "/v1/messages", true).await;
        assert!(
            failed && text.contains("\n\nevent: error\ndata: {\"type\":\"error\""),
            "{text}"
        );
        // Whole streams, and other bodies, are left as they are.
        assert_eq!(
            through_respond("text/event-stream", "/v1/messages", false).await,
            ("data: {\"a\":1}\n\n".into(), false)
        );
        let (text, failed) =
            through_respond("application/json", "/v1/chat/completions", true).await;
        assert!(failed && !text.contains("error"), "{text}");
    }
}
