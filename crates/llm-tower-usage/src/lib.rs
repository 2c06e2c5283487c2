//! `UsageLayer`: the tokens of every answer, read as it passes, and what they cost.
//!
//! Each attempt's answer is read in its deployment's own API (the layer sits below
//! translation), streamed or not, without holding a byte back and without building a
//! document: a stream is read event by event, a JSON answer's usage object found at its end by
//! its key, and only that object parsed.
//!
//! | API (from the attempt's path) | where the usage is | input · output · cached · reasoning |
//! |---|---|---|
//! | OpenAI chat, completions, embeddings | `usage`; a stream's last chunk (asked for, see below) | `prompt_tokens` · `completion_tokens` · `prompt_tokens_details.cached_tokens` · `completion_tokens_details.reasoning_tokens` |
//! | OpenAI Responses | `usage`; a stream's `response.completed` | `input_tokens` · `output_tokens` · `input_tokens_details.cached_tokens` · `output_tokens_details.reasoning_tokens` |
//! | Anthropic messages | `usage`; a stream's `message_start`, then `message_delta` | `input_tokens` + `cache_read_input_tokens` + `cache_creation_input_tokens` · `output_tokens` · `cache_read_input_tokens` · — |
//! | Gemini | `usageMetadata`, in every chunk of a stream | `promptTokenCount` · `candidatesTokenCount` + `thoughtsTokenCount` · `cachedContentTokenCount` · `thoughtsTokenCount` |
//!
//! An OpenAI-format stream reports usage only when asked: a client that did not ask is asked
//! for it, and the extra chunk (with the `"usage": null` every other chunk then carries) taken
//! out of its stream, so that the client sees the stream it would have seen. An endpoint that
//! refuses the option says `stream_usage: false`.
//!
//! A stream that breaks off or that its client abandons records what was reported, and
//! estimates the rest ([`Usage::estimated`](llm_tower_core::Usage)): output from the text
//! delivered, at about 4 characters a token; input from the request's size. Only answers are
//! read: a failed attempt records nothing.
//!
//! [`Prices`] is the price table the accounting prices usage with.
//!
//! See [`ReadUsage`] for an example.

mod ask;
mod body;
mod fields;
mod format;
mod future;
mod layer;
mod prices;
mod response_model;
mod scan;
mod service;
mod strip;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::UsageLayer;
pub use prices::{Price, Prices};
pub use service::ReadUsage;
