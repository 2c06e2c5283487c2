//! [`Shared`]: what every clone of an [`Respond`](super::Respond) shares, its
//! settings and metric handles.

#[cfg(feature = "metrics")]
use llm_tower_core::{Attempts, Caller};

use super::layer::Settings;

/// What every clone of an [`Respond`](super::Respond) shares.
pub(crate) struct Shared {
    settings: Settings,
    #[cfg(feature = "metrics")]
    metrics: super::metrics::MetricHandles,
}

impl Shared {
    pub(crate) fn new(settings: Settings) -> Self {
        Self {
            settings,
            #[cfg(feature = "metrics")]
            metrics: super::metrics::MetricHandles::default(),
        }
    }

    pub(crate) fn settings(&self) -> Settings {
        self.settings
    }

    /// Counts a failure of this process's own resources.
    #[cfg(feature = "metrics")]
    pub(crate) fn record_local_failure(&self) {
        self.metrics.local_failure();
    }

    /// Counts a finished request and every attempt it made.
    #[cfg(feature = "metrics")]
    pub(crate) fn record_metrics(
        &self,
        status: http::StatusCode,
        attempts: &Attempts,
        caller: Option<&Caller>,
    ) {
        self.metrics.request(status, caller);
        attempts.for_each(|attempt| self.metrics.record(attempt));
    }
}
