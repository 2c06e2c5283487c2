//! [`RetryState`]: what every clone of a [`RetryLayer`](crate::RetryLayer) and of the
//! [`Retry`](crate::Retry) services it builds shares: the settings and the budget of each
//! endpoint. The service is the hub (as in tower's `retry/`); this is what it carries.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use llm_tower_core::{EndpointId, RetryPolicy};
use tower::retry::budget::TpsBudget;

use crate::settings::RetrySettings;

/// What every clone of the layer and its services shares: settings and per-endpoint budgets.
/// Cloned for every request, so it is one `Arc`.
#[derive(Clone)]
pub(crate) struct RetryState(Arc<Shared>);

/// The settings and budgets of one layer.
pub(crate) struct Shared {
    pub(crate) settings: RetrySettings,
    pub(crate) default_policy: RetryPolicy,
    // Looked up per request, by ids from the configuration: foldhash, not SipHash.
    budgets: DashMap<EndpointId, Arc<TpsBudget>, foldhash::fast::RandomState>,
}

impl std::ops::Deref for RetryState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Shared {
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

impl RetryState {
    /// Fresh state: these settings, no budget handed out yet.
    pub(crate) fn new(settings: RetrySettings, default_policy: RetryPolicy) -> Self {
        Self(Arc::new(Shared {
            settings,
            default_policy,
            budgets: DashMap::default(),
        }))
    }
}
