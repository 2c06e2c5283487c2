//! [`ResponseBody`] of [`Translate`](crate::Translate): the answer, back in the client's API.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use llm_tower_core::{BoxError, Error, ErrorKind, SseEvent, SseSplitter};
use pin_project_lite::pin_project;

use crate::anthropic::response::{error_to_openai, message_to_openai};
use crate::anthropic::stream::StreamToOpenAi;
use crate::gemini::response::{self as gemini, StreamToOpenAi as GeminiStream};
use crate::openai::response::{completion_to_anthropic, error_to_anthropic};
use crate::openai::stream::StreamToAnthropic;
use crate::through_openai::{
    GeminiToAnthropic, error_to_anthropic_from_gemini, response_to_anthropic,
};

/// The most of a JSON answer or error gathered to translate it: answers are small, and a body
/// larger than this is not one.
const MAX_GATHERED: usize = 16 * 1024 * 1024;

/// How a translated answer's body comes back.
#[derive(Debug)]
pub(crate) enum Translation {
    /// An Anthropic message, gathered whole, as a `chat.completion`.
    AnthropicMessage { created: u64 },
    /// An Anthropic error body, gathered whole, in OpenAI's error shape.
    AnthropicError,
    /// An OpenAI `chat.completion`, gathered whole, as an Anthropic message.
    OpenAiCompletion,
    /// An OpenAI error body of this status, gathered whole, in Anthropic's error shape.
    OpenAiError(http::StatusCode),
    /// A Gemini response, gathered whole, as a `chat.completion`.
    GeminiResponse { created: u64 },
    /// A Gemini error body, gathered whole, in OpenAI's error shape.
    GeminiError,
    /// A Gemini response, gathered whole, as an Anthropic message.
    GeminiResponseForAnthropic { created: u64 },
    /// A Gemini error body of this status, gathered whole, in Anthropic's error shape.
    GeminiErrorForAnthropic(http::StatusCode),
    /// A stream, event by event.
    Stream(Box<(SseSplitter, Events)>),
}

/// A stream's translation, by the format the upstream streams in.
#[derive(Debug)]
pub(crate) enum Events {
    Anthropic(StreamToOpenAi),
    OpenAi(StreamToAnthropic),
    Gemini(GeminiStream),
    GeminiForAnthropic(GeminiToAnthropic),
}

impl Events {
    /// The client's bytes for one upstream event.
    fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
        match self {
            Self::Anthropic(state) => state.event(event, out),
            Self::OpenAi(state) => state.event(event, out),
            Self::Gemini(state) => state.event(event, out),
            Self::GeminiForAnthropic(state) => state.event(event, out),
        }
    }

    /// The upstream body ended. Gemini streams end with their body, so their end is said now;
    /// the others said it in their last event.
    fn end(&mut self, out: &mut BytesMut) {
        match self {
            Self::Gemini(state) => state.end(out),
            Self::GeminiForAnthropic(state) => state.end(out),
            Self::Anthropic(_) | Self::OpenAi(_) => {}
        }
    }
}

impl Translation {
    pub(crate) fn stream(events: Events) -> Self {
        Self::Stream(Box::new((SseSplitter::default(), events)))
    }
}

pin_project! {
    /// The response body of [`Translate`](crate::Translate): the upstream body as it came
    /// (a deployment that speaks the client's API), or translated back into the client's
    /// API — a stream event by event as it arrives, a JSON answer or error once whole.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use llm_tower_translate::ResponseBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body = ResponseBody::passthrough(Full::new(Bytes::from_static(b"as it came")));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "as it came");
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        // Boxed: most answers pass through, and every response is moved whole through the
        // futures outside.
        translating: Option<Box<Translating>>,
    }
}

/// A translated answer's state: how it is translated, the answer gathered so far (a whole
/// JSON document), and whether the translation went out.
#[derive(Debug)]
struct Translating {
    translation: Translation,
    gathered: BytesMut,
    done: bool,
}

impl<B> ResponseBody<B> {
    /// The upstream body, untouched.
    pub fn passthrough(inner: B) -> Self {
        Self {
            inner,
            translating: None,
        }
    }

    pub(crate) fn translated(inner: B, translation: Translation) -> Self {
        Self {
            inner,
            translating: Some(Box::new(Translating {
                translation,
                gathered: BytesMut::new(),
                done: false,
            })),
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if this.translating.as_ref().is_some_and(|t| t.done) {
            return Poll::Ready(None);
        }
        loop {
            let frame = ready!(this.inner.as_mut().poll_frame(cx));
            let Some(translating) = this.translating.as_deref_mut() else {
                return Poll::Ready(frame.map(|f| {
                    f.map(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
                        .map_err(Into::into)
                }));
            };
            let Translating {
                translation,
                gathered,
                done,
            } = translating;
            let data = match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => data.copy_to_bytes(data.remaining()),
                    // Trailers of a translated answer mean nothing to the client's API.
                    Err(_) => continue,
                },
                Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
                None => {
                    *done = true;
                    let gathered = std::mem::take(gathered).freeze();
                    let out = match translation {
                        Translation::AnthropicMessage { created } => {
                            message_to_openai(&gathered, *created)
                        }
                        Translation::AnthropicError => error_to_openai(&gathered),
                        Translation::OpenAiCompletion => completion_to_anthropic(&gathered),
                        Translation::OpenAiError(status) => error_to_anthropic(&gathered, *status),
                        Translation::GeminiResponse { created } => {
                            gemini::response_to_openai(&gathered, *created)
                        }
                        Translation::GeminiError => gemini::error_to_openai(&gathered),
                        Translation::GeminiResponseForAnthropic { created } => {
                            response_to_anthropic(&gathered, *created)
                        }
                        Translation::GeminiErrorForAnthropic(status) => {
                            error_to_anthropic_from_gemini(&gathered, *status)
                        }
                        Translation::Stream(stream) => {
                            let mut out = BytesMut::new();
                            stream.1.end(&mut out);
                            return Poll::Ready(
                                (!out.is_empty()).then(|| Ok(Frame::data(out.freeze()))),
                            );
                        }
                    };
                    // What cannot be read as the provider's is passed on as it came.
                    let out = out.map_or(gathered, Bytes::from);
                    return Poll::Ready((!out.is_empty()).then(|| Ok(Frame::data(out))));
                }
            };
            if let Translation::Stream(stream) = translation {
                let (events, state) = &mut **stream;
                let mut out = BytesMut::new();
                for event in events.push(&data) {
                    state.event(&event, &mut out);
                }
                if !out.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                }
                continue;
            }
            // A whole answer or error: gathered, within reason.
            if gathered.len() + data.len() > MAX_GATHERED {
                return Poll::Ready(Some(Err(Error::new(
                    ErrorKind::Protocol,
                    "the answer is too large to translate",
                )
                .into())));
            }
            gathered.extend_from_slice(&data);
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.translating {
            None => self.inner.is_end_stream(),
            Some(translating) => translating.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.translating {
            None => self.inner.size_hint(),
            Some(_) => SizeHint::new(),
        }
    }
}
