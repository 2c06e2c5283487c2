//! Mid-stream continuation: when an answer's stream breaks (or stalls past its idle timeout)
//! after text reached the client, a deployment of the same model (then of the model's
//! chain) that declares `continuation: prefill` is sent the original request plus the text so
//! far, and only the rest of the answer goes on in the client's stream, as if nothing had
//! happened.
//!
//! - [`Resume`] is what the balancer's response body holds for such a stream (only when some
//!   deployment of the balancer can continue, and the answer is an OpenAI chat stream). It
//!   reads what the client is sent ([`openai::Delivered`]), passing complete events only, so
//!   that a stream cut inside an event never leaves half an event before the continuation.
//! - When the stream fails, it asks the balancer's [`Start`] for a continuation (at most
//!   `max_continuations` per request) and splices the answer in ([`openai::Splice`]): the
//!   first chunks' `id`, `model` and `created`, no second role chunk, one `[DONE]`.
//! - A continuation that is refused, or cannot be made, never hides the failure: the body
//!   fails with the original stream's error (which the client is then told in band).

pub(crate) mod openai;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use llm_tower_core::{BoxError, SseSplitter};

use crate::body::StreamWatch;
use openai::{Delivered, Splice};

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
    pub(crate) fn new(start: Start<B>, max_continuations: u32) -> Self {
        Self {
            events: SseSplitter::default(),
            delivered: Delivered::default(),
            splice: None,
            start,
            left: max_continuations,
            asking: None,
        }
    }

    /// A piece of the stream being read: the complete events in it, as the client is to get
    /// them (the original stream's as they came, a continuation's rewritten).
    pub(crate) fn pass(&mut self, data: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        for event in self.events.push(data) {
            self.delivered.saw(&event);
            match &self.splice {
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
        let Some(asked) = (self.start)(&self.delivered.text) else {
            return Err(err);
        };
        self.left -= 1;
        tracing::info!(
            delivered_chars = self.delivered.text.chars().count(),
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
        match (answered, self.delivered.identity.clone()) {
            (Some(parts), Some(identity)) => {
                // The next stream's events are its own: nothing of the broken one's carries.
                self.events = SseSplitter::default();
                self.splice = Some(Splice::new(identity));
                Poll::Ready(Ok(parts))
            }
            _ => Poll::Ready(Err(err)),
        }
    }
}
