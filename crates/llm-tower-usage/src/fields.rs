//! A usage object as any of the APIs writes it, read leniently (a field that is missing or
//! not a whole number is left out) and without a document: its members are walked once
//! (core's [`for_each_member`]) and the counts taken by name. Over a stream they merge: every
//! API reports running totals, so a later report of a field replaces the earlier one.

use llm_tower_core::{Usage, for_each_member};

use crate::format::Format;

/// The counts of a usage object, every API's names side by side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    // OpenAI chat, completions and embeddings.
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    /// `prompt_tokens_details.cached_tokens`.
    prompt_cached: Option<u64>,
    /// `completion_tokens_details.reasoning_tokens`.
    completion_reasoning: Option<u64>,
    // The Responses API, and Anthropic.
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// `input_tokens_details.cached_tokens`.
    input_cached: Option<u64>,
    /// `output_tokens_details.reasoning_tokens`.
    output_reasoning: Option<u64>,
    // Anthropic's cache, apart from its `input_tokens`.
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    // Gemini.
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
}

impl Fields {
    /// The usage object at the start of `json` (and whatever follows it), if it is one.
    pub(crate) fn read(json: &[u8]) -> Option<Self> {
        let mut fields = Self::default();
        for_each_member(json, |key, value| {
            let value = &json[value];
            if value.first() == Some(&b'{') {
                for_each_member(value, |detail, count| {
                    fields.set(key, detail, &value[count]);
                });
            } else {
                fields.set(b"", key, value);
            }
        })?;
        Some(fields)
    }

    /// Takes the count `value` of `key` (in the object `parent`; `b""`: the usage object).
    fn set(&mut self, parent: &[u8], key: &[u8], value: &[u8]) {
        let slot = match (parent, key) {
            (b"", b"prompt_tokens") => &mut self.prompt_tokens,
            (b"", b"completion_tokens") => &mut self.completion_tokens,
            (b"prompt_tokens_details", b"cached_tokens") => &mut self.prompt_cached,
            (b"completion_tokens_details", b"reasoning_tokens") => &mut self.completion_reasoning,
            (b"", b"input_tokens") => &mut self.input_tokens,
            (b"", b"output_tokens") => &mut self.output_tokens,
            (b"input_tokens_details", b"cached_tokens") => &mut self.input_cached,
            (b"output_tokens_details", b"reasoning_tokens") => &mut self.output_reasoning,
            (b"", b"cache_read_input_tokens") => &mut self.cache_read_input_tokens,
            (b"", b"cache_creation_input_tokens") => &mut self.cache_creation_input_tokens,
            (b"", b"promptTokenCount") => &mut self.prompt_token_count,
            (b"", b"candidatesTokenCount") => &mut self.candidates_token_count,
            (b"", b"cachedContentTokenCount") => &mut self.cached_content_token_count,
            (b"", b"thoughtsTokenCount") => &mut self.thoughts_token_count,
            _ => return,
        };
        if let Some(count) = count_of(value) {
            *slot = Some(count);
        }
    }

    /// Takes the fields `later` reports: running totals, the later the truer.
    pub(crate) fn merge(&mut self, later: Self) {
        let pairs = [
            (&mut self.prompt_tokens, later.prompt_tokens),
            (&mut self.completion_tokens, later.completion_tokens),
            (&mut self.prompt_cached, later.prompt_cached),
            (&mut self.completion_reasoning, later.completion_reasoning),
            (&mut self.input_tokens, later.input_tokens),
            (&mut self.output_tokens, later.output_tokens),
            (&mut self.input_cached, later.input_cached),
            (&mut self.output_reasoning, later.output_reasoning),
            (
                &mut self.cache_read_input_tokens,
                later.cache_read_input_tokens,
            ),
            (
                &mut self.cache_creation_input_tokens,
                later.cache_creation_input_tokens,
            ),
            (&mut self.prompt_token_count, later.prompt_token_count),
            (
                &mut self.candidates_token_count,
                later.candidates_token_count,
            ),
            (
                &mut self.cached_content_token_count,
                later.cached_content_token_count,
            ),
            (&mut self.thoughts_token_count, later.thoughts_token_count),
        ];
        for (field, later) in pairs {
            if later.is_some() {
                *field = later;
            }
        }
    }

    /// The input and output this reports in `format` (each `None` when not reported), and
    /// the cached input and reasoning.
    pub(crate) fn reported(&self, format: Format) -> (Option<u64>, Option<u64>, u64, u64) {
        match format {
            Format::OpenAiChat => (
                self.prompt_tokens,
                // Embeddings generate nothing: their usage has prompt tokens alone.
                self.completion_tokens.or(self.prompt_tokens.map(|_| 0)),
                self.prompt_cached.unwrap_or(0),
                self.completion_reasoning.unwrap_or(0),
            ),
            Format::Responses => (
                self.input_tokens,
                self.output_tokens,
                self.input_cached.unwrap_or(0),
                self.output_reasoning.unwrap_or(0),
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
                    .map(|candidates| candidates.saturating_add(thoughts))
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

/// A whole, non-negative number as JSON writes it (`None`: anything else).
fn count_of(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    // Digit by digit: the bytes are already at hand, and `str::parse` would check them again.
    value.iter().try_fold(0u64, |count, &byte| {
        let digit = byte.checked_sub(b'0').filter(|digit| *digit < 10)?;
        count.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::count_of;

    #[test]
    fn counts_are_whole_non_negative_numbers_that_fit() {
        for (value, count) in [
            ("0", Some(0)),
            ("9", Some(9)),
            ("1234", Some(1234)),
            ("007", Some(7)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("99999999999999999999", None),
            ("", None),
            ("-1", None),
            ("+1", None),
            ("1.5", None),
            ("1e3", None),
            (" 1", None),
            ("1 ", None),
            ("null", None),
            ("\"12\"", None),
            ("/", None),
            (":", None),
        ] {
            assert_eq!(count_of(value.as_bytes()), count, "{value}");
        }
    }
}
