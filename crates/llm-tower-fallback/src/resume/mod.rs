//! Mid-stream continuation: when an answer's stream breaks (or stalls past its idle timeout)
//! after text reached the client, a deployment of the same model (then of the model's
//! chain) that declares `continuation: prefill` is sent the original request plus the text so
//! far, and only the rest of the answer goes on in the client's stream, as if nothing had
//! happened.
//!
//! - [`Resume`] is what the balancer's response body holds for such a stream (only when some
//!   deployment of the balancer can continue, and the answer is an OpenAI chat or an
//!   Anthropic messages stream). It reads what the client is sent (`openai.rs`,
//!   `anthropic.rs`: `Delivered`), passing complete events only, so that a stream cut inside
//!   an event never leaves half an event before the continuation.
//! - When the stream fails, it asks the balancer's [`Start`] for a continuation (at most
//!   `max_continuations` per request) and splices the answer in (`Splice`): for OpenAI, the
//!   first chunks' `id`, `model` and `created`, no second role chunk, one `[DONE]`; for
//!   Anthropic, no second `message_start` or start of the text block, the output usage summed.
//! - A continuation that is refused, or cannot be made, never hides the failure: the body
//!   fails with the original stream's error (which the client is then told in band).

mod anthropic;
mod openai;
mod start;

pub(crate) use start::offer_continuation;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use llm_tower_core::{BoxError, ClientApi, SseEvent, SseSplitter};

use crate::body::StreamWatch;

/// A continuation asked for: the continuing deployment's body and its watch, once it
/// answered with a stream (`None`: refused, failed, or no deployment could take it).
pub(crate) type Asked<B> = Pin<Box<dyn Future<Output = Option<(B, StreamWatch)>> + Send>>;

/// Asks for the continuation of an answer whose text so far is the argument (`None`: no
/// deployment may continue it now).
pub(crate) type Start<B> = Box<dyn FnMut(&str) -> Option<Asked<B>> + Send>;

/// The continuation state of one streamed answer.
pub(crate) struct Resume<B> {
    events: SseSplitter,
    delivered: Delivered,
    /// Set once a continuation's stream is the one read.
    splice: Option<Splice>,
    start: Start<B>,
    /// Continuations this request may still have.
    left: u32,
    /// The continuation being asked for, and the failure it would make good.
    asking: Option<(Asked<B>, BoxError)>,
}

impl<B> Resume<B> {
    /// The continuation state of a stream in `api`'s format (`None`: a format whose
    /// continuation is not spliced).
    pub(crate) fn new(api: ClientApi, start: Start<B>, max_continuations: u32) -> Option<Self> {
        Some(Self {
            events: SseSplitter::default(),
            delivered: Delivered::of(api)?,
            splice: None,
            start,
            left: max_continuations,
            asking: None,
        })
    }

    /// A piece of the stream being read: the complete events in it, as the client is to get
    /// them (the original stream's as they came, a continuation's rewritten).
    pub(crate) fn pass(&mut self, data: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        for event in self.events.push(data) {
            self.delivered.saw(&event);
            match &mut self.splice {
                None => out.extend_from_slice(&event.raw),
                Some(splice) => {
                    if let Some(bytes) = splice.rewrite(&event) {
                        out.extend_from_slice(&bytes);
                    }
                }
            }
        }
        out.freeze()
    }

    /// The stream ended cleanly: what is left of an event that never ended, as it came.
    pub(crate) fn end(&mut self) -> Bytes {
        Bytes::copy_from_slice(self.events.pending())
    }

    /// The stream failed with `err`. `Ok` when a continuation is being asked for; else the
    /// error, to pass on.
    pub(crate) fn failed(&mut self, err: BoxError) -> Result<(), BoxError> {
        if self.left == 0 || !self.delivered.continuable() {
            return Err(err);
        }
        let Some(asked) = (self.start)(self.delivered.text()) else {
            return Err(err);
        };
        self.left -= 1;
        tracing::info!(
            delivered_chars = self.delivered.text().chars().count(),
            "the stream broke after text reached the client; asking for its continuation"
        );
        self.asking = Some((asked, err));
        Ok(())
    }

    /// Whether a continuation is being asked for.
    pub(crate) fn asking(&self) -> bool {
        self.asking.is_some()
    }

    /// The continuation's body and watch, or the failure it was to make good.
    pub(crate) fn poll_asked(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(B, StreamWatch), BoxError>> {
        let Some((asked, _)) = &mut self.asking else {
            return Poll::Ready(Err("no continuation was asked for".into()));
        };
        let answered = ready!(asked.as_mut().poll(cx));
        let (_, err) = self.asking.take().expect("checked above");
        match (answered, self.delivered.splice()) {
            (Some(parts), Some(splice)) => {
                // The next stream's events are its own: nothing of the broken one's carries.
                self.events = SseSplitter::default();
                self.splice = Some(splice);
                Poll::Ready(Ok(parts))
            }
            _ => Poll::Ready(Err(err)),
        }
    }
}

/// The request that continues `delivered` (the text so far) in `api`'s format, calling the
/// model `model`.
pub(crate) fn prefill(
    api: ClientApi,
    request: &[u8],
    delivered: &str,
    model: Option<&str>,
) -> Option<Bytes> {
    match api {
        ClientApi::OpenAiChat => openai::prefill(request, delivered, model),
        ClientApi::AnthropicMessages => anthropic::prefill(request, delivered, model),
        ClientApi::OpenAiResponses | ClientApi::Other => None,
    }
}

/// What the client was sent, read in its API's format.
enum Delivered {
    OpenAi(openai::Delivered),
    Anthropic(anthropic::Delivered),
}

impl Delivered {
    fn of(api: ClientApi) -> Option<Self> {
        match api {
            ClientApi::OpenAiChat => Some(Self::OpenAi(openai::Delivered::default())),
            ClientApi::AnthropicMessages => Some(Self::Anthropic(anthropic::Delivered::default())),
            ClientApi::OpenAiResponses | ClientApi::Other => None,
        }
    }

    fn saw(&mut self, event: &SseEvent) {
        match self {
            Self::OpenAi(delivered) => delivered.saw(event),
            Self::Anthropic(delivered) => delivered.saw(event),
        }
    }

    fn continuable(&self) -> bool {
        match self {
            Self::OpenAi(delivered) => delivered.continuable(),
            Self::Anthropic(delivered) => delivered.continuable(),
        }
    }

    fn text(&self) -> &str {
        match self {
            Self::OpenAi(delivered) => &delivered.text,
            Self::Anthropic(delivered) => &delivered.text,
        }
    }

    fn splice(&self) -> Option<Splice> {
        match self {
            Self::OpenAi(delivered) => delivered.splice().map(Splice::OpenAi),
            Self::Anthropic(delivered) => Some(Splice::Anthropic(delivered.splice())),
        }
    }
}

/// How a continuation's events go on in the client's stream.
enum Splice {
    OpenAi(openai::Splice),
    Anthropic(anthropic::Splice),
}

impl Splice {
    fn rewrite(&mut self, event: &SseEvent) -> Option<Bytes> {
        match self {
            Self::OpenAi(splice) => splice.rewrite(event),
            Self::Anthropic(splice) => splice.rewrite(event),
        }
    }
}
