//! [`ResponseFuture`] of [`Translate`](crate::Translate).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response};
use http_body::Body;
use llm_tower_core::{BoxError, Error, is_event_stream};
use pin_project_lite::pin_project;

use crate::anthropic::stream::StreamToOpenAi;
use crate::body::{Events, ResponseBody, Translation};
use crate::gemini::response::StreamToOpenAi as GeminiStream;
use crate::openai::stream::StreamToAnthropic;
use crate::through_openai::GeminiToAnthropic;

pin_project! {
    /// Future of [`Translate`](crate::Translate): the inner service's response, its body set
    /// to be translated back into the client's API when the request was translated.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use llm_tower_core::BufferedBody;
    /// use llm_tower_translate::{ResponseFuture, TranslateLayer};
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let mut service = TranslateLayer::new().layer(service_fn(|_: Request<BufferedBody>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    /// }));
    /// let _future: ResponseFuture<_> = service.call(Request::new(BufferedBody::default()));
    /// ```
    #[project = Projection]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<F> {
        Passthrough { #[pin] future: F },
        Translated { #[pin] future: F, source: Source },
        Refused { error: Option<Error> },
    }
}

/// The API a translated attempt's answer comes in, and what its translation back needs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source {
    /// Anthropic messages, for an OpenAI chat client.
    Anthropic { created: u64, usage_in_stream: bool },
    /// Gemini, for an OpenAI chat client.
    Gemini { created: u64, usage_in_stream: bool },
    /// OpenAI chat, for an Anthropic messages client.
    OpenAi,
    /// Gemini, for an Anthropic messages client.
    GeminiForAnthropic { created: u64 },
}

impl Source {
    /// How an answer with this head comes back: an error, a stream, or a whole answer.
    fn translation<B>(self, response: &Response<B>) -> Translation {
        let status = response.status();
        let stream = is_event_stream(response.headers());
        match self {
            _ if !status.is_success() => match self {
                Self::Anthropic { .. } => Translation::AnthropicError,
                Self::Gemini { .. } => Translation::GeminiError,
                Self::OpenAi => Translation::OpenAiError(status),
                Self::GeminiForAnthropic { .. } => Translation::GeminiErrorForAnthropic(status),
            },
            Self::Anthropic {
                created,
                usage_in_stream,
            } if stream => Translation::stream(Events::Anthropic(StreamToOpenAi::new(
                created,
                usage_in_stream,
            ))),
            Self::Gemini {
                created,
                usage_in_stream,
            } if stream => {
                Translation::stream(Events::Gemini(GeminiStream::new(created, usage_in_stream)))
            }
            Self::OpenAi if stream => {
                Translation::stream(Events::OpenAi(StreamToAnthropic::default()))
            }
            Self::GeminiForAnthropic { created } if stream => {
                Translation::stream(Events::GeminiForAnthropic(GeminiToAnthropic::new(created)))
            }
            Self::Anthropic { created, .. } => Translation::AnthropicMessage { created },
            Self::Gemini { created, .. } => Translation::GeminiResponse { created },
            Self::OpenAi => Translation::OpenAiCompletion,
            Self::GeminiForAnthropic { created } => {
                Translation::GeminiResponseForAnthropic { created }
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            state: State::Passthrough { future },
        }
    }

    pub(crate) fn translated(future: F, source: Source) -> Self {
        Self {
            state: State::Translated { future, source },
        }
    }

    pub(crate) fn refused(error: Error) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: Body,
{
    type Output = Result<Response<ResponseBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Passthrough { future } => {
                let response = ready!(future.poll(cx)).map_err(Into::into)?;
                Poll::Ready(Ok(response.map(ResponseBody::passthrough)))
            }
            StateProjection::Translated { future, source } => {
                let response = ready!(future.poll(cx)).map_err(Into::into)?;
                let translation = source.translation(&response);
                Poll::Ready(Ok(translated(response, translation)))
            }
            StateProjection::Refused { error } => Poll::Ready(Err(error.take().map_or_else(
                || "ResponseFuture polled after completion".into(),
                Into::into,
            ))),
        }
    }
}

/// `response` with its body to be translated as `translation`: its length is no longer known,
/// and a whole answer is JSON.
fn translated<B>(mut response: Response<B>, translation: Translation) -> Response<ResponseBody<B>> {
    let headers = response.headers_mut();
    headers.remove(CONTENT_LENGTH);
    if !matches!(translation, Translation::Stream(_)) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response.map(|body| ResponseBody::translated(body, translation))
}
