//! `TranslateLayer`: fallback across providers. Each attempt is translated from the API its
//! client speaks to the API of the deployment the balancer chose, and its answer back:
//!
//! | client speaks | deployment | request | answer, JSON and streams |
//! |---|---|---|---|
//! | OpenAI chat | OpenAI, Azure, OpenAI-compatible | untouched, not a byte parsed | untouched |
//! | OpenAI chat | Anthropic | → `…/messages` | → `chat.completion` / `chat.completion.chunk` |
//! | OpenAI chat | Gemini | → `…/models/{model}:generateContent` (`:streamGenerateContent?alt=sse`) | → `chat.completion` / `chat.completion.chunk` |
//! | Anthropic messages | Anthropic | untouched | untouched |
//! | Anthropic messages | OpenAI, Azure, custom (OpenAI-compatible) | → `…/chat/completions` | → `message` / Anthropic stream events |
//! | Anthropic messages | gemini | → OpenAI's shape → Gemini's, as above | → OpenAI's → `message` / Anthropic stream events |
//!
//! The client's API comes from the request path (`…/chat/completions`, `…/messages`), the
//! deployment's from its endpoint's `provider`. Fields: messages and roles, system prompts,
//! text and image parts (URLs and base64), tools and `tool_choice`, tool calls and results (ids
//! kept), `max_tokens` / `max_completion_tokens` (Anthropic requires one: the endpoint's
//! `default_max_tokens` when the client gave none), temperature, top_p, stop sequences, `stream` (and `stream_options.include_usage`),
//! `user`, `reasoning_effort` ↔ Anthropic's `thinking` and Gemini's `thinkingConfig`, a JSON
//! schema as Gemini's `responseJsonSchema`. Stop reasons, usage (cached and reasoning tokens
//! included), reasoning text (`reasoning_content` ↔ `thinking` blocks) and errors (the
//! provider's message kept) come back mapped. A field the deployment cannot honour (`logprobs`, `n > 1`, penalties,
//! `seed`, a JSON `response_format`, ...) is a 400 that names it and the deployment, never
//! silently dropped — unless the endpoint's [`Translation`](llm_tower_core::Translation)
//! lists it in `drop_unsupported`. Its `default_max_tokens` is what a request that names none
//! gets where the target requires one.
//!
//! Streams are translated event by event as they arrive; the balancer's first-byte and idle
//! timeouts, and its mid-stream continuation, apply to the translated stream.
//!
//! See [`Translate`] for an example.

mod anthropic;
mod body;
mod events;
mod fields;
mod future;
mod gemini;
mod layer;
mod openai;
mod openai_messages;
mod pair;
mod reasoning;
mod service;
mod through_openai;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::TranslateLayer;
pub use service::Translate;
