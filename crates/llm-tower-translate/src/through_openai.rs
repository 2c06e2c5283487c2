//! An Anthropic messages client on a Gemini deployment: translated through OpenAI's chat
//! shape, both ways (Anthropic → OpenAI → Gemini, and back), rather than by a third pair of
//! translations that would say everything the other two say again. It costs a second pass
//! over each request and answer; a deployment in the client's own API costs nothing.

use bytes::BytesMut;
use http::StatusCode;
use llm_tower_core::{SseEvent, SseSplitter};

use crate::gemini::response::{self as gemini, StreamToOpenAi as GeminiStream};
use crate::openai::response::{completion_to_anthropic, error_to_anthropic};
use crate::openai::stream::StreamToAnthropic;

/// A Gemini response as an Anthropic message.
pub(crate) fn response_to_anthropic(response: &[u8], created: u64) -> Option<Vec<u8>> {
    completion_to_anthropic(&gemini::response_to_openai(response, created)?)
}

/// A Gemini error body of `status` in Anthropic's error shape.
pub(crate) fn error_to_anthropic_from_gemini(body: &[u8], status: StatusCode) -> Option<Vec<u8>> {
    error_to_anthropic(&gemini::error_to_openai(body)?, status)
}

/// A Gemini stream as Anthropic events: each Gemini event made OpenAI chunks, each chunk made
/// Anthropic events.
#[derive(Debug)]
pub(crate) struct GeminiToAnthropic {
    gemini: GeminiStream,
    chunks: SseSplitter,
    anthropic: StreamToAnthropic,
}

impl GeminiToAnthropic {
    pub(crate) fn new(created: u64) -> Self {
        Self {
            // The usage chunk is asked for: Anthropic's `message_delta` reports usage.
            gemini: GeminiStream::new(created, true),
            chunks: SseSplitter::default(),
            anthropic: StreamToAnthropic::default(),
        }
    }

    /// The client's events for one Gemini event.
    pub(crate) fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
        let mut chunks = BytesMut::new();
        self.gemini.event(event, &mut chunks);
        self.relay(&chunks, out);
    }

    /// The Gemini body ended: the end of the Anthropic message.
    pub(crate) fn end(&mut self, out: &mut BytesMut) {
        let mut chunks = BytesMut::new();
        self.gemini.end(&mut chunks);
        self.relay(&chunks, out);
    }

    fn relay(&mut self, chunks: &[u8], out: &mut BytesMut) {
        for chunk in self.chunks.push(chunks) {
            self.anthropic.event(&chunk, out);
        }
    }
}
