//! Health shared between replicas: the events a [`HealthRegistry`] emits when one of its
//! deployments is ejected or restored, or its provider tells its rate limits
//! ([`HealthRegistry::subscribe`]), and how it applies the same events from other replicas
//! ([`HealthRegistry::apply`]). The transport (Redis, in
//! the `llm-tower` crate's `redis` feature) is someone else's: this is what travels.
//!
//! Nothing on the request path waits for a subscriber: an event is handed to a bounded queue
//! with `try_send`, only when a deployment changes state (for rate limits: when a reading
//! turns it low or back, otherwise at most every second per deployment, in a queue of their
//! own), and one that does not fit is counted and dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use llm_tower_core::{EndpointId, RateLimits};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cell::EndpointHealth;

/// A change of a deployment's health, as one replica tells the others. Times are wall clock
/// times: the replicas' clocks are assumed to agree to well under a cooldown. `at` says
/// when it happened, so that an event that comes late (kept over an outage, read back
/// from Redis) cannot undo a newer one.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use llm_tower_health::HealthEvent;
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
    /// What the deployment's provider last said of its rate limits (its headroom): every
    /// replica spends the same windows, so one that is nearly spent is skipped by all.
    RateLimits {
        /// The deployment.
        id: EndpointId,
        /// When the answer that told it was read; each window's `reset` counts from then.
        at: SystemTime,
        /// The windows.
        limits: RateLimits,
    },
}

impl HealthEvent {
    /// The deployment it is about.
    pub fn id(&self) -> &EndpointId {
        match self {
            Self::Ejected { id, .. } | Self::Restored { id, .. } | Self::RateLimits { id, .. } => {
                id
            }
        }
    }

    /// When it happened.
    pub fn at(&self) -> SystemTime {
        match self {
            Self::Ejected { at, .. } | Self::Restored { at, .. } | Self::RateLimits { at, .. } => {
                *at
            }
        }
    }

    /// How long what it tells holds at `now`: an ejection's cooldown, rate limits until
    /// their last window resets (zero when over; `None` for a restore).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use llm_tower_health::HealthEvent;
    ///
    /// let now = SystemTime::now();
    /// let event = HealthEvent::Ejected {
    ///     id: "a".into(), at: now, until: now + Duration::from_secs(5), retry_after: false, ejections: 1,
    /// };
    /// assert_eq!(event.remaining(now), Some(Duration::from_secs(5)));
    /// assert_eq!(event.remaining(now + Duration::from_secs(9)), Some(Duration::ZERO));
    ///
    /// // Rate limits hold until their last window resets, counted from when they were read.
    /// use llm_tower_core::{RateLimits, RateWindow};
    /// let window = RateWindow { limit: Some(60), remaining: 0, reset: Duration::from_secs(20) };
    /// let limits = RateLimits { requests: Some(window), tokens: None };
    /// let event = HealthEvent::RateLimits { id: "a".into(), at: now, limits };
    /// assert_eq!(event.remaining(now + Duration::from_secs(5)), Some(Duration::from_secs(15)));
    /// ```
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        match self {
            Self::Ejected { until, .. } => Some(left(*until, now)),
            Self::RateLimits { at, limits, .. } => {
                let reset = [limits.requests, limits.tokens]
                    .into_iter()
                    .flatten()
                    .map(|window| window.reset)
                    .max()
                    .unwrap_or_default();
                // A reset beyond what a clock can say never comes.
                Some(
                    at.checked_add(reset)
                        .map_or(Duration::MAX, |until| left(until, now)),
                )
            }
            Self::Restored { .. } => None,
        }
    }
}

/// How long from `now` until `until` (zero when past).
fn left(until: SystemTime, now: SystemTime) -> Duration {
    until.duration_since(now).unwrap_or(Duration::ZERO)
}

/// The local events of a registry, for one subscriber to send to other replicas; from
/// [`HealthRegistry::subscribe`](crate::HealthRegistry::subscribe). Events that found the queue full are counted in
/// [`dropped`](Self::dropped).
///
/// ```
/// use llm_tower_core::Endpoint;
/// use llm_tower_health::{DeploymentHealth, HealthEvent, HealthPolicy, HealthRegistry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = HealthRegistry::new();
/// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
/// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: std::time::Duration::from_secs(60), max_probe_interval: std::time::Duration::from_secs(10) };
/// let _a = DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy);
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
    /// Rate-limit readings, in a queue of their own: however many there are, they never
    /// crowd an ejection or a restore out of the other, and never go before one.
    readings: mpsc::Receiver<HealthEvent>,
    dropped: Arc<AtomicU64>,
}

impl HealthEvents {
    /// The next event, ejections and restores before rate-limit readings; `None` once the
    /// registry has a newer subscriber or is gone.
    pub async fn recv(&mut self) -> Option<HealthEvent> {
        std::future::poll_fn(|cx| {
            if let Poll::Ready(event) = self.receiver.poll_recv(cx) {
                return Poll::Ready(event);
            }
            // Both senders go together: the first queue's end says the registry's.
            match self.readings.poll_recv(cx) {
                Poll::Ready(Some(reading)) => Poll::Ready(Some(reading)),
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// The next event if one is queued (ejections and restores first).
    pub fn try_recv(&mut self) -> Option<HealthEvent> {
        self.receiver
            .try_recv()
            .or_else(|_| self.readings.try_recv())
            .ok()
    }

    /// Events dropped so far because their queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The sending side of [`HealthEvents`], kept by the registry.
#[derive(Debug)]
pub(crate) struct Publisher {
    sender: mpsc::Sender<HealthEvent>,
    readings: mpsc::Sender<HealthEvent>,
    dropped: Arc<AtomicU64>,
}

impl Publisher {
    /// Queues of `capacity` events each: one for ejections and restores, one for readings.
    pub(crate) fn channel(capacity: usize) -> (Self, HealthEvents) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let (readings_sender, readings) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let events = HealthEvents {
            receiver,
            readings,
            dropped: dropped.clone(),
        };
        let publisher = Self {
            sender,
            readings: readings_sender,
            dropped,
        };
        (publisher, events)
    }

    /// Never waits: a full queue drops the event and counts it.
    pub(crate) fn publish(&self, event: HealthEvent) {
        let queue = match event {
            HealthEvent::RateLimits { .. } => &self.readings,
            HealthEvent::Ejected { .. } | HealthEvent::Restored { .. } => &self.sender,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = queue.try_send(event) {
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

/// The event telling others what `cell`'s provider last said of its rate limits, while a
/// window has not reset.
pub(crate) fn rate_limits(id: &EndpointId, cell: &EndpointHealth) -> Option<HealthEvent> {
    let clocks = Clocks::now();
    let (read_at, limits) = cell.headroom.reading(clocks.instant)?;
    Some(HealthEvent::RateLimits {
        id: id.clone(),
        at: clocks.wall(read_at),
        limits,
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
pub(crate) struct Clocks {
    pub(crate) instant: Instant,
    pub(crate) wall: SystemTime,
}

impl Clocks {
    pub(crate) fn now() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    pub(crate) fn wall(&self, instant: Instant) -> SystemTime {
        if instant >= self.instant {
            self.wall + (instant - self.instant)
        } else {
            self.wall - (self.instant - instant)
        }
    }

    /// `wall` as an instant; times beyond what an `Instant` can say are clamped to now.
    pub(crate) fn instant(&self, wall: SystemTime) -> Instant {
        match wall.duration_since(self.wall) {
            Ok(ahead) => self.instant + ahead,
            Err(behind) => self
                .instant
                .checked_sub(behind.duration())
                .unwrap_or(self.instant),
        }
    }
}
