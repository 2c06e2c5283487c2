//! [`RetryLayer`]: builds [`Retry`] services over a shared state (`state.rs`).

use std::fmt;
use std::time::Duration;

use llm_tower_core::{ConfigError, RetryPolicy};
use tower::Layer;

use crate::service::Retry;
use crate::settings::{RetryBudget, RetrySettings};
use crate::state::RetryState;

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
        Self::from_parts(RetrySettings::default(), RetryPolicy::default())
    }

    /// A layer with fresh budgets: services built before keep theirs.
    fn from_parts(settings: RetrySettings, default_policy: RetryPolicy) -> Self {
        Self {
            state: RetryState::new(settings, default_policy),
        }
    }

    /// A layer with these settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field that is out of range.
    pub fn with_settings(settings: RetrySettings) -> Result<Self, ConfigError> {
        settings.validate()?;
        Ok(Self::from_parts(settings, RetryPolicy::default()))
    }

    /// The policy for requests without a [`Selected`](llm_tower_core::Selected) endpoint.
    #[must_use]
    pub fn default_policy(self, policy: RetryPolicy) -> Self {
        Self::from_parts(self.state.settings, policy)
    }

    /// The retry budget kept per endpoint. Budgets already handed out keep their settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when `percent` is outside 0..=1000 or `ttl` outside
    /// 1 s..=60 s.
    pub fn budget(self, budget: RetryBudget) -> Result<Self, ConfigError> {
        budget.validate()?;
        let settings = RetrySettings {
            budget,
            ..self.state.settings
        };
        Ok(Self::from_parts(
            settings,
            self.state.default_policy.clone(),
        ))
    }

    /// The longest `Retry-After` wait that is slept before retrying; longer waits stop the
    /// retries and become a [`CooldownHint`](llm_tower_core::CooldownHint). Default: the
    /// policy's `max_interval`, or 5 s.
    #[must_use]
    pub fn max_retry_after(self, max: Duration) -> Self {
        let settings = RetrySettings {
            max_retry_after: Some(max),
            ..self.state.settings
        };
        Self::from_parts(settings, self.state.default_policy.clone())
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
