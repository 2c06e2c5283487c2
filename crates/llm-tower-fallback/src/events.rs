//! Health shared between replicas: the events a [`HealthRegistry`] emits when one of its
//! deployments is ejected or restored ([`HealthRegistry::subscribe`]), and how it applies
//! the same events from other replicas ([`HealthRegistry::apply`]). The transport (Redis, in
//! the `llm-tower` crate's `redis` feature) is someone else's: this is what travels.
//!
//! Nothing on the request path waits for a subscriber: an event is handed to a bounded queue
//! with `try_send`, only when a deployment changes state, and one that does not fit is
//! counted and dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use llm_tower_core::EndpointId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::health::{Cooldown, EndpointHealth};
use crate::registry::HealthRegistry;

/// A change of a deployment's health, as one replica tells the others. Times are wall clock
/// times: the replicas' clocks are assumed to agree to well under a cooldown. `at` says
/// when it happened, so that an event that comes late (kept over an outage, read back
/// from Redis) cannot undo a newer one.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use llm_tower_fallback::HealthEvent;
///
/// let event = HealthEvent::Ejected {
///     id: "openai".into(),
///     at: SystemTime::now(),
///     until: SystemTime::now() + Duration::from_secs(30),
///     retry_after: true,
///     ejections: 1,
/// };
/// assert_eq!(event.id().as_str(), "openai");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthEvent {
    /// The deployment is cooling down until `until`.
    Ejected {
        /// The deployment.
        id: EndpointId,
        /// The newest word of its cooldown: when it began, or when a later failure pushed
        /// its deadline out (a restore from before then is stale).
        at: SystemTime,
        /// When its cooldown ends.
        until: SystemTime,
        /// The deadline is the upstream's `Retry-After` rather than the doubling cooldown.
        retry_after: bool,
        /// Ejections since its last success (what the next doubling starts from).
        ejections: u32,
    },
    /// A request or a health check succeeded after a cooldown.
    Restored {
        /// The deployment.
        id: EndpointId,
        /// When it answered.
        at: SystemTime,
    },
}

impl HealthEvent {
    /// The deployment it is about.
    pub fn id(&self) -> &EndpointId {
        match self {
            Self::Ejected { id, .. } | Self::Restored { id, .. } => id,
        }
    }

    /// When it happened.
    pub fn at(&self) -> SystemTime {
        match self {
            Self::Ejected { at, .. } | Self::Restored { at, .. } => *at,
        }
    }

    /// How long an ejection has left at `now` (zero when over; `None` for a restore).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use llm_tower_fallback::HealthEvent;
    ///
    /// let now = SystemTime::now();
    /// let event = HealthEvent::Ejected {
    ///     id: "a".into(), at: now, until: now + Duration::from_secs(5), retry_after: false, ejections: 1,
    /// };
    /// assert_eq!(event.remaining(now), Some(Duration::from_secs(5)));
    /// assert_eq!(event.remaining(now + Duration::from_secs(9)), Some(Duration::ZERO));
    /// ```
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        match self {
            Self::Ejected { until, .. } => {
                Some(until.duration_since(now).unwrap_or(Duration::ZERO))
            }
            Self::Restored { .. } => None,
        }
    }
}

/// The local events of a registry, for one subscriber to send to other replicas; from
/// [`HealthRegistry::subscribe`]. Events that found the queue full are counted in
/// [`dropped`](Self::dropped).
///
/// ```
/// use llm_tower_core::Endpoint;
/// use llm_tower_fallback::{FallbackLayer, HealthEvent, HealthRegistry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = HealthRegistry::new();
/// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
/// let _layer = FallbackLayer::builder(endpoints).build(registry.clone()).unwrap();
/// let mut events = registry.subscribe(64);
/// // Another replica ejected `a`; applying that is not a local event.
/// registry.apply(&HealthEvent::Ejected {
///     id: "a".into(),
///     at: std::time::SystemTime::now(),
///     until: std::time::SystemTime::now() + std::time::Duration::from_secs(30),
///     retry_after: true,
///     ejections: 1,
/// });
/// assert!(events.try_recv().is_none());
/// assert_eq!(events.dropped(), 0);
/// # }
/// ```
#[derive(Debug)]
pub struct HealthEvents {
    receiver: mpsc::Receiver<HealthEvent>,
    dropped: Arc<AtomicU64>,
}

impl HealthEvents {
    /// The next event; `None` once the registry has a newer subscriber or is gone.
    pub async fn recv(&mut self) -> Option<HealthEvent> {
        self.receiver.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<HealthEvent> {
        self.receiver.try_recv().ok()
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The sending side of [`HealthEvents`], kept by the registry.
#[derive(Debug)]
pub(crate) struct Publisher {
    sender: mpsc::Sender<HealthEvent>,
    dropped: Arc<AtomicU64>,
}

impl Publisher {
    pub(crate) fn channel(capacity: usize) -> (Self, HealthEvents) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let events = HealthEvents {
            receiver,
            dropped: dropped.clone(),
        };
        (Self { sender, dropped }, events)
    }

    /// Never waits: a full queue drops the event and counts it.
    pub(crate) fn publish(&self, event: HealthEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.sender.try_send(event) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The event telling others about `cell`'s cooldown, if one is in force.
pub(crate) fn ejection(id: &EndpointId, cell: &EndpointHealth) -> Option<HealthEvent> {
    let clocks = Clocks::now();
    let cooldown = cell.cooldown(clocks.instant)?;
    Some(HealthEvent::Ejected {
        id: id.clone(),
        at: clocks.wall(cooldown.since),
        until: clocks.wall(cooldown.until),
        retry_after: cooldown.retry_after,
        ejections: cooldown.ejections,
    })
}

/// The event telling others that `id` answered again.
pub(crate) fn restore(id: &EndpointId) -> HealthEvent {
    HealthEvent::Restored {
        id: id.clone(),
        at: SystemTime::now(),
    }
}

/// Both clocks read at once, to turn one's times into the other's: events travel in wall
/// clock time, health keeps `tokio::time::Instant` (which tests pause).
struct Clocks {
    instant: Instant,
    wall: SystemTime,
}

impl Clocks {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn wall(&self, instant: Instant) -> SystemTime {
        if instant >= self.instant {
            self.wall + (instant - self.instant)
        } else {
            self.wall - (self.instant - instant)
        }
    }

    /// `wall` as an instant; times beyond what an `Instant` can say are clamped to now.
    fn instant(&self, wall: SystemTime) -> Instant {
        match wall.duration_since(self.wall) {
            Ok(ahead) => self.instant + ahead,
            Err(behind) => self
                .instant
                .checked_sub(behind.duration())
                .unwrap_or(self.instant),
        }
    }
}

impl HealthRegistry {
    /// Applies another replica's event to the deployment it names, if this registry has it
    /// (ids of deployments this configuration does not have are ignored). An ejection only
    /// pushes the local deadline out, and never beyond this configuration's `max_cooldown`
    /// from now (a replica with a wrong clock, or a bad message, cannot shut a deployment
    /// out for longer than a local failure could); a restore ends the local cooldown now,
    /// so that the half-open probe decides. Returns whether anything changed. Applied
    /// events are not local events: a subscriber does not see them.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use llm_tower_core::Endpoint;
    /// use llm_tower_fallback::{FallbackLayer, HealthEvent, HealthRegistry, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = HealthRegistry::new();
    /// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
    /// let _layer = FallbackLayer::builder(endpoints).build(registry.clone()).unwrap();
    /// let now = SystemTime::now();
    /// let until = now + Duration::from_secs(30);
    /// let ejected = HealthEvent::Ejected { id: "a".into(), at: now, until, retry_after: true, ejections: 1 };
    /// assert!(registry.apply(&ejected));
    /// assert_eq!(registry.get("a").unwrap().status, Status::Ejected);
    /// let restored = HealthEvent::Restored { id: "a".into(), at: now + Duration::from_millis(5) };
    /// assert!(registry.apply(&restored));
    /// assert_eq!(registry.get("a").unwrap().status, Status::HalfOpen);
    /// assert!(!registry.apply(&HealthEvent::Restored { id: "unknown".into(), at: now }));
    /// # }
    /// ```
    pub fn apply(&self, event: &HealthEvent) -> bool {
        let Some(cell) = self.existing(event.id()) else {
            return false;
        };
        let clocks = Clocks::now();
        let now = clocks.instant;
        let changed = match event {
            HealthEvent::Ejected {
                at,
                until,
                retry_after,
                ejections,
                ..
            } => {
                let Ok(remaining) = until.duration_since(clocks.wall) else {
                    return false;
                };
                let remaining = remaining.min(self.max_cooldown());
                let cooldown = Cooldown {
                    until: now + remaining,
                    retry_after: *retry_after,
                    ejections: *ejections,
                    since: clocks.instant(*at).min(now),
                    remote: true,
                };
                cell.apply_remote_ejection(cooldown, now)
            }
            HealthEvent::Restored { at, .. } => {
                cell.apply_remote_restore(clocks.instant(*at).min(now), *at, now)
            }
        };
        if changed {
            // A new deadline (or one that is over) for the checker that probes it.
            self.wake_checkers();
        }
        changed
    }

    /// The cooldowns in force that this replica found itself (not those another replica's
    /// event set), as events: what it tells the others when it (re)connects to them.
    ///
    /// ```
    /// use llm_tower_fallback::HealthRegistry;
    ///
    /// assert!(HealthRegistry::new().ejections().is_empty());
    /// ```
    pub fn ejections(&self) -> Vec<HealthEvent> {
        let now = Instant::now();
        self.cells()
            .into_iter()
            .filter(|(_, cell)| cell.cooldown(now).is_some_and(|c| !c.remote))
            .filter_map(|(id, cell)| ejection(&id, &cell))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Status;
    use crate::health::HealthPolicy;

    const POLICY: HealthPolicy = HealthPolicy {
        unhealthy_threshold: 1,
        max_cooldown: Duration::from_secs(60),
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
        let crate::health::Admission::Probe(probe) = cell.admit(Instant::now()) else {
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
        let crate::health::Admission::Probe(probe) = cell.admit(Instant::now()) else {
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
