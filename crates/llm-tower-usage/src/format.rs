//! [`Format`]: which API an attempt's answer is in, from the path it was sent to (after any
//! translation: the deployment's own API), and what that API calls its usage and its text.

use memchr::memmem::Finder;
use std::sync::LazyLock;

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

    /// The keys of a stream event's generated text (what an estimate counts).
    pub(crate) fn text_keys(self) -> &'static [Finder<'static>] {
        static OPENAI: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
            [
                Finder::new(b"\"content\":"),
                Finder::new(b"\"arguments\":"),
                Finder::new(b"\"reasoning_content\":"),
            ]
        });
        static RESPONSES: LazyLock<[Finder<'static>; 1]> =
            LazyLock::new(|| [Finder::new(b"\"delta\":")]);
        static ANTHROPIC: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
            [
                Finder::new(b"\"text\":"),
                Finder::new(b"\"partial_json\":"),
                Finder::new(b"\"thinking\":"),
            ]
        });
        static GEMINI: LazyLock<[Finder<'static>; 1]> =
            LazyLock::new(|| [Finder::new(b"\"text\":")]);
        match self {
            Self::OpenAiChat => &*OPENAI,
            Self::Responses => &*RESPONSES,
            Self::Anthropic => &*ANTHROPIC,
            Self::Gemini => &*GEMINI,
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
}
