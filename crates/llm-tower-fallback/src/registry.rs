//! [`HealthRegistry`]: every endpoint's health, shared between stacks and shown to operators.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use llm_tower_core::{EndpointId, ModelName};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::activity::{LastFailure, LastMinute};
use crate::check::CheckSnapshot;
use crate::events::{self, HealthEvent, HealthEvents, Publisher};
use crate::health::EndpointHealth;

/// Health of every endpoint, keyed by id. `Clone` shares the same state, so one registry can
/// serve several stacks (and an admin endpoint through [`HealthRegistry::snapshot`]).
///
/// ```
/// use llm_tower_core::Endpoint;
/// use llm_tower_fallback::{FallbackLayer, HealthRegistry, Status};
///
/// let registry = HealthRegistry::new();
/// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
/// let _layer = FallbackLayer::builder(endpoints).build(registry.clone()).unwrap();
/// assert_eq!(registry.get("a").unwrap().status, Status::Healthy);
/// assert_eq!(registry.snapshot().len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct HealthRegistry {
    map: Arc<DashMap<EndpointId, Arc<EndpointHealth>>>,
    /// Tells every health checker over this registry that a deployment was ejected (a new
    /// deadline to wait for), whichever stack ejected it.
    ejections: Arc<watch::Sender<()>>,
    /// Where local ejections and restores go for other replicas, once someone subscribed.
    /// Read only when a deployment changes state.
    publisher: Arc<RwLock<Option<Publisher>>>,
    /// The `max_cooldown` of the last balancer built over it, in milliseconds: the most
    /// another replica's ejection may impose (0: no balancer yet).
    max_cooldown_ms: Arc<AtomicU64>,
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("endpoints", &self.map.len())
            .finish_non_exhaustive()
    }
}

impl HealthRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The health cell of `id`, created healthy on first use. The DashMap guard is released
    /// before this returns.
    pub(crate) fn cell(&self, id: &EndpointId) -> Arc<EndpointHealth> {
        if let Some(cell) = self.map.get(id) {
            return cell.clone();
        }
        self.map.entry(id.clone()).or_default().clone()
    }

    /// The cell of `id` if it exists (another replica's event never makes one).
    pub(crate) fn existing(&self, id: &EndpointId) -> Option<Arc<EndpointHealth>> {
        self.map.get(id).map(|cell| cell.clone())
    }

    /// Every cell, copied out: no map guard is held while a cell is locked.
    pub(crate) fn cells(&self) -> Vec<(EndpointId, Arc<EndpointHealth>)> {
        self.map
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
            .collect()
    }

    /// A stack ejected deployment `id` (or a `Retry-After` cooled it down): the checkers
    /// learn of the deadline, and a subscriber of the cooldown.
    pub(crate) fn ejected(&self, id: &EndpointId, cell: &EndpointHealth) {
        self.wake_checkers();
        self.publish(|| events::ejection(id, cell));
    }

    /// A request or a check restored deployment `id` after a cooldown.
    pub(crate) fn restored(&self, id: &EndpointId) {
        self.publish(|| Some(events::restore(id)));
    }

    fn publish(&self, event: impl FnOnce() -> Option<HealthEvent>) {
        let publisher = self
            .publisher
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let (Some(publisher), Some(event)) = (publisher.as_ref(), event()) {
            publisher.publish(event);
        }
    }

    pub(crate) fn set_max_cooldown(&self, max: Duration) {
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        self.max_cooldown_ms.store(ms, Ordering::Relaxed);
    }

    /// The longest cooldown the configuration in force allows (zero before a balancer over
    /// this registry was built): the cap on other replicas' deadlines, and how long a store
    /// keeps the word of a restore for replicas that did not hear it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use llm_tower_core::Endpoint;
    /// use llm_tower_fallback::{FallbackLayer, HealthRegistry};
    ///
    /// let registry = HealthRegistry::new();
    /// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
    /// let _layer = FallbackLayer::builder(endpoints).max_cooldown(Duration::from_secs(90)).build(registry.clone()).unwrap();
    /// assert_eq!(registry.max_cooldown(), Duration::from_secs(90));
    /// ```
    pub fn max_cooldown(&self) -> Duration {
        Duration::from_millis(self.max_cooldown_ms.load(Ordering::Relaxed))
    }

    /// Every health checker over this registry looks at its deadlines again.
    pub(crate) fn wake_checkers(&self) {
        self.ejections.send_replace(());
    }

    /// Changes whenever a stack ejects a deployment, or another replica's event moves a
    /// deadline.
    pub(crate) fn watch_ejections(&self) -> watch::Receiver<()> {
        self.ejections.subscribe()
    }

    /// From now on, every ejection and restore that a stack over this registry records is
    /// also queued (up to `capacity`, then dropped and counted) for the returned receiver, to
    /// be told to other replicas. One subscriber at a time: a new one ends the last one's.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use llm_tower_core::{BufferedBody, Endpoint};
    /// use llm_tower_fallback::{FallbackLayer, HealthEvent, HealthRegistry};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = HealthRegistry::new();
    /// let mut events = registry.subscribe(64);
    /// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
    /// let layer = FallbackLayer::builder(endpoints).build(registry.clone()).unwrap();
    /// let failing = service_fn(|_: Request<BufferedBody>| async {
    ///     Ok::<_, std::convert::Infallible>(
    ///         Response::builder().status(429).header("retry-after", "30").body(String::new()).unwrap(),
    ///     )
    /// });
    /// let service = ServiceBuilder::new().layer(layer).service(failing);
    /// service.oneshot(Request::new(String::new())).await.unwrap();
    /// let Some(HealthEvent::Ejected { id, retry_after, .. }) = events.recv().await else {
    ///     panic!("an ejection");
    /// };
    /// assert_eq!((id.as_str(), retry_after), ("a", true));
    /// # }
    /// ```
    pub fn subscribe(&self, capacity: usize) -> HealthEvents {
        let (publisher, events) = Publisher::channel(capacity);
        *self
            .publisher
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(publisher);
        events
    }

    /// The state of every known endpoint, sorted by id.
    pub fn snapshot(&self) -> Vec<EndpointSnapshot> {
        let now = Instant::now();
        let mut snapshot: Vec<_> = self
            .cells()
            .into_iter()
            .map(|(id, cell)| cell.snapshot(id, now))
            .collect();
        snapshot.sort_by(|a, b| a.id.cmp(&b.id));
        snapshot
    }

    /// Forgets every deployment for which `keep` is false (a reloaded configuration no longer
    /// has it). Stacks still running over a forgotten deployment keep its cell until they
    /// end; a later stack with the same id starts fresh.
    ///
    /// ```
    /// use llm_tower_core::Endpoint;
    /// use llm_tower_fallback::{FallbackLayer, HealthRegistry};
    ///
    /// let registry = HealthRegistry::new();
    /// let endpoints = ["a", "b"].map(|id| Endpoint::builder(id, "http://127.0.0.1:1").build().unwrap());
    /// let _layer = FallbackLayer::builder(endpoints).build(registry.clone()).unwrap();
    /// registry.retain(|id| id.as_str() == "a");
    /// assert!(registry.get("a").is_some() && registry.get("b").is_none());
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&EndpointId) -> bool) {
        self.map.retain(|id, _| keep(id));
    }

    /// The state of one endpoint, if it is known.
    pub fn get(&self, id: &str) -> Option<EndpointSnapshot> {
        let cell = self.map.get(id).map(|c| c.clone())?;
        Some(cell.snapshot(EndpointId::from(id), Instant::now()))
    }
}

/// Health status of an endpoint.
///
/// ```
/// use llm_tower_fallback::Status;
///
/// assert_eq!(serde_json::to_string(&Status::HalfOpen).unwrap(), "\"half_open\"");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Taking traffic.
    Healthy,
    /// Cooling down: skipped until its cooldown ends.
    Ejected,
    /// Cooldown over: the next request is a probe (or one is in flight).
    HalfOpen,
}

/// A serialisable view of one endpoint's health, for admin endpoints.
///
/// ```
/// use llm_tower_core::Endpoint;
/// use llm_tower_fallback::{FallbackLayer, HealthRegistry};
///
/// let registry = HealthRegistry::new();
/// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
/// let _layer = FallbackLayer::builder(endpoints).build(registry.clone()).unwrap();
/// let snapshot = registry.get("a").unwrap();
/// assert_eq!((snapshot.consecutive_failures, snapshot.in_flight), (0, 0));
/// let json = serde_json::to_value(&snapshot).unwrap();
/// assert_eq!(json["status"], "healthy");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointSnapshot {
    /// The deployment: its endpoint's id, or `endpoint/model` when the endpoint lists
    /// several models.
    pub id: EndpointId,
    /// Its status.
    pub status: Status,
    /// Failed requests since the last success.
    pub consecutive_failures: u32,
    /// Ejections since the last success (each doubles the cooldown).
    pub ejections: u32,
    /// Ejections since the process started (a counter for metrics).
    pub total_ejections: u64,
    /// Seconds until the cooldown ends (0 when not cooling down).
    pub seconds_until_return: f64,
    /// Whether a probe request is in flight.
    pub probe_in_flight: bool,
    /// Attempts in flight right now.
    pub in_flight: usize,
    /// The `least_latency` estimate of the time to first byte, in milliseconds, as last
    /// updated (absent under other strategies, and until the deployment answered or was
    /// seeded with its tier's median; reset when it is restored after an ejection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The last active health check of its endpoint (absent without `health_check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_check: Option<CheckSnapshot>,
    /// Health checks of its endpoint that passed.
    pub checks_passed: u64,
    /// Health checks of its endpoint that failed.
    pub checks_failed: u64,
    /// The mean time to the first byte of the requests it answered in the last minute, in
    /// milliseconds (absent when it answered none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_latency_ms: Option<f64>,
    /// Its last failure that counted against its health.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailure>,
    /// Its requests over the last minute, by how they ended.
    pub last_minute: LastMinute,
    /// Its endpoint (absent for a cell no balancer placed yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointId>,
    /// The model it serves, for an endpoint that lists models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelName>,
    /// Its endpoint's priority tier (lower is tried first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Healthy again by a passing health check, but not yet by a request: its requests get
    /// a single try, and the first failure ejects it again with the cooldown doubled.
    pub on_probation: bool,
}
