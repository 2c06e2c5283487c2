//! [`Accounting`]: what a request's tokens come to once its answer has ended — its cost from
//! the price table, its deployment's last minute — and what the log and metrics say of them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use llm_tower_core::{EndpointId, ModelName, Usage, UsageRecord};
use llm_tower_fallback::HealthRegistry;
use llm_tower_usage::Prices;

/// The deployment that answered, and the model it answered as.
#[derive(Clone, Debug)]
pub(crate) struct Answered {
    pub(crate) deployment: EndpointId,
    pub(crate) model: Option<ModelName>,
}

/// A request's usage, accounted for.
#[derive(Clone, Debug)]
pub(crate) struct Accounted {
    pub(crate) usage: Usage,
    pub(crate) model: Option<ModelName>,
    /// In USD; `None` when the model has no price.
    pub(crate) cost: Option<f64>,
}

pub(crate) struct Accounting {
    prices: Arc<Prices>,
    registry: Option<HealthRegistry>,
    /// The models already said to have no price (once each).
    unpriced: Mutex<HashSet<ModelName>>,
}

impl Accounting {
    pub(crate) fn new(prices: Arc<Prices>, registry: Option<HealthRegistry>) -> Self {
        Self {
            prices,
            registry,
            unpriced: Mutex::default(),
        }
    }

    /// Accounts for what `record` holds once the answer of `answered` has ended (`None`: no
    /// answer reported usage).
    pub(crate) fn account(&self, record: &UsageRecord, answered: &Answered) -> Option<Accounted> {
        let usage = record.usage()?;
        if let Some(registry) = &self.registry {
            registry.record_usage(answered.deployment.as_str(), &usage);
        }
        // The model that answered (after aliases and chains), else the one the body named.
        let model = record.priced_model(answered.model.as_ref());
        let cost = model.as_deref().and_then(|model| self.cost(model, &usage));
        Some(Accounted { usage, model, cost })
    }

    fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        if self.prices.is_empty() {
            return None;
        }
        let cost = self.prices.cost(model, usage);
        if cost.is_none()
            && self
                .unpriced
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(model.into())
        {
            tracing::warn!(
                model,
                "no price for this model in the price table: its cost is not recorded"
            );
        }
        cost
    }
}
