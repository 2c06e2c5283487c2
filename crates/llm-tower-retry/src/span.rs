//! The span of one try, for a tracing backend (see core's `telemetry.rs`): named
//! `{operation} {model}` (`chat gpt-4o`) with the GenAI conventions' attributes, the
//! deployment, the attempt's kind and how it ended. When no subscriber enables the target,
//! the span is disabled and nothing here does any work past that check.

use http::Request;
use llm_tower_core::{
    AttemptKind, Attempts, ModelName, Outcome, SingleTry, TELEMETRY_TARGET, UsageRecord,
    model_in_path, operation_name, provider_name,
};
use tracing::Span;
use tracing::field::Empty;

use crate::attempt::Target;

/// The span of try `retry` (0: the first) of `request` to `target`.
pub(crate) fn attempt_span<B>(request: &Request<B>, target: &Target<'_>, retry: u32) -> Span {
    // The values are worked out only for an enabled span: the macro evaluates them then.
    let endpoint = || target.selected.map(|selected| &selected.0);
    let model = || model_asked(request, target);
    tracing::trace_span!(
        target: TELEMETRY_TARGET,
        "upstream_attempt",
        otel.name = %SpanName(operation_name(request.uri().path()), model().as_deref()),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = operation_name(request.uri().path()),
        gen_ai.provider.name = endpoint().map(|endpoint| provider_name(endpoint.provider())),
        gen_ai.request.model = model().as_deref(),
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        llm_tower.time_to_first_chunk = Empty,
        server.address = endpoint().map(|endpoint| endpoint.base_url().authority().host()),
        server.port = endpoint()
            .and_then(|endpoint| endpoint.base_url().authority().port_u16())
            .map(i64::from),
        http.response.status_code = Empty,
        error.type = Empty,
        llm_tower.deployment = target.recorded_as.as_str(),
        llm_tower.attempt.kind = kind(request, target, retry),
        llm_tower.attempt.outcome = Empty,
    )
}

/// The model asked for: the one the balancer routed the request to, else the one the usage
/// layer read from its body, else the one its path names (Gemini's API).
fn model_asked<B>(request: &Request<B>, target: &Target<'_>) -> Option<ModelName> {
    target
        .model
        .cloned()
        .or_else(|| UsageRecord::of(request.extensions())?.model())
        .or_else(|| model_in_path(request.uri().path()).map(ModelName::from))
}

/// `first`, `retry`, `fallback`, `hedge`, `continuation` or `probe` (the half-open probe of
/// a deployment that was cooling down: a single try that continues nothing).
fn kind<B>(request: &Request<B>, target: &Target<'_>, retry: u32) -> &'static str {
    if retry > 0 {
        return AttemptKind::Retry.as_str();
    }
    let continuation = target.kind == Some(AttemptKind::Continuation);
    if !continuation && SingleTry::of(request.extensions()) {
        return "probe";
    }
    if let Some(kind) = target.kind {
        return kind.as_str();
    }
    let first = target.log.is_none_or(Attempts::is_empty);
    if first {
        AttemptKind::First.as_str()
    } else {
        AttemptKind::Fallback.as_str()
    }
}

/// The try's span until its outcome is known: dropped before (a hedge that lost, a client
/// gone before the head, an outer timeout), it says the try was cancelled.
pub(crate) struct Unfinished(Option<Span>);

impl Unfinished {
    pub(crate) fn new(span: &Span) -> Self {
        Self(Some(span.clone()))
    }

    /// The outcome is known: the span, to record it on.
    pub(crate) fn finish(mut self) -> Span {
        self.0.take().unwrap_or_else(Span::none)
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(span) = self.0.take()
            && !span.is_disabled()
        {
            span.record("error.type", "cancelled");
            span.record("otel.status_code", "error");
        }
    }
}

/// Records how the try ended: its status, and for a failure `error.type` (the status code,
/// or the error's kind) and an error status.
pub(crate) fn record_outcome(span: &Span, outcome: Outcome) {
    if span.is_disabled() {
        return;
    }
    span.record(
        "llm_tower.attempt.outcome",
        tracing::field::display(outcome),
    );
    match outcome {
        Outcome::Status(status) => {
            // Integers as `i64`: the exporter takes unsigned values for text.
            span.record("http.response.status_code", i64::from(status.as_u16()));
            if !status.is_success() {
                span.record("error.type", status.as_str());
                span.record("otel.status_code", "error");
            }
        }
        Outcome::Error(kind) => {
            span.record("error.type", kind.code());
            span.record("otel.status_code", "error");
        }
    }
}

/// `{operation} {model}`, or whichever of them is known (`upstream` when neither is).
struct SpanName<'a>(Option<&'static str>, Option<&'a str>);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0, self.1) {
            (Some(operation), Some(model)) => write!(f, "{operation} {model}"),
            (Some(name), None) | (None, Some(name)) => f.write_str(name),
            (None, None) => f.write_str("upstream"),
        }
    }
}
