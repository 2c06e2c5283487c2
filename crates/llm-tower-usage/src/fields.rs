//! A usage object as any of the APIs writes it, read leniently (a field that is missing or
//! not a count is left out), and merged over a stream: every API reports running totals, so
//! a later report of a field replaces the earlier one.

use llm_tower_core::Usage;
use serde::Deserialize;

use crate::format::Format;

/// The fields of a usage object, every API's names side by side.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct Fields {
    // OpenAI chat, completions and embeddings.
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
    // The Responses API, and Anthropic.
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
    // Anthropic's cache, apart from its `input_tokens`.
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    // Gemini.
    #[serde(rename = "promptTokenCount")]
    prompt_token_count: Option<u64>,
    #[serde(rename = "candidatesTokenCount")]
    candidates_token_count: Option<u64>,
    #[serde(rename = "cachedContentTokenCount")]
    cached_content_token_count: Option<u64>,
    #[serde(rename = "thoughtsTokenCount")]
    thoughts_token_count: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
struct Details {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

macro_rules! merge {
    ($into:ident, $from:ident, $($field:ident),*) => {
        $( if $from.$field.is_some() { $into.$field = $from.$field; } )*
    };
}

impl Fields {
    /// The usage object at the start of `json` (and whatever follows it), if it is one.
    pub(crate) fn read(json: &[u8]) -> Option<Self> {
        serde_json::Deserializer::from_slice(json)
            .into_iter::<Self>()
            .next()?
            .ok()
    }

    /// Takes the fields `later` reports: running totals, the later the truer.
    pub(crate) fn merge(&mut self, later: Self) {
        let this = self;
        merge!(
            this,
            later,
            prompt_tokens,
            completion_tokens,
            prompt_tokens_details,
            completion_tokens_details,
            input_tokens,
            output_tokens,
            input_tokens_details,
            output_tokens_details,
            cache_read_input_tokens,
            cache_creation_input_tokens,
            prompt_token_count,
            candidates_token_count,
            cached_content_token_count,
            thoughts_token_count
        );
    }

    /// The input and output this reports in `format` (each `None` when not reported), and
    /// the cached input and reasoning.
    pub(crate) fn reported(&self, format: Format) -> (Option<u64>, Option<u64>, u64, u64) {
        let detail = |details: &Option<Details>, pick: fn(&Details) -> Option<u64>| {
            details.as_ref().and_then(pick).unwrap_or(0)
        };
        match format {
            Format::OpenAiChat => (
                self.prompt_tokens,
                // Embeddings generate nothing: their usage has prompt tokens alone.
                self.completion_tokens.or(self.prompt_tokens.map(|_| 0)),
                detail(&self.prompt_tokens_details, |d| d.cached_tokens),
                detail(&self.completion_tokens_details, |d| d.reasoning_tokens),
            ),
            Format::Responses => (
                self.input_tokens,
                self.output_tokens,
                detail(&self.input_tokens_details, |d| d.cached_tokens),
                detail(&self.output_tokens_details, |d| d.reasoning_tokens),
            ),
            Format::Anthropic => {
                let cached = self.cache_read_input_tokens.unwrap_or(0);
                let input = self
                    .input_tokens
                    .map(|input| input + cached + self.cache_creation_input_tokens.unwrap_or(0));
                (input, self.output_tokens, cached, 0)
            }
            Format::Gemini => {
                let thoughts = self.thoughts_token_count.unwrap_or(0);
                let output = self
                    .candidates_token_count
                    .map(|candidates| candidates + thoughts)
                    .or(self.thoughts_token_count);
                (
                    self.prompt_token_count,
                    output,
                    self.cached_content_token_count.unwrap_or(0),
                    thoughts,
                )
            }
        }
    }

    /// The usage, when both input and output were reported.
    pub(crate) fn usage(&self, format: Format) -> Option<Usage> {
        let (input, output, cached_input, reasoning) = self.reported(format);
        Some(Usage {
            input: input?,
            output: output?,
            cached_input,
            reasoning,
            estimated: false,
        })
    }
}
