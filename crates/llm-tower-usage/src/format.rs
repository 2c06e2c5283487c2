//! [`Format`]: which API an attempt's answer is in, from the path it was sent to (after any
//! translation: the deployment's own API), and what that API calls its usage and its text.

use aho_corasick::{AhoCorasick, Input, Match, MatchKind, Span, packed};
use memchr::memmem::Finder;
use std::sync::LazyLock;

/// The pattern of [`Format::event_keys`] that is the usage key; [`END_MARKER`] the end marker;
/// the text keys follow.
pub(crate) const USAGE_KEY: usize = 0;
/// See [`USAGE_KEY`].
pub(crate) const END_MARKER: usize = 1;

/// The API of an answer, as far as its usage goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenAI chat completions (also legacy completions and embeddings): `usage` with
    /// `prompt_tokens` and `completion_tokens`; streams report it in a last chunk, when asked.
    OpenAiChat,
    /// OpenAI's Responses API: `usage` with `input_tokens` and `output_tokens`; streams in
    /// `response.completed`.
    Responses,
    /// Anthropic messages: `usage` with `input_tokens` (cache reads and writes apart) and
    /// `output_tokens`; streams in `message_start`, then `message_delta`.
    Anthropic,
    /// Gemini `generateContent`: `usageMetadata`, in every chunk of a stream.
    Gemini,
}

impl Format {
    /// The format of answers to a request sent to `path` (`None`: an API without usage, such
    /// as `/models`).
    pub(crate) fn of_path(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions")
            || path.ends_with("/completions")
            || path.ends_with("/embeddings")
        {
            Some(Self::OpenAiChat)
        } else if path.ends_with("/responses") {
            Some(Self::Responses)
        } else if path.ends_with("/messages") {
            Some(Self::Anthropic)
        } else if path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent") {
            Some(Self::Gemini)
        } else {
            None
        }
    }

    /// The key of the usage object.
    pub(crate) fn usage_key(self) -> &'static Finder<'static> {
        static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
        static METADATA: LazyLock<Finder<'static>> =
            LazyLock::new(|| Finder::new(b"\"usageMetadata\""));
        match self {
            Self::Gemini => &METADATA,
            _ => &USAGE,
        }
    }

    /// What a stream's last event holds (`[DONE]`, `message_stop`, `response.completed`, a
    /// Gemini `finishReason`): a stream that ended without it broke off, however cleanly its
    /// connection closed.
    pub(crate) fn end_marker(self) -> &'static Finder<'static> {
        static DONE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"[DONE]"));
        static STOP: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"message_stop\""));
        static COMPLETED: LazyLock<Finder<'static>> =
            LazyLock::new(|| Finder::new(b"response.completed"));
        static FINISHED: LazyLock<Finder<'static>> =
            LazyLock::new(|| Finder::new(b"\"finishReason\""));
        match self {
            Self::OpenAiChat => &DONE,
            Self::Anthropic => &STOP,
            Self::Responses => &COMPLETED,
            Self::Gemini => &FINISHED,
        }
    }

    /// Every key a stream event is read for, searched in one pass: the usage key (pattern
    /// [`USAGE_KEY`]), the end marker ([`END_MARKER`]), then the text keys. An event is
    /// searched once instead of once per key: most events are text, where the search is
    /// most of the cost of reading them.
    ///
    /// No key of a format is the start of another, so no two begin at one place: a search
    /// that resumes a byte after the last key's start finds every occurrence of each (see
    /// [`Scanner`](crate::scan::Scanner)'s `data`).
    pub(crate) fn event_keys(self) -> &'static EventKeys {
        static OPENAI: LazyLock<EventKeys> = LazyLock::new(|| EventKeys::of(Format::OpenAiChat));
        static RESPONSES: LazyLock<EventKeys> = LazyLock::new(|| EventKeys::of(Format::Responses));
        static ANTHROPIC: LazyLock<EventKeys> = LazyLock::new(|| EventKeys::of(Format::Anthropic));
        static GEMINI: LazyLock<EventKeys> = LazyLock::new(|| EventKeys::of(Format::Gemini));
        match self {
            Self::OpenAiChat => &OPENAI,
            Self::Responses => &RESPONSES,
            Self::Anthropic => &ANTHROPIC,
            Self::Gemini => &GEMINI,
        }
    }

    /// The keys of [`event_keys`](Self::event_keys), in the order of their pattern numbers.
    fn event_keys_in_order(self) -> impl Iterator<Item = &'static [u8]> {
        [self.usage_key().needle(), self.end_marker().needle()]
            .into_iter()
            .chain(self.text_keys().iter().copied())
    }

    /// The keys of a stream event's generated text (what an estimate counts).
    pub(crate) fn text_keys(self) -> &'static [&'static [u8]] {
        match self {
            Self::OpenAiChat => &[
                b"\"content\":",
                b"\"arguments\":",
                b"\"reasoning_content\":",
            ],
            Self::Responses => &[b"\"delta\":"],
            Self::Anthropic => &[b"\"text\":", b"\"partial_json\":", b"\"thinking\":"],
            Self::Gemini => &[b"\"text\":"],
        }
    }
}

/// The searcher of [`Format::event_keys`]. SIMD "Teddy", which tells the keys apart by their
/// first four bytes at once, where the target has it (x86-64 with SSSE3 or AVX2, aarch64 with
/// NEON); else an automaton. (Left to choose, the crate filters candidates by the keys' first
/// byte, which is `"` for most of them: it stepped byte by byte at every JSON string.)
pub(crate) enum EventKeys {
    Packed(packed::Searcher),
    Automaton(AhoCorasick),
}

impl EventKeys {
    fn of(format: Format) -> Self {
        match packed::Searcher::new(format.event_keys_in_order()) {
            Some(searcher) => Self::Packed(searcher),
            None => Self::automaton(format),
        }
    }

    /// The searcher where the target has no Teddy.
    pub(crate) fn automaton(format: Format) -> Self {
        Self::Automaton(
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(format.event_keys_in_order())
                .expect("a few short keys make a searcher"),
        )
    }

    /// The first key in `haystack` that starts at `from` or after.
    pub(crate) fn find(&self, haystack: &[u8], from: usize) -> Option<Match> {
        let span = Span::from(from..haystack.len());
        match self {
            Self::Packed(searcher) => searcher.find_in(haystack, span),
            Self::Automaton(searcher) => searcher.find(Input::new(haystack).span(span)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_path_the_attempt_went_to() {
        for (path, format) in [
            ("/v1/chat/completions", Some(Format::OpenAiChat)),
            (
                "/openai/deployments/gpt4o/chat/completions",
                Some(Format::OpenAiChat),
            ),
            ("/v1/embeddings", Some(Format::OpenAiChat)),
            ("/v1/responses", Some(Format::Responses)),
            ("/v1/messages", Some(Format::Anthropic)),
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                Some(Format::Gemini),
            ),
            ("/v1/models", None),
            ("/v1/responses/resp_1/cancel", None),
        ] {
            assert_eq!(Format::of_path(path), format, "{path}");
        }
    }

    /// What the one-pass search of an event relies on to find every key: no two keys of a
    /// format begin at one place, which only a key that starts another could.
    #[test]
    fn no_key_of_an_event_is_the_start_of_another() {
        for format in [
            Format::OpenAiChat,
            Format::Responses,
            Format::Anthropic,
            Format::Gemini,
        ] {
            let keys: Vec<&[u8]> = format.event_keys_in_order().collect();
            // Each key is found as itself: the pattern numbers are the keys' places.
            for (i, key) in keys.iter().enumerate() {
                let found = format
                    .event_keys()
                    .find(key, 0)
                    .expect("a key finds itself");
                assert_eq!(
                    (found.pattern().as_usize(), found.span()),
                    (i, (0..key.len()).into())
                );
            }
            for (i, a) in keys.iter().enumerate() {
                for (j, b) in keys.iter().enumerate() {
                    assert!(
                        i == j || !b.starts_with(a),
                        "{format:?}: {a:?} starts {b:?}"
                    );
                }
            }
        }
    }
}
