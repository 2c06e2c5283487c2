//! [`RespondLayer`] and its settings.

use std::sync::Arc;

use tower::Layer;

use super::service::Respond;
use super::shared::Shared;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Settings {
    pub(crate) response_headers: bool,
    pub(crate) access_log: bool,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: bool,
}

/// Layer for [`Respond`]: the outermost layer of the stack.
///
/// ```
/// use llm_tower::RespondLayer;
///
/// let layer = RespondLayer::new().response_headers(true).access_log(true);
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, Default)]
pub struct RespondLayer {
    settings: Settings,
}

impl RespondLayer {
    /// Error responses and hop-by-hop stripping only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `x-llm-tower-endpoint`, `x-llm-tower-attempts` and (after a model fallback)
    /// `x-llm-tower-model` to responses.
    #[must_use]
    pub fn response_headers(mut self, on: bool) -> Self {
        self.settings.response_headers = on;
        self
    }

    /// Records attempts, retries, fallbacks and latency through the `metrics` facade (feature
    /// `metrics`; install a recorder to see them).
    #[cfg(feature = "metrics")]
    #[must_use]
    pub fn metrics(mut self, on: bool) -> Self {
        self.settings.metrics = on;
        self
    }

    /// Logs one `info` line per request with its status and attempts (target
    /// `llm_tower::access`).
    #[must_use]
    pub fn access_log(mut self, on: bool) -> Self {
        self.settings.access_log = on;
        self
    }
}

impl<S> Layer<S> for RespondLayer {
    type Service = Respond<S>;

    fn layer(&self, inner: S) -> Respond<S> {
        Respond::new(inner, Arc::new(Shared::new(self.settings)))
    }
}
