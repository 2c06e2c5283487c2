//! [`RetryLayer`]: the settings shared by every clone of a [`Retry`] service.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use llm_tower_core::{ConfigError, EndpointId, RetryPolicy};
use tower::Layer;
use tower::retry::budget::TpsBudget;

use crate::service::Retry;
use crate::settings::{RetryBudget, RetrySettings};

/// What every clone of the layer and its services shares: settings and per-endpoint budgets.
#[derive(Clone)]
pub(crate) struct RetryState {
    pub(crate) settings: RetrySettings,
    pub(crate) default_policy: RetryPolicy,
    budgets: Arc<DashMap<EndpointId, Arc<TpsBudget>>>,
}

impl RetryState {
    pub(crate) fn budget_for(&self, id: &EndpointId) -> Arc<TpsBudget> {
        if let Some(budget) = self.budgets.get(id) {
            return budget.clone();
        }
        self.budgets
            .entry(id.clone())
            .or_insert_with(|| {
                let b = self.settings.budget;
                Arc::new(TpsBudget::new(b.ttl, b.min_per_second, b.percent / 100.0))
            })
            .clone()
    }

    /// The longest `Retry-After` slept before retrying under `policy`.
    pub(crate) fn max_retry_after(&self, policy: &RetryPolicy) -> Duration {
        self.settings
            .max_retry_after
            .or_else(|| policy.max_interval())
            .unwrap_or(crate::DEFAULT_MAX_RETRY_AFTER)
    }
}

/// Layer that retries; see the [crate documentation](crate).
///
/// ```
/// use llm_tower_retry::{RetryBudget, RetryLayer};
///
/// let layer = RetryLayer::new()
///     .budget(RetryBudget { percent: 10.0, ..RetryBudget::default() })
///     .unwrap();
/// // Out-of-range settings are an error naming the field, never a panic.
/// let err = RetryLayer::new().budget(RetryBudget { percent: -1.0, ..RetryBudget::default() });
/// assert!(err.unwrap_err().to_string().contains("retry_budget.percent"));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct RetryLayer {
    state: RetryState,
}

impl fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("settings", &self.state.settings)
            .field("default_policy", &self.state.default_policy)
            .finish_non_exhaustive()
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryLayer {
    /// A layer with the default [`RetrySettings`] and, for requests without a
    /// [`Selected`](llm_tower_core::Selected) endpoint, the default policy
    /// (`ExponentialBackoff` with its defaults).
    pub fn new() -> Self {
        Self {
            state: RetryState {
                settings: RetrySettings::default(),
                default_policy: RetryPolicy::default(),
                budgets: Arc::new(DashMap::new()),
            },
        }
    }

    /// A layer with these settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field that is out of range.
    pub fn with_settings(settings: RetrySettings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let mut layer = Self::new();
        layer.state.settings = settings;
        Ok(layer)
    }

    /// The policy for requests without a [`Selected`](llm_tower_core::Selected) endpoint.
    #[must_use]
    pub fn default_policy(mut self, policy: RetryPolicy) -> Self {
        self.state.default_policy = policy;
        self
    }

    /// The retry budget kept per endpoint. Budgets already handed out keep their settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when `percent` is outside 0..=1000 or `ttl` outside
    /// 1 s..=60 s.
    pub fn budget(mut self, budget: RetryBudget) -> Result<Self, ConfigError> {
        budget.validate()?;
        self.state.settings.budget = budget;
        self.state.budgets = Arc::new(DashMap::new());
        Ok(self)
    }

    /// The longest `Retry-After` wait that is slept before retrying; longer waits stop the
    /// retries and become a [`CooldownHint`](llm_tower_core::CooldownHint). Default: the
    /// policy's `max_interval`, or 5 s.
    #[must_use]
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.state.settings.max_retry_after = Some(max);
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> &RetrySettings {
        &self.state.settings
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, self.state.clone())
    }
}
