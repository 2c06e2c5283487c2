//! The span of one client request, for a tracing backend (see core's `telemetry.rs`): the
//! server span every attempt's span is a child of. It continues the trace the client's
//! `traceparent` names, and ends when the response body does, so that a stream's span lasts
//! as long as the stream. Disabled (and free) when nobody listens.

use http::{Request, StatusCode};
use llm_tower_core::{Caller, ErrorKind, TELEMETRY_TARGET, continue_trace};
use tracing::Span;
use tracing::field::Empty;

/// The span of `request`, from `caller` (the client key's name, when keys are checked), to
/// a stack mounted at `mounted_at`.
pub(crate) fn request_span<B>(
    request: &Request<B>,
    caller: Option<&Caller>,
    mounted_at: &str,
) -> Span {
    let path = request.uri().path();
    let span = tracing::trace_span!(
        target: TELEMETRY_TARGET,
        "request",
        otel.name = %format_args!("{} {mounted_at}{path}", request.method()),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = request.method().as_str(),
        url.path = %format_args!("{mounted_at}{path}"),
        http.response.status_code = Empty,
        error.type = Empty,
        llm_tower.client = caller.map(Caller::name),
    );
    continue_trace(&span, request.headers());
    span
}

/// Records the response's status (a 5xx is an error).
pub(crate) fn record_status(span: &Span, status: StatusCode) {
    if span.is_disabled() {
        return;
    }
    // Integers as `i64`: the exporter takes unsigned values for text.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "error");
    }
}

/// Records a body that failed after its head was sent.
pub(crate) fn record_failure(span: &Span, kind: ErrorKind) {
    span.record("error.type", kind.code());
    span.record("otel.status_code", "error");
}
