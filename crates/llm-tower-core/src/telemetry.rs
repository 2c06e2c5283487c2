//! What a tracing backend is told of each request: the spans the stack makes under the target
//! [`TARGET`], named and attributed after OpenTelemetry's semantic conventions for generative
//! AI (`gen_ai.*`) and HTTP. Nothing here depends on OpenTelemetry: the spans are `tracing`
//! spans, which a `tracing-opentelemetry` layer exports (the facade's `otel` feature sets one
//! up), and trace context crosses the wire through two hooks that layer's owner installs
//! ([`set_propagation`]).
//!
//! **Free when nobody listens.** A span under [`TARGET`] that no subscriber enables is a
//! disabled span: its fields are never evaluated, and everything the stack would record on
//! it is skipped after one check ([`tracing::Span::is_disabled`]). A gateway that logs with
//! `tracing-subscriber`'s `fmt` keeps these spans out of its log lines with a per-layer
//! filter, so they cost nothing there either.
//!
//! **Never a prompt or a completion.** The attributes are names, counts, times and outcomes.

use std::sync::OnceLock;

use http::HeaderMap;

use crate::endpoint::Provider;

/// The `tracing` target of the request span and the attempt spans: enable it (and only it)
/// in the layer that exports spans.
pub const TARGET: &str = "llm_tower::otel";

/// Bucket bounds, in seconds, for histograms of request and attempt durations: the ones
/// OpenTelemetry's GenAI conventions advise for `gen_ai.client.operation.duration`, from
/// 10 ms doubling up to 82 s (an LLM call spans both ends), then doubled on to 655 s, so
/// that an answer that takes up to the default per-try timeout (600 s: a reasoning model,
/// not streamed) lands in a bucket of its own, not only in `+Inf`. Histograms with fixed
/// buckets, unlike summaries, add up across replicas, and recording into one is a search of
/// these bounds.
///
/// ```
/// use llm_tower_core::DURATION_BUCKETS;
///
/// assert_eq!(DURATION_BUCKETS.first(), Some(&0.01));
/// assert!(DURATION_BUCKETS.windows(2).all(|pair| pair[1] == pair[0] * 2.0));
/// assert!(DURATION_BUCKETS.last().unwrap() > &600.0);
/// ```
pub const DURATION_BUCKETS: [f64; 17] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84,
    327.68, 655.36,
];

/// The span of one attempt, as a response extension: the usage layer records the tokens it
/// reads on it. Set only when the span is enabled.
///
/// ```
/// use llm_tower_core::AttemptSpan;
///
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(AttemptSpan(tracing::Span::none()));
/// assert!(response.extensions().get::<AttemptSpan>().unwrap().0.is_disabled());
/// ```
#[derive(Clone, Debug)]
pub struct AttemptSpan(pub tracing::Span);

/// A span held open by whoever holds this, until it lets go: a response body, for the span
/// to last as long as the answer. Dropped, it enters and leaves the span once more, since
/// an exported span ends when it was last left (`tracing-opentelemetry` stamps the end
/// then, not when the span closes).
///
/// ```
/// use llm_tower_core::HeldSpan;
///
/// let held = HeldSpan::new(tracing::Span::none());
/// assert!(held.span().is_disabled());
/// ```
#[derive(Debug)]
pub struct HeldSpan(tracing::Span);

impl HeldSpan {
    /// Holds `span`.
    pub fn new(span: tracing::Span) -> Self {
        Self(span)
    }

    /// The span, to record on.
    pub fn span(&self) -> &tracing::Span {
        &self.0
    }
}

impl Drop for HeldSpan {
    fn drop(&mut self) {
        drop(self.0.enter());
    }
}

/// `gen_ai.operation.name` of a request to `path`: `chat` (OpenAI chat and Responses,
/// Anthropic messages), `text_completion`, `embeddings`, `generate_content` (Gemini), or
/// `None` for anything else.
///
/// ```
/// use llm_tower_core::operation_name;
///
/// assert_eq!(operation_name("/v1/chat/completions"), Some("chat"));
/// assert_eq!(operation_name("/v1/messages"), Some("chat"));
/// assert_eq!(operation_name("/v1beta/models/gemini-2.5-flash:streamGenerateContent"), Some("generate_content"));
/// assert_eq!(operation_name("/v1/embeddings"), Some("embeddings"));
/// assert_eq!(operation_name("/v1/models"), None);
/// ```
pub fn operation_name(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    if path.ends_with("/chat/completions")
        || path.ends_with("/messages")
        || path.ends_with("/responses")
    {
        Some("chat")
    } else if path.ends_with("/completions") {
        Some("text_completion")
    } else if path.ends_with("/embeddings") {
        Some("embeddings")
    } else if path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent") {
        Some("generate_content")
    } else {
        None
    }
}

/// `gen_ai.provider.name` of a deployment's provider (the conventions' well-known values;
/// an OpenAI-compatible server is `openai`, a custom scheme `custom`).
///
/// ```
/// use llm_tower_core::{Provider, provider_name};
///
/// assert_eq!(provider_name(&Provider::Azure), "azure.ai.openai");
/// assert_eq!(provider_name(&Provider::Gemini), "gcp.gemini");
/// ```
pub fn provider_name(provider: &Provider) -> &'static str {
    match provider {
        Provider::OpenAi => "openai",
        Provider::Azure => "azure.ai.openai",
        Provider::Anthropic => "anthropic",
        Provider::Gemini => "gcp.gemini",
        Provider::Custom { .. } => "custom",
    }
}

/// How trace context is written into an upstream request's headers for a span, and read
/// from a client's request for the span that serves it (W3C `traceparent`/`tracestate`).
type Inject = fn(&tracing::Span, &mut HeaderMap);
type Extract = fn(&tracing::Span, &HeaderMap);

static PROPAGATION: OnceLock<(Inject, Extract)> = OnceLock::new();

/// Installs how trace context crosses the wire, once per process (later calls are ignored):
/// whoever exports the spans knows their context. Until then, requests go out with the
/// headers they came with.
///
/// ```
/// use llm_tower_core::set_propagation;
///
/// set_propagation(|_span, headers| { headers.insert("traceparent", "00-…".parse().unwrap()); }, |_span, _headers| {});
/// ```
pub fn set_propagation(inject: Inject, extract: Extract) {
    let _ = PROPAGATION.set((inject, extract));
}

/// Writes `span`'s trace context into `headers` (an upstream request's), when propagation
/// is installed and the span enabled.
pub fn inject_context(span: &tracing::Span, headers: &mut HeaderMap) {
    if let Some((inject, _)) = PROPAGATION.get()
        && !span.is_disabled()
    {
        inject(span, headers);
    }
}

/// Makes `span` continue the trace a client's `headers` name, when propagation is installed
/// and the span enabled.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if let Some((_, extract)) = PROPAGATION.get()
        && !span.is_disabled()
    {
        extract(span, headers);
    }
}
