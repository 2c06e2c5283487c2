//! [`RespondLayer`] and its settings.

use std::sync::Arc;

use llm_tower_fallback::HealthRegistry;
use llm_tower_usage::Prices;
use tower::Layer;

use super::service::Respond;
use super::shared::Shared;

// Independent switches, each set by a builder method of its own.
#[allow(clippy::struct_excessive_bools)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Settings {
    pub(crate) response_headers: bool,
    pub(crate) access_log: bool,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: bool,
    pub(crate) usage: bool,
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
    prices: Arc<Prices>,
    registry: Option<HealthRegistry>,
    mounted_at: Arc<str>,
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

    /// Says where the stack is mounted: the prefix a router strips from paths before the
    /// stack sees them (axum's `nest_service("/v1", …)`, the gateway's `mount`), so that the
    /// request's span names the path the client asked for (`url.path`).
    #[must_use]
    pub fn mounted_at(mut self, prefix: &str) -> Self {
        self.mounted_at = prefix.trim_end_matches('/').into();
        self
    }

    /// Logs one `info` line per request with its status and attempts (target
    /// `llm_tower::access`).
    #[must_use]
    pub fn access_log(mut self, on: bool) -> Self {
        self.settings.access_log = on;
        self
    }

    /// Accounts for the tokens of every answer: puts a [`UsageRecord`](crate::UsageRecord)
    /// on each request (for the usage layer further in to fill) and on its response, and once
    /// the answer has ended adds its tokens and cost ([`prices`](Self::prices)) to the access
    /// log line, the metrics (`llm_tower_tokens_total`, `llm_tower_cost_usd_total`) and its
    /// deployment's last minute.
    #[must_use]
    pub fn usage(mut self, on: bool) -> Self {
        self.settings.usage = on;
        self
    }

    /// The price table usage is priced with (default none: no cost is recorded). A model
    /// that answers without a price is said once in the log.
    #[must_use]
    pub fn prices(mut self, prices: Prices) -> Self {
        self.prices = Arc::new(prices);
        self
    }

    /// The price table, shared with the limits' budgets.
    #[must_use]
    pub(crate) fn shared_prices(mut self, prices: Arc<Prices>) -> Self {
        self.prices = prices;
        self
    }

    /// Where each deployment's tokens of the last minute are counted: the balancer's.
    #[must_use]
    pub(crate) fn health_registry(mut self, registry: HealthRegistry) -> Self {
        self.registry = Some(registry);
        self
    }
}

impl<S> Layer<S> for RespondLayer {
    type Service = Respond<S>;

    fn layer(&self, inner: S) -> Respond<S> {
        Respond::new(
            inner,
            Arc::new(Shared::new(
                self.settings,
                self.prices.clone(),
                self.registry.clone(),
                self.mounted_at.clone(),
            )),
        )
    }
}
