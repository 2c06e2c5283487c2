//! [`Telemetry`]: the OpenTelemetry pipeline, started from [`OtelSettings`].

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use llm_tower_core::{ConfigError, TELEMETRY_TARGET, set_propagation};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use super::OtelSettings;
use super::dropped::{Bounded, Counted, Dropped, MAX_QUEUED};
use super::export::ExportClient;
use super::genai_metrics::GenAiMetrics;
use crate::{ClientSettings, HttpClient};

/// How long an export may take, unless `OTEL_EXPORTER_OTLP_TIMEOUT` (ms) says.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The metric counting spans that never reached the receiver.
pub const SPANS_DROPPED: &str = "llm_tower_otel_spans_dropped_total";

/// `OTEL_EXPORTER_OTLP_TIMEOUT`, else [`EXPORT_TIMEOUT`].
fn export_timeout() -> Duration {
    std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT")
        .ok()
        .and_then(|ms| ms.trim().parse().ok())
        .map_or(EXPORT_TIMEOUT, Duration::from_millis)
}

/// The OpenTelemetry pipeline: started from [`OtelSettings`], added to a `tracing`
/// subscriber with [`layer`](Self::layer), flushed with [`shutdown`](Self::shutdown).
///
/// ```
/// use llm_tower::otel::{OtelSettings, Telemetry};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
/// # async fn main() {
/// let settings = OtelSettings { endpoint: Some("http://127.0.0.1:4318".into()), ..OtelSettings::default() };
/// let telemetry = Telemetry::start(&settings).unwrap();
/// let subscriber = tracing_subscriber::registry().with(telemetry.layer());
/// tracing::subscriber::with_default(subscriber, || {
///     // Requests through an `Upstream` stack are traced here.
/// });
/// assert_eq!(telemetry.spans_dropped(), 0);
/// tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct Telemetry {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
    dropped: Arc<Dropped>,
}

impl Telemetry {
    /// Starts exporting: spans in batches and metrics every `OTEL_METRIC_EXPORT_INTERVAL`
    /// (60 s by default), sent on the current Tokio runtime, and trace context propagated
    /// for this process's stacks from now on.
    ///
    /// # Errors
    ///
    /// Invalid settings, or a call outside a Tokio runtime.
    pub fn start(settings: &OtelSettings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::invalid("otel", "telemetry must be started within a Tokio runtime")
        })?;
        let client = HttpClient::new(&ClientSettings::default())?;
        let timeout = export_timeout();
        let export = || ExportClient::new(client.clone(), runtime.clone(), timeout);
        let headers: std::collections::HashMap<String, String> = settings
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose_secret().to_owned()))
            .collect();
        let resource = resource(settings);

        let mut spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(export())
            .with_protocol(Protocol::HttpBinary)
            .with_headers(headers.clone());
        if let Some(url) = settings.traces_url()? {
            spans = spans.with_endpoint(url);
        }
        let spans = spans.build().map_err(|err| exporter_error(&err))?;
        let dropped = Arc::new(Dropped::default());
        let batches = BatchSpanProcessor::builder(Counted {
            inner: spans,
            dropped: dropped.clone(),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                // Never full before the bound in front of it is: every drop is counted there.
                .with_max_queue_size(2 * MAX_QUEUED)
                .build(),
        )
        .build();
        let mut tracer = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: batches,
                dropped: dropped.clone(),
            })
            .with_resource(resource.clone());
        if let Some(ratio) = settings.sample_ratio {
            tracer = tracer.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(ratio),
            )));
        }
        let tracer = tracer.build();

        let mut metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_http_client(export())
            .with_protocol(Protocol::HttpBinary)
            .with_headers(headers);
        if let Some(url) = settings.metrics_url()? {
            metrics = metrics.with_endpoint(url);
        }
        let metrics = metrics.build().map_err(|err| exporter_error(&err))?;
        let meter = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics).build())
            .with_resource(resource)
            .build();

        set_propagation(inject, extract);
        Ok(Self {
            tracer,
            meter,
            dropped,
        })
    }

    /// The layer to add to a `tracing` subscriber: it exports the spans of the
    /// [`TELEMETRY_TARGET`](crate::TELEMETRY_TARGET) target (and nothing else: no log line
    /// becomes a span event), and records the GenAI metrics from them.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let spans = tracing_opentelemetry::layer()
            .with_tracer(self.tracer.tracer("llm-tower"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false);
        let metrics = GenAiMetrics::new(&self.meter.meter("llm-tower"));
        spans
            .and_then(metrics)
            .with_filter(Targets::new().with_target(TELEMETRY_TARGET, tracing::Level::TRACE))
    }

    /// Spans that never reached the receiver: dropped because too many waited for it, or
    /// in a batch it did not take (also [`SPANS_DROPPED`], with the `metrics` feature).
    pub fn spans_dropped(&self) -> u64 {
        self.dropped.count()
    }

    /// Shows [`SPANS_DROPPED`] at zero, for a rate over it to have a first sample: call it
    /// once the `metrics` recorder is installed.
    #[cfg(feature = "metrics")]
    pub fn describe_metrics(&self) {
        metrics::counter!(SPANS_DROPPED).increment(0);
    }

    /// Sends what is waiting and stops. It blocks until then (at most the export timeout
    /// per signal): call it off the runtime's workers, with `spawn_blocking`.
    pub fn shutdown(self) {
        if let Err(err) = self.tracer.shutdown() {
            tracing::warn!(error = %err, "spans not all exported at shutdown");
        }
        if let Err(err) = self.meter.shutdown() {
            tracing::warn!(error = %err, "metrics not all exported at shutdown");
        }
    }
}

/// `service.name` (the settings', else `OTEL_SERVICE_NAME`'s, else `llm-tower`), the
/// attributes of `OTEL_RESOURCE_ATTRIBUTES`, and `service.version`.
fn resource(settings: &OtelSettings) -> Resource {
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    match &settings.service_name {
        Some(name) => resource = resource.with_service_name(name.clone()),
        None if std::env::var_os("OTEL_SERVICE_NAME").is_none() => {
            resource = resource.with_service_name("llm-tower");
        }
        None => {}
    }
    resource.build()
}

fn exporter_error(err: &dyn std::fmt::Display) -> ConfigError {
    ConfigError::invalid("otel", format!("cannot make the OTLP exporter: {err}"))
}

/// Writes the span's context as `traceparent` (and `tracestate`) into an upstream request:
/// what `TraceContextPropagator` writes, on the stack rather than through `format!` and a
/// header name parsed per call (this runs for every attempt).
fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let context = span.context();
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return;
    }
    // `00-{trace id}-{span id}-{flags}`, lowercase hex.
    let mut traceparent = [b'-'; 55];
    traceparent[..2].copy_from_slice(b"00");
    write_hex(&mut traceparent[3..35], &span_context.trace_id().to_bytes());
    write_hex(&mut traceparent[36..52], &span_context.span_id().to_bytes());
    write_hex(
        &mut traceparent[53..],
        &[span_context.trace_flags().to_u8() & 1],
    );
    if let Ok(value) = HeaderValue::from_bytes(&traceparent) {
        headers.insert(TRACEPARENT, value);
    }
    let state = span_context.trace_state().header();
    match HeaderValue::try_from(state) {
        Ok(value) if !value.is_empty() => {
            headers.insert(TRACESTATE, value);
        }
        _ => {
            // The client's, which the trace no longer carries.
            headers.remove(TRACESTATE);
        }
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
}

/// Makes the span continue the trace a client's `traceparent` names.
fn extract(span: &tracing::Span, headers: &HeaderMap) {
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}
