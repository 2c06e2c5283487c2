//! [`GenAiMetrics`]: the GenAI conventions' client metrics, read off the attempt spans as
//! they close (so they need no hook of their own in the stack, and count every attempt
//! whether its trace was sampled or not):
//!
//! | metric | unit | what |
//! |---|---|---|
//! | `gen_ai.client.operation.duration` | s | an attempt, from its request to its answer's end |
//! | `gen_ai.client.token.usage` | `{token}` | an answer's tokens, by `gen_ai.token.type` (`input`, `output`) |
//! | `gen_ai.server.time_to_first_token` | s | until a streamed answer's first chunk |
//!
//! Each with `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
//! `gen_ai.response.model` and `server.address` when known; the duration with `error.type`
//! for a failed attempt.

use std::time::Instant;

use llm_tower_core::DURATION_BUCKETS;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The name of the attempt spans (`llm-tower-retry`'s `span.rs`).
const ATTEMPT: &str = "upstream_attempt";

/// The conventions' advised bucket boundaries for tokens (for seconds: [`DURATION_BUCKETS`]).
const TOKENS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// The instruments, recorded when an attempt span closes.
pub(crate) struct GenAiMetrics {
    duration: Histogram<f64>,
    tokens: Histogram<u64>,
    first_token: Histogram<f64>,
}

impl GenAiMetrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            duration: meter
                .f64_histogram("gen_ai.client.operation.duration")
                .with_unit("s")
                .with_description("GenAI operation duration")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            tokens: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Number of input and output tokens used")
                .with_boundaries(TOKENS.to_vec())
                .build(),
            first_token: meter
                .f64_histogram("gen_ai.server.time_to_first_token")
                .with_unit("s")
                .with_description("Time to generate first token for successful responses")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
        }
    }
}

impl std::fmt::Debug for GenAiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenAiMetrics").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for GenAiMetrics
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != ATTEMPT {
            return;
        }
        let mut fields = AttemptFields {
            started: Some(Instant::now()),
            ..AttemptFields::default()
        };
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<AttemptFields>()
        {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(fields) = span.extensions_mut().remove::<AttemptFields>() else {
            return;
        };
        fields.record(self);
    }
}

/// What an attempt span said, as far as the metrics need it.
#[derive(Debug, Default)]
struct AttemptFields {
    started: Option<Instant>,
    operation: Option<String>,
    provider: Option<String>,
    request_model: Option<String>,
    response_model: Option<String>,
    server: Option<String>,
    error: Option<String>,
    input: Option<u64>,
    output: Option<u64>,
    first_chunk: Option<f64>,
}

impl AttemptFields {
    fn record(self, metrics: &GenAiMetrics) {
        // Only GenAI operations (not `/models`, `/files`): the name is required.
        if self.operation.is_none() {
            return;
        }
        let mut attributes = Vec::with_capacity(6);
        for (key, value) in [
            ("gen_ai.operation.name", &self.operation),
            ("gen_ai.provider.name", &self.provider),
            ("gen_ai.request.model", &self.request_model),
            ("gen_ai.response.model", &self.response_model),
            ("server.address", &self.server),
        ] {
            if let Some(value) = value {
                attributes.push(KeyValue::new(key, value.clone()));
            }
        }
        if let Some(first_chunk) = self.first_chunk {
            metrics.first_token.record(first_chunk, &attributes);
        }
        for (kind, tokens) in [("input", self.input), ("output", self.output)] {
            if let Some(tokens) = tokens {
                let mut typed = attributes.clone();
                typed.push(KeyValue::new("gen_ai.token.type", kind));
                metrics.tokens.record(tokens, &typed);
            }
        }
        if let Some(error) = self.error {
            attributes.push(KeyValue::new("error.type", error));
        }
        if let Some(started) = self.started {
            metrics
                .duration
                .record(started.elapsed().as_secs_f64(), &attributes);
        }
    }
}

impl Visit for AttemptFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "gen_ai.operation.name" => &mut self.operation,
            "gen_ai.provider.name" => &mut self.provider,
            "gen_ai.request.model" => &mut self.request_model,
            "gen_ai.response.model" => &mut self.response_model,
            "server.address" => &mut self.server,
            "error.type" => &mut self.error,
            _ => return,
        };
        *slot = Some(value.to_owned());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let value = u64::try_from(value).ok();
        match field.name() {
            "gen_ai.usage.input_tokens" => self.input = value,
            "gen_ai.usage.output_tokens" => self.output = value,
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "llm_tower.time_to_first_chunk" {
            self.first_chunk = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}
