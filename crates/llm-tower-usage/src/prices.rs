//! [`Prices`]: what a model's tokens cost, from the configuration's price table.

use std::collections::HashMap;

use llm_tower_core::{ConfigError, ModelName, Usage};
use serde::{Deserialize, Serialize};

/// The price of one model's tokens, in USD per million. Cached input is billed at
/// `cached_input` (default: the input price); reasoning is output.
///
/// ```
/// use llm_tower_core::Usage;
/// use llm_tower_usage::Price;
///
/// let gpt_4o = Price { input: 2.5, output: 10.0, cached_input: Some(1.25) };
/// let usage = Usage { input: 1_000_000, cached_input: 400_000, output: 100_000, ..Usage::default() };
/// // 600k input at 2.5, 400k cached at 1.25, 100k output at 10.
/// assert!((gpt_4o.cost(&usage) - 3.0).abs() < 1e-9);
/// ```
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens (reasoning included).
    pub output: f64,
    /// USD per million input tokens read from the provider's cache (default: `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
}

impl Price {
    /// The cost of `usage`, in USD.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_input.min(usage.input);
        let fresh = usage.input - cached;
        (fresh as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + usage.output as f64 * self.output)
            / 1_000_000.0
    }
}

/// The price table: each model's [`Price`], by the model's name as clients ask for it (the
/// model that answered, after aliases and fallback chains). A model not in it has no cost.
///
/// ```
/// use llm_tower_core::Usage;
/// use llm_tower_usage::Prices;
///
/// let prices: Prices = serde_json::from_str(
///     r#"{"gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25}}"#,
/// ).unwrap();
/// prices.validate().unwrap();
/// let usage = Usage { input: 2000, output: 500, ..Usage::default() };
/// assert_eq!(prices.cost("gpt-4o", &usage), Some(0.01));
/// assert_eq!(prices.cost("gpt-5", &usage), None);
/// let negative: Prices = serde_json::from_str(r#"{"m": {"input": -1, "output": 1}}"#).unwrap();
/// assert!(negative.validate().unwrap_err().to_string().contains("prices.m.input"));
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Prices(HashMap<ModelName, Price>);

impl Prices {
    /// A table of these models' prices.
    pub fn new(prices: impl IntoIterator<Item = (ModelName, Price)>) -> Self {
        Self(prices.into_iter().collect())
    }

    /// The cost of `usage` of `model`, in USD (`None`: the model has no price).
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.0.get(model).map(|price| price.cost(usage))
    }

    /// Whether the table prices no model.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks every price is a finite, non-negative number.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field (`prices.<model>.<kind>`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (model, price) in &self.0 {
            for (kind, value) in [
                ("input", Some(price.input)),
                ("output", Some(price.output)),
                ("cached_input", price.cached_input),
            ] {
                if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    return Err(ConfigError::invalid(
                        format!("prices.{model}.{kind}"),
                        "must be a finite, non-negative number of USD per million tokens",
                    ));
                }
            }
        }
        Ok(())
    }
}
