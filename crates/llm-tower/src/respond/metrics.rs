//! Metrics through the `metrics` facade (feature `metrics`): per-attempt counters and latency
//! (the per-deployment health series are `llm_tower_health::metrics`).

use std::sync::PoisonError;

use dashmap::DashMap;

/// The maps below are looked up on every request, by names from the configuration (endpoints,
/// clients) and the models that answered: foldhash, seeded per process, is several times
/// faster than SipHash on such short keys.
type Map<K, V> = DashMap<K, V, foldhash::fast::RandomState>;
use http::StatusCode;
use llm_tower_core::{Attempt, AttemptKind, Caller, EndpointId, ModelName, Outcome};

use super::accounting::Accounted;

/// Metric handles, registered once per endpoint (and outcome) instead of once per request.
/// Looked up by reference: recording a request clones no id and no handle.
pub(crate) struct MetricHandles {
    endpoints: Map<EndpointId, EndpointMetrics>,
    /// Requests by client name (`-` for none) and status.
    requests: Map<(Option<Caller>, StatusCode), metrics::Counter>,
    local_failures: metrics::Counter,
    /// Tokens by client, model and deployment: input, output, cached input, reasoning. Keys of
    /// shared names, cloned without a copy.
    tokens: Map<(Option<Caller>, Option<ModelName>, EndpointId), [metrics::Counter; 4]>,
    /// Spend by client and model, in USD. A gauge only added to: the `metrics` facade's
    /// counters count whole numbers, and a cost is a fraction of a cent.
    costs: Map<(Option<Caller>, Option<ModelName>), metrics::Gauge>,
}

impl Default for MetricHandles {
    fn default() -> Self {
        Self {
            endpoints: Map::default(),
            requests: Map::default(),
            local_failures: metrics::counter!("llm_tower_local_failures_total"),
            tokens: Map::default(),
            costs: Map::default(),
        }
    }
}

struct EndpointMetrics {
    latency: metrics::Histogram,
    retries: metrics::Counter,
    fallbacks: metrics::Counter,
    /// Hedges sent here, and those that answered first (the attempts given up on are the
    /// outcome `hedge_lost`).
    hedges: metrics::Counter,
    hedges_won: metrics::Counter,
    /// Attempts by outcome: a handful per endpoint, so a list beats a map.
    outcomes: std::sync::RwLock<Vec<(Outcome, metrics::Counter)>>,
}

impl EndpointMetrics {
    fn new(id: &EndpointId) -> Self {
        let label = || ("endpoint", id.to_string());
        Self {
            latency: metrics::histogram!("llm_tower_upstream_latency_seconds", &[label()]),
            retries: metrics::counter!("llm_tower_retries_total", &[label()]),
            fallbacks: metrics::counter!("llm_tower_fallbacks_total", &[label()]),
            hedges: metrics::counter!("llm_tower_hedges_total", &[label()]),
            hedges_won: metrics::counter!("llm_tower_hedges_won_total", &[label()]),
            outcomes: std::sync::RwLock::default(),
        }
    }

    fn count(&self, id: &EndpointId, outcome: Outcome) {
        let find = |list: &[(Outcome, metrics::Counter)]| {
            list.iter()
                .find(|(seen, _)| *seen == outcome)
                .map(|(_, counter)| counter.increment(1))
        };
        let read = self.outcomes.read().unwrap_or_else(PoisonError::into_inner);
        if find(&read).is_some() {
            return;
        }
        drop(read);
        let mut write = self
            .outcomes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if find(&write).is_some() {
            return;
        }
        let counter = metrics::counter!(
            "llm_tower_attempts_total",
            "endpoint" => id.to_string(),
            "outcome" => outcome.to_string()
        );
        counter.increment(1);
        write.push((outcome, counter));
    }
}

impl MetricHandles {
    /// A request finished with `status`, sent by `caller`.
    pub(crate) fn request(&self, status: StatusCode, caller: Option<&Caller>) {
        let key = (caller.cloned(), status);
        if let Some(counter) = self.requests.get(&key) {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(
            "llm_tower_requests_total",
            "client" => caller.map_or_else(|| "-".to_owned(), |c| c.name().to_owned()),
            "status" => status.as_str().to_owned()
        );
        counter.increment(1);
        self.requests.insert(key, counter);
    }

    /// A request failed because this process ran out of a resource.
    /// Counts a request's tokens and spend.
    pub(crate) fn usage(
        &self,
        caller: Option<&Caller>,
        accounted: &Accounted,
        deployment: &EndpointId,
    ) {
        let client = || caller.map_or_else(|| "-".to_owned(), |c| c.name().to_owned());
        let model = || accounted.model.as_deref().unwrap_or("-").to_owned();
        let usage = &accounted.usage;
        let key = (caller.cloned(), accounted.model.clone(), deployment.clone());
        // A read lock on the way every request after a key's first takes.
        let counters = match self.tokens.get(&key) {
            Some(counters) => counters,
            None => self
                .tokens
                .entry(key)
                .or_insert_with(|| {
                    ["input", "output", "cached_input", "reasoning"].map(|kind| {
                        metrics::counter!(
                            "llm_tower_tokens_total",
                            "client" => client(),
                            "model" => model(),
                            "deployment" => deployment.to_string(),
                            "kind" => kind
                        )
                    })
                })
                .downgrade(),
        };
        for (counter, tokens) in counters.iter().zip([
            usage.input,
            usage.output,
            usage.cached_input,
            usage.reasoning,
        ]) {
            counter.increment(tokens);
        }
        drop(counters);
        if let Some(cost) = accounted.cost {
            let key = (caller.cloned(), accounted.model.clone());
            match self.costs.get(&key) {
                Some(gauge) => gauge.increment(cost),
                None => self
                    .costs
                    .entry(key)
                    .or_insert_with(|| {
                        metrics::gauge!(
                            "llm_tower_cost_usd_total",
                            "client" => client(),
                            "model" => model()
                        )
                    })
                    .increment(cost),
            }
        }
    }

    pub(crate) fn local_failure(&self) {
        self.local_failures.increment(1);
    }

    pub(crate) fn record(&self, attempt: &Attempt) {
        let id = &attempt.endpoint;
        let endpoint = match self.endpoints.get(id) {
            Some(endpoint) => endpoint,
            None => self
                .endpoints
                .entry(id.clone())
                .or_insert_with(|| EndpointMetrics::new(id))
                .downgrade(),
        };
        endpoint.latency.record(attempt.latency.as_secs_f64());
        match attempt.kind {
            AttemptKind::Retry => endpoint.retries.increment(1),
            // A continuation is a fallback of the stream's tail.
            AttemptKind::Fallback | AttemptKind::Continuation => endpoint.fallbacks.increment(1),
            AttemptKind::Hedge => {
                endpoint.hedges.increment(1);
                if attempt.outcome.is_success() {
                    endpoint.hedges_won.increment(1);
                }
            }
            AttemptKind::First => {}
        }
        endpoint.count(id, attempt.outcome);
    }
}
