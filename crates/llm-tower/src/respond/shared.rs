//! [`Shared`]: what every clone of an [`Respond`](super::Respond) shares, its
//! settings, usage accounting and metric handles.

use std::sync::Arc;

#[cfg(feature = "metrics")]
use llm_tower_core::{Attempts, Caller};
use llm_tower_fallback::HealthRegistry;
use llm_tower_usage::Prices;

use super::accounting::Accounting;
use super::layer::Settings;

/// What every clone of an [`Respond`](super::Respond) shares.
pub(crate) struct Shared {
    settings: Settings,
    /// With usage on.
    accounting: Option<Accounting>,
    /// Where the stack is mounted (a prefix stripped before it), for the request span.
    mounted_at: Arc<str>,
    #[cfg(feature = "metrics")]
    metrics: super::metrics::MetricHandles,
}

impl Shared {
    pub(crate) fn mounted_at(&self) -> &str {
        &self.mounted_at
    }

    pub(crate) fn new(
        settings: Settings,
        prices: Arc<Prices>,
        registry: Option<HealthRegistry>,
        mounted_at: Arc<str>,
    ) -> Self {
        Self {
            settings,
            accounting: settings.usage.then(|| Accounting::new(prices, registry)),
            mounted_at,
            #[cfg(feature = "metrics")]
            metrics: super::metrics::MetricHandles::default(),
        }
    }

    pub(crate) fn settings(&self) -> Settings {
        self.settings
    }

    /// The usage accounting, when usage is on.
    pub(crate) fn accounting(&self) -> Option<&Accounting> {
        self.accounting.as_ref()
    }

    /// Counts a failure of this process's own resources.
    #[cfg(feature = "metrics")]
    pub(crate) fn record_local_failure(&self) {
        self.metrics.local_failure();
    }

    /// Counts a finished request and every attempt it made, and its usage.
    #[cfg(feature = "metrics")]
    pub(crate) fn record_metrics(
        &self,
        status: http::StatusCode,
        attempts: &Attempts,
        caller: Option<&Caller>,
        usage: Option<(&super::accounting::Accounted, &llm_tower_core::EndpointId)>,
    ) {
        self.metrics.request(status, caller);
        attempts.for_each(|attempt| self.metrics.record(attempt));
        if let Some((accounted, deployment)) = usage {
            self.metrics.usage(caller, accounted, deployment);
        }
    }
}
