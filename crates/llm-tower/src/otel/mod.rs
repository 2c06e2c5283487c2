//! OpenTelemetry: the stack's spans and the GenAI metrics, exported over OTLP/HTTP.
//!
//! The stack always makes its spans (under [`TELEMETRY_TARGET`](crate::TELEMETRY_TARGET):
//! one server span per request, from the [`Respond`](crate::Respond) layer, and one
//! `chat {model}` span per attempt, from the retry layer), and they cost nothing while no
//! subscriber enables that target. [`Telemetry`] (feature `otel`) is what enables it: a
//! `tracing-opentelemetry` layer exporting the spans, the GenAI client metrics read off
//! them (`genai_metrics.rs`), W3C trace context read from clients and written upstream,
//! and a count of the spans that never reached the receiver (`dropped.rs`). Exports run
//! off the request path, in the SDK's batch threads, through this crate's own HTTP client
//! (`export.rs`).

#[cfg(feature = "otel")]
mod dropped;
#[cfg(feature = "otel")]
mod export;
#[cfg(feature = "otel")]
mod genai_metrics;
mod settings;
#[cfg(feature = "otel")]
mod telemetry;

pub use settings::OtelSettings;
#[cfg(feature = "otel")]
pub use telemetry::{SPANS_DROPPED, Telemetry};
