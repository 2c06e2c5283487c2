//! The retry layer's settings: one owner for each default and range check.

use std::time::Duration;

use llm_tower_core::ConfigError;
use serde::{Deserialize, Serialize};

/// Retry budget per endpoint (tower's `TpsBudget`): retries may add `percent` % of the
/// requests, plus `min_per_second`, over a sliding `ttl` window. In a configuration file it is
/// the top-level `retry_budget`.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_retry::RetryBudget;
///
/// let budget = RetryBudget { percent: 50.0, ..RetryBudget::default() };
/// assert_eq!(budget.ttl, Duration::from_secs(10));
/// budget.validate().unwrap();
/// let bad = RetryBudget { ttl: Duration::from_secs(120), ..budget };
/// assert!(bad.validate().unwrap_err().to_string().starts_with("retry_budget.ttl"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries allowed as a percentage of requests (0 to 1000; default 20).
    pub percent: f32,
    /// Retries always allowed per second (default 10).
    pub min_per_second: u32,
    /// Window the budget is computed over (1 s to 60 s; default 10 s).
    #[serde(with = "llm_tower_core::duration")]
    pub ttl: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            percent: 20.0,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

impl RetryBudget {
    /// Checks the ranges.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `retry_budget.percent` or `retry_budget.ttl`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1000.0).contains(&self.percent) {
            return Err(ConfigError::invalid(
                "retry_budget.percent",
                "must be between 0 and 1000",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.ttl) {
            return Err(ConfigError::invalid(
                "retry_budget.ttl",
                "must be between 1s and 60s",
            ));
        }
        Ok(())
    }
}

/// Everything [`RetryLayer`](crate::RetryLayer) can be told by configuration. Per-endpoint
/// retry policies and timeouts live on each [`Endpoint`](llm_tower_core::Endpoint).
///
/// ```
/// use std::time::Duration;
/// use llm_tower_retry::{RetryLayer, RetrySettings};
///
/// let settings = RetrySettings {
///     max_retry_after: Some(Duration::from_secs(2)),
///     ..RetrySettings::default()
/// };
/// let layer = RetryLayer::with_settings(settings).unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// The retry budget kept per endpoint (`retry_budget` in a configuration file).
    #[serde(rename = "retry_budget")]
    pub budget: RetryBudget,
    /// The longest `Retry-After` wait that is slept before retrying; longer waits stop the
    /// retries and cool the endpoint down instead. Default (`None`): the policy's
    /// `max_interval`, or [`DEFAULT_MAX_RETRY_AFTER`](crate::DEFAULT_MAX_RETRY_AFTER).
    #[serde(
        with = "llm_tower_core::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_retry_after: Option<Duration>,
}

impl RetrySettings {
    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Any `max_retry_after` is meaningful: zero turns every `Retry-After` into a cooldown.
        self.budget.validate()
    }
}
