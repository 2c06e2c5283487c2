//! [`HealthStore`]: one background task that tells other replicas, through Redis, what this
//! replica's registry ejects and restores and what its providers say of their rate limits,
//! and applies what they tell it.
//!
//! - Each cooldown is a key (`{prefix}:ejected:{deployment}`) that lives as long as the
//!   cooldown (`PX`), and every change is also published on `{prefix}:events`. A replica
//!   that starts late, or reconnects, reads the keys in force with `SCAN`; one that is
//!   connected hears the channel within a round trip.
//! - An ejection never replaces a longer one in Redis (a script compares the deadlines), and
//!   the registry never lets one shorten a local deadline. A restore deletes the key, and
//!   lets the other replicas' half-open probes through now. It is also kept, in
//!   `{prefix}:restored:{deployment}`, for as long as a cooldown it ends could last: a
//!   replica that was cut off when it was published reads it on reconnecting. A key that is
//!   missing is never taken for a restore (Redis may have restarted empty, evicted it, or
//!   failed over to a replica that never had it).
//! - What a provider's answer says of a deployment's rate limits (its headroom) is told at
//!   once when it turns the deployment low or no longer low, otherwise at most every second
//!   per deployment, and kept in `{prefix}:rate_limits:{deployment}` until its last window
//!   resets. A reading replaces only an older one, in Redis and in every registry. So a
//!   deployment nearly spent by one replica's traffic is skipped by all of them, before any
//!   sees a 429; a replica that starts late reads it with the cooldowns.
//! - Nothing on the request path waits on Redis: the registry queues its events with
//!   `try_send` (a full queue drops and counts them), and only this task talks to Redis.
//! - Redis down or unreachable: requests go on with local health. The task logs once per
//!   outage, reconnects with backoff (250 ms doubling to 5 s, jittered), remembers which
//!   deployments were restored meanwhile, and on reconnecting reads the restores and the
//!   cooldowns in force, then publishes those restores, every cooldown this replica found
//!   itself and the rate limits it knows (a Redis that restarted empty learns them again). Events carry when they happened, so one that
//!   comes late (kept over an outage, read back from a key) cannot undo a newer one: the
//!   registry ignores it, and a restore deletes a key only if its ejection is older.
//! - A command Redis refuses (out of memory, a read-only replica, no permission) is logged
//!   and its event dropped; only a lost connection (I/O, timeout) reconnects.
//!
//! - With `health_store.secret`, every event is signed, and only events signed with it are
//!   taken, from the channel and from the keys alike (`wire.rs`, `mac.rs`); any other
//!   value, and one over 64 KiB, is counted in `rejected` and logged at most once a minute
//!   (`rejected.rs`). Without it, events are not authenticated, which a warning says at
//!   start. A remote ejection, signed or not, lasts at most this configuration's
//!   `max_cooldown` (the registry caps it).
//!
//! Two connections: a multiplexed one for commands (with connect and response timeouts)
//! and the subscription, both pinged every 5 s. The subscription is made before the keys
//! are read, so that no event falls between the two.

use std::fmt;
use std::sync::Arc;

use crate::HealthRegistry;
use llm_tower_core::ConfigError;
use redis::Client;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::HealthStoreSettings;

use super::mac::Signer;
use super::names::Names;
use super::task::Task;

/// Shares a [`HealthRegistry`]'s ejections, restores and rate-limit readings with the other
/// replicas that use the same Redis server and prefix, and applies theirs. Started with [`HealthStore::start`]; it
/// works in the background until dropped. Redis being down never fails a request: the
/// replica serves on its own health meanwhile.
///
/// ```no_run
/// use llm_tower_health::HealthRegistry;
/// use llm_tower_health::store::{HealthStore, HealthStoreSettings};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), llm_tower_core::ConfigError> {
/// // The registry of the stack (`llm_tower::Upstream::health`, or one given to its layers).
/// let registry = HealthRegistry::new();
/// let settings = HealthStoreSettings::new("redis://127.0.0.1:6379");
/// // Keep it as long as the stack runs.
/// let store = HealthStore::start(&settings, &registry)?;
/// # drop(store);
/// # Ok(())
/// # }
/// ```
pub struct HealthStore {
    task: JoinHandle<()>,
    status: watch::Receiver<HealthStoreStatus>,
    refresh: Arc<Notify>,
    url: String,
}

/// What [`HealthStore::status`] reports.
///
/// ```
/// let status = llm_tower_health::store::HealthStoreStatus::default();
/// assert!(!status.connected);
/// assert_eq!(serde_json::to_value(status).unwrap()["dropped"], 0);
/// assert_eq!(serde_json::to_value(status).unwrap()["rejected"], 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HealthStoreStatus {
    /// Connected and subscribed right now.
    pub connected: bool,
    /// Local events published (an ejection that another replica's longer one already
    /// covers in Redis is not).
    pub published: u64,
    /// Other replicas' events that changed a local deployment.
    pub applied: u64,
    /// Local events dropped because the queue was full.
    pub dropped: u64,
    /// Messages on the channel and values in the keys that were not taken: over 64 KiB,
    /// not an event, or (with `health_store.secret`) not signed with the secret.
    pub rejected: u64,
}

impl HealthStore {
    /// Starts sharing `registry`'s health through the Redis server in `settings`. Returns at
    /// once: connecting is the background task's business, and a server that is down is
    /// retried with backoff.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for invalid settings, or when called outside a Tokio
    /// runtime (the task needs one).
    pub fn start(
        settings: &HealthStoreSettings,
        registry: &HealthRegistry,
    ) -> Result<Self, ConfigError> {
        settings.validate()?;
        let url = settings.redis.to_string();
        let client = Client::open(settings.redis.expose()).map_err(|_| {
            ConfigError::invalid("health_store.redis", format!("`{url}` is not a Redis URL"))
        })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::invalid(
                "health_store",
                "sharing health needs a Tokio runtime: start the store inside one",
            )
        })?;
        let signer = settings
            .secret
            .as_ref()
            .map(|secret| Signer::new(secret.expose_secret().as_bytes(), &settings.prefix));
        if signer.is_none() {
            tracing::warn!(
                redis = %url,
                "health_store has no secret: the events replicas share are not \
                 authenticated, and anyone who can write to this Redis can eject every \
                 deployment; set health_store.secret on every replica"
            );
        }
        let (status, watched) = watch::channel(HealthStoreStatus::default());
        let refresh = Arc::new(Notify::new());
        let task = Task::new(
            client,
            Names::new(&settings.prefix),
            signer,
            url.clone(),
            registry,
            status,
            refresh.clone(),
        );
        Ok(Self {
            task: runtime.spawn(task.run()),
            status: watched,
            refresh,
            url,
        })
    }

    /// Reads the kept restores and the cooldowns in force again, for deployments the
    /// registry did not have when they were published (a reload added them); what was
    /// applied before changes nothing again. Returns at once; a store that is not connected
    /// reads them when it connects anyway.
    pub fn refresh(&self) {
        self.refresh.notify_one();
    }

    /// Whether it is connected, and what it has done so far.
    pub fn status(&self) -> HealthStoreStatus {
        *self.status.borrow()
    }

    /// [`status`](Self::status) as it changes: wait for it to connect, or for another
    /// replica's event to be applied.
    pub fn watch(&self) -> watch::Receiver<HealthStoreStatus> {
        self.status.clone()
    }
}

impl Drop for HealthStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for HealthStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthStore")
            .field("redis", &self.url)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
