//! Spans that never reach the receiver, counted: [`Bounded`] keeps the batch processor's
//! queue from overflowing unseen (a span that would overflow it is dropped here and
//! counted), and [`Counted`] counts the spans of every batch the receiver did not take
//! (unreachable, refused, too slow). Both in [`Dropped`], which `/metrics` and
//! [`Telemetry::spans_dropped`](super::Telemetry::spans_dropped) read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};

/// The most spans waiting for export; the batch processor's own queue is larger, so that it
/// never drops one itself.
pub(crate) const MAX_QUEUED: usize = 2048;

/// What was dropped, and what is queued.
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    queued: AtomicUsize,
    dropped: AtomicU64,
}

impl Dropped {
    pub(crate) fn count(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn add(&self, spans: usize) {
        self.dropped.fetch_add(spans as u64, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(super::telemetry::SPANS_DROPPED).increment(spans as u64);
    }
}

/// The batch processor, behind a bound of [`MAX_QUEUED`] spans counted here.
#[derive(Debug)]
pub(crate) struct Bounded {
    pub(crate) inner: BatchSpanProcessor,
    pub(crate) dropped: Arc<Dropped>,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.dropped.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
            self.dropped.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped.add(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting the spans of the batches that fail.
#[derive(Debug)]
pub(crate) struct Counted<E> {
    pub(crate) inner: E,
    pub(crate) dropped: Arc<Dropped>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        // Out of the queue either way.
        self.dropped.queued.fetch_sub(spans, Ordering::Relaxed);
        let result = self.inner.export(batch).await;
        if result.is_err() {
            self.dropped.add(spans);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
