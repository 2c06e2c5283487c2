//! Metrics through the `metrics` facade (feature `metrics`): per-attempt counters and latency
//! (the per-deployment health series are `llm_tower_health::metrics`).

mod memo;

use std::cell::RefCell;
use std::sync::{Arc, PoisonError};

use dashmap::DashMap;

/// The maps below are looked up when a thread's memo (`memo.rs`) misses, by names from the
/// configuration (endpoints, clients) and the models that answered: foldhash, seeded per
/// process, is several times faster than SipHash on such short keys.
type Map<K, V> = DashMap<K, V, foldhash::fast::RandomState>;
use http::StatusCode;
use llm_tower_core::{Attempt, AttemptKind, Caller, EndpointId, ModelName, Outcome};

use super::accounting::Accounted;
use memo::Memo;

/// A client's token counters for one model and deployment: input, output, cached input,
/// reasoning.
type TokenCounters = Arc<[metrics::Counter; 4]>;

thread_local! {
    /// The endpoint handles each thread used last, by endpoint id.
    static ENDPOINTS: RefCell<Memo<EndpointId, Arc<EndpointMetrics>>> =
        const { RefCell::new(Memo::new()) };
    /// The request counters each thread used last, by client and status.
    static REQUESTS: RefCell<Memo<RequestsKey, metrics::Counter>> =
        const { RefCell::new(Memo::new()) };
    /// The token counters each thread used last, by client, model and deployment.
    static TOKENS: RefCell<Memo<TokensKey, TokenCounters>> = const { RefCell::new(Memo::new()) };
}

/// What token counters are found by: client, model, deployment.
type TokensKey = (Option<Caller>, Option<ModelName>, EndpointId);

/// What request counters are found by: client, status.
type RequestsKey = (Option<Caller>, StatusCode);

/// Metric handles, registered once per endpoint (and outcome) instead of once per request.
/// Each thread keeps the ones it used last: a request that finds them there clones no id and
/// no handle.
pub(crate) struct MetricHandles {
    /// Tells these handles apart from another stack's in the threads' memos.
    owner: u64,
    endpoints: Map<EndpointId, Arc<EndpointMetrics>>,
    /// Requests by client name (`-` for none) and status.
    requests: Map<RequestsKey, metrics::Counter>,
    local_failures: metrics::Counter,
    /// Tokens by client, model and deployment: input, output, cached input, reasoning. Keys of
    /// shared names, cloned without a copy.
    tokens: Map<TokensKey, TokenCounters>,
    /// Spend by client and model, in USD. A gauge only added to: the `metrics` facade's
    /// counters count whole numbers, and a cost is a fraction of a cent.
    costs: Map<(Option<Caller>, Option<ModelName>), metrics::Gauge>,
}

impl Default for MetricHandles {
    fn default() -> Self {
        Self {
            owner: memo::owner(),
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
        let is_key = |(c, s): &RequestsKey| {
            *s == status && c.as_ref().map(Caller::name) == caller.map(Caller::name)
        };
        let find = || {
            let key = (caller.cloned(), status);
            let counter = registered(&self.requests, &key, || {
                metrics::counter!(
                    "llm_tower_requests_total",
                    "client" => caller.map_or_else(|| "-".to_owned(), |c| c.name().to_owned()),
                    "status" => status.as_str().to_owned()
                )
            });
            (key, counter)
        };
        // Statuses spread over the slots (200, 400 and 504 are all 0 modulo 8).
        let spread = usize::from(status.as_u16()).wrapping_mul(0x9E37_79B9) >> 16;
        let slot = spread ^ caller.map_or(0, |c| memo::slot(c.name().as_ptr()));
        memo::with(&REQUESTS, (self.owner, slot), is_key, find, |counter| {
            counter.increment(1);
        });
    }

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
        let is_key = |(c, m, d): &TokensKey| {
            c.as_ref().map(Caller::name) == caller.map(Caller::name)
                && m.as_deref() == accounted.model.as_deref()
                && same_name(d.as_str(), deployment.as_str())
        };
        let find = || {
            let key = (caller.cloned(), accounted.model.clone(), deployment.clone());
            let counters = registered(&self.tokens, &key, || {
                Arc::new(
                    ["input", "output", "cached_input", "reasoning"].map(|kind| {
                        metrics::counter!(
                            "llm_tower_tokens_total",
                            "client" => client(),
                            "model" => model(),
                            "deployment" => deployment.to_string(),
                            "kind" => kind
                        )
                    }),
                )
            });
            (key, counters)
        };
        // Clients and models on one deployment take different slots: the client by its
        // name's address, the model (a new name on each request) by its length.
        let slot = memo::slot(deployment.as_str().as_ptr())
            ^ caller.map_or(0, |c| memo::slot(c.name().as_ptr()))
            ^ accounted.model.as_ref().map_or(0, |m| m.len());
        memo::with(&TOKENS, (self.owner, slot), is_key, find, |counters| {
            for (counter, tokens) in counters.iter().zip([
                usage.input,
                usage.output,
                usage.cached_input,
                usage.reasoning,
            ]) {
                counter.increment(tokens);
            }
        });
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

    /// A request failed because this process ran out of a resource.
    pub(crate) fn local_failure(&self) {
        self.local_failures.increment(1);
    }

    pub(crate) fn record(&self, attempt: &Attempt) {
        let id = &attempt.endpoint;
        let find = || {
            let endpoint = registered(&self.endpoints, id, || Arc::new(EndpointMetrics::new(id)));
            (id.clone(), endpoint)
        };
        let is_key = |seen: &EndpointId| same_name(seen.as_str(), id.as_str());
        let slot = memo::slot(id.as_str().as_ptr());
        memo::with(&ENDPOINTS, (self.owner, slot), is_key, find, |endpoint| {
            endpoint.record(attempt);
        });
    }
}

/// The handle of `key` in `map`, registered with `make` the first time: a read lock on the way
/// every look-up after a key's first takes.
fn registered<K, V>(map: &Map<K, V>, key: &K, make: impl FnOnce() -> V) -> V
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
{
    if let Some(handle) = map.get(key) {
        return handle.clone();
    }
    map.entry(key.clone()).or_insert_with(make).clone()
}

/// Whether two names are equal: at once when they are one (shared from the configuration, as
/// endpoint ids are), else by their letters.
fn same_name(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

impl EndpointMetrics {
    /// Counts one attempt on this endpoint.
    fn record(&self, attempt: &Attempt) {
        self.latency.record(attempt.latency.as_secs_f64());
        match attempt.kind {
            AttemptKind::Retry => self.retries.increment(1),
            // A continuation is a fallback of the stream's tail.
            AttemptKind::Fallback | AttemptKind::Continuation => self.fallbacks.increment(1),
            AttemptKind::Hedge => {
                self.hedges.increment(1);
                if attempt.outcome.is_success() {
                    self.hedges_won.increment(1);
                }
            }
            AttemptKind::First => {}
        }
        self.count(&attempt.endpoint, attempt.outcome);
    }
}

#[cfg(test)]
mod tests;
