//! [`HealthRegistry`]: every endpoint's health, shared between stacks and shown to operators.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use llm_tower_core::{EndpointId, Usage};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cell::EndpointHealth;
use crate::events::{self, HealthEvent, HealthEvents, Publisher};
use crate::snapshot::EndpointSnapshot;

mod replicas;

/// Health of every endpoint, keyed by id. `Clone` shares the same state, so one registry can
/// serve several stacks (and an admin endpoint through [`HealthRegistry::snapshot`]).
///
/// ```
/// use llm_tower_core::Endpoint;
/// use llm_tower_health::{DeploymentHealth, HealthPolicy, HealthRegistry, Status};
///
/// let registry = HealthRegistry::new();
/// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
/// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: std::time::Duration::from_secs(60), max_probe_interval: std::time::Duration::from_secs(10) };
/// let _a = DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy);
/// assert_eq!(registry.get("a").unwrap().status, Status::Healthy);
/// assert_eq!(registry.snapshot().len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct HealthRegistry {
    // Looked up per answer (its usage), by ids from the configuration: foldhash, not SipHash.
    map: Arc<DashMap<EndpointId, Arc<EndpointHealth>, foldhash::fast::RandomState>>,
    /// Tells every health checker over this registry that a deployment was ejected (a new
    /// deadline to wait for), whichever stack ejected it.
    ejections: Arc<watch::Sender<()>>,
    /// Where local ejections, restores and rate-limit readings go for other replicas, once
    /// someone subscribed.
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

    /// An answer told deployment `id`'s rate limits, worth telling the others.
    pub(crate) fn read_rate_limits(&self, id: &EndpointId, cell: &EndpointHealth) {
        self.publish(|| events::rate_limits(id, cell));
    }

    fn publish(&self, event: impl FnOnce() -> Option<HealthEvent>) {
        let publisher = self
            .publisher
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        // The event is made only for a subscriber.
        if let Some(publisher) = publisher.as_ref()
            && let Some(event) = event()
        {
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
    /// use llm_tower_health::{DeploymentHealth, HealthPolicy, HealthRegistry};
    ///
    /// let registry = HealthRegistry::new();
    /// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
    /// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: Duration::from_secs(90), max_probe_interval: Duration::from_secs(10) };
    /// let _a = DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy);
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

    /// From now on, every ejection and restore that a stack over this registry records, and
    /// the rate-limit readings worth telling, are also queued (up to `capacity` in each of
    /// two queues, then dropped and counted) for the returned receiver, to be told to other
    /// replicas. One subscriber at a time: a new one ends the last one's.
    ///
    /// ```
    /// use std::time::Duration;
    /// use llm_tower_core::{Endpoint, Outcome};
    /// use llm_tower_health::{DeploymentHealth, HealthEvent, HealthPolicy, HealthRegistry};
    /// use tokio::time::Instant;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = HealthRegistry::new();
    /// let mut events = registry.subscribe(64);
    /// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
    /// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: Duration::from_secs(60), max_probe_interval: Duration::from_secs(10) };
    /// let a = DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy);
    /// let too_many = Outcome::Status(http::StatusCode::TOO_MANY_REQUESTS);
    /// a.failed(Instant::now(), too_many, Some(Duration::from_secs(30)), None);
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
    /// use llm_tower_health::{DeploymentHealth, HealthPolicy, HealthRegistry};
    ///
    /// let registry = HealthRegistry::new();
    /// for id in ["a", "b"] {
    ///     let endpoint = Endpoint::builder(id, "http://127.0.0.1:1").build().unwrap();
    ///     let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: std::time::Duration::from_secs(60), max_probe_interval: std::time::Duration::from_secs(10) };
    ///     DeploymentHealth::new(&registry, id.into(), &endpoint, None, policy);
    /// }
    /// registry.retain(|id| id.as_str() == "a");
    /// assert!(registry.get("a").is_some() && registry.get("b").is_none());
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&EndpointId) -> bool) {
        self.map.retain(|id, _| keep(id));
    }

    /// Counts the tokens of an answer of deployment `id` in its last minute (a deployment this
    /// registry does not know is ignored).
    ///
    /// ```
    /// use llm_tower_core::{Endpoint, Usage};
    /// use llm_tower_health::{DeploymentHealth, HealthPolicy, HealthRegistry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = HealthRegistry::new();
    /// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
    /// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: std::time::Duration::from_secs(60), max_probe_interval: std::time::Duration::from_secs(10) };
    /// let _a = DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy);
    /// registry.record_usage("a", &Usage { input: 120, output: 30, ..Usage::default() });
    /// let minute = registry.get("a").unwrap().last_minute;
    /// assert_eq!((minute.input_tokens.iter().sum::<u64>(), minute.output_tokens.iter().sum::<u64>()), (120, 30));
    /// # }
    /// ```
    pub fn record_usage(&self, id: &str, usage: &Usage) {
        if let Some(cell) = self.map.get(id) {
            cell.activity
                .record_tokens(Instant::now(), usage.input, usage.output);
        }
    }

    /// The state of one endpoint, if it is known.
    pub fn get(&self, id: &str) -> Option<EndpointSnapshot> {
        let cell = self.map.get(id).map(|c| c.clone())?;
        Some(cell.snapshot(EndpointId::from(id), Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::Status;
    use crate::cell::{Admission, HealthPolicy};

    const POLICY: HealthPolicy = HealthPolicy {
        unhealthy_threshold: 1,
        max_cooldown: Duration::from_secs(60),
        max_probe_interval: Duration::from_secs(10),
    };

    fn eject(registry: &HealthRegistry, id: &str, hint: Option<Duration>) {
        let id = EndpointId::from(id);
        let cell = registry.cell(&id);
        let now = Instant::now();
        cell.record_failure(now, Duration::from_secs(5), hint, None, POLICY)
            .expect("ejected");
        registry.ejected(&id, &cell);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let registry = HealthRegistry::new();
        let mut events = registry.subscribe(1);
        eject(&registry, "a", Some(Duration::from_secs(30)));
        eject(&registry, "b", None);
        assert_eq!(events.dropped(), 1);
        let Some(HealthEvent::Ejected {
            id,
            until,
            retry_after,
            ejections,
            ..
        }) = events.try_recv()
        else {
            panic!("the first one was queued");
        };
        assert_eq!((id.as_str(), retry_after, ejections), ("a", true, 1));
        let left = until.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(29), "{left:?}");
        assert!(events.try_recv().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_ejection_lasts_at_most_max_cooldown() {
        let registry = HealthRegistry::new();
        registry.set_max_cooldown(Duration::from_secs(60));
        registry.cell(&"a".into());
        let year = Duration::from_secs(365 * 24 * 3600);
        let event = HealthEvent::Ejected {
            id: "a".into(),
            at: SystemTime::now(),
            until: SystemTime::now() + year,
            retry_after: true,
            ejections: u32::MAX,
        };
        assert!(registry.apply(&event));
        let snapshot = registry.get("a").unwrap();
        assert!(
            (snapshot.seconds_until_return - 60.0).abs() < 1e-9,
            "{snapshot:?}"
        );
        assert!(!registry.apply(&event), "already as long as it may be");
    }

    #[tokio::test(start_paused = true)]
    async fn a_doubling_cooldown_is_not_a_retry_after_and_a_restore_is_told() {
        let registry = HealthRegistry::new();
        let mut events = registry.subscribe(8);
        eject(&registry, "a", Some(Duration::from_secs(1)));
        let event = events.try_recv().unwrap();
        assert!(
            matches!(
                event,
                HealthEvent::Ejected {
                    retry_after: false,
                    ..
                }
            ),
            "{event:?}"
        );
        let current: Vec<_> = registry
            .ejections()
            .iter()
            .map(|e| e.id().clone())
            .collect();
        assert_eq!(current, [EndpointId::from("a")]);

        let cell = registry.cell(&"a".into());
        assert!(cell.record_success(None, Instant::now()));
        registry.restored(&"a".into());
        let event = events.try_recv().unwrap();
        assert!(
            matches!(&event, HealthEvent::Restored { id, .. } if id.as_str() == "a"),
            "{event:?}"
        );
        assert!(registry.ejections().is_empty());

        // What another replica's event set is not this replica's to tell again.
        registry.set_max_cooldown(Duration::from_secs(60));
        tokio::time::advance(Duration::from_millis(5)).await;
        let now = SystemTime::now();
        let ejected = registry.apply(&HealthEvent::Ejected {
            id: "a".into(),
            at: now,
            until: now + Duration::from_secs(30),
            retry_after: false,
            ejections: 1,
        });
        assert!(ejected);
        assert!(registry.ejections().is_empty());
    }

    /// A kept restore is read again on every reconnect. First heard, its time (by a clock a
    /// little ahead) was clamped to when it came; read again it would not be, and would end
    /// the cooldown its own probe's failure began.
    #[tokio::test(start_paused = true)]
    async fn a_restore_told_again_changes_nothing() {
        let registry = HealthRegistry::new();
        registry.set_max_cooldown(Duration::from_secs(60));
        eject(&registry, "a", None);
        let restore = HealthEvent::Restored {
            id: "a".into(),
            at: SystemTime::now() + Duration::from_millis(20),
        };
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(registry.apply(&restore), "heard: half-open");
        tokio::time::advance(Duration::from_millis(1)).await;
        let cell = registry.cell(&"a".into());
        let Admission::Probe(probe) = cell.admit(Instant::now()) else {
            panic!("half-open: the probe");
        };
        cell.record_failure(
            Instant::now(),
            Duration::from_secs(5),
            None,
            Some(probe),
            POLICY,
        )
        .expect("the probe's failure ejects");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!registry.apply(&restore), "told again");
        assert_eq!(registry.get("a").unwrap().status, Status::Ejected);

        // Still after a success in between: a reset keeps what was told.
        eject(&registry, "b", None);
        let restore = HealthEvent::Restored {
            id: "b".into(),
            at: SystemTime::now() + Duration::from_millis(40),
        };
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(registry.apply(&restore), "heard: half-open");
        let cell = registry.cell(&"b".into());
        let Admission::Probe(probe) = cell.admit(Instant::now()) else {
            panic!("half-open: the probe");
        };
        assert!(cell.record_success(Some(probe), Instant::now()));
        tokio::time::advance(Duration::from_millis(2)).await;
        cell.record_failure(Instant::now(), Duration::from_secs(5), None, None, POLICY)
            .expect("ejects");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!registry.apply(&restore), "told again after a success");
    }
}
