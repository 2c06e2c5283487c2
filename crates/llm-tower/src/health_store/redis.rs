//! [`HealthStore`]: one background task that tells other replicas, through Redis, what this
//! replica's registry ejects and restores, and applies what they tell it.
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
//! - Nothing on the request path waits on Redis: the registry queues its events with
//!   `try_send` (a full queue drops and counts them), and only this task talks to Redis.
//! - Redis down or unreachable: requests go on with local health. The task logs once per
//!   outage, reconnects with backoff (250 ms doubling to 5 s, jittered), remembers which
//!   deployments were restored meanwhile, and on reconnecting reads the restores and the
//!   cooldowns in force, then publishes those restores and every cooldown this replica found itself (a Redis
//!   that restarted empty learns them again). Events carry when they happened, so one that
//!   comes late (kept over an outage, read back from a key) cannot undo a newer one: the
//!   registry ignores it, and a restore deletes a key only if its ejection is older.
//! - A command Redis refuses (out of memory, a read-only replica, no permission) is logged
//!   and its event dropped; only a lost connection (I/O, timeout) reconnects.
//!
//! Two connections: a multiplexed one for commands (with connect and response timeouts)
//! and the subscription, both pinged every 5 s. The subscription is made before the keys
//! are read, so that no event falls between the two.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use llm_tower_core::{ConfigError, EndpointId};
use llm_tower_fallback::{HealthEvent, HealthEvents, HealthRegistry};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, RedisError};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, sleep, timeout};

use super::HealthStoreSettings;
use super::wire::{self, Names};

/// Local events waiting for the task: enough for every deployment of a large fleet to
/// change state at once.
const QUEUE: usize = 4096;
/// Connect and response timeout of every Redis call.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How often a quiet connection is checked with `PING` (a peer that vanished without
/// closing the connection is found within this plus the timeout).
const PING_EVERY: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What both scripts start with. `stored`: the event in a key, or `nil` when the value is
/// not one of ours (anything may be there). `kept`: sets a key, saying whether Redis took it
/// (under `maxmemory` with `noeviction` it refuses writes, not deletes or publishing; an
/// event is published first, so that the replicas listening hear it even then). Any other
/// refusal fails the script (`READONLY`: connected to a replica node, whose subscribers
/// are not the fleet).
const PRELUDE: &str = r"
local function stored(key)
  local text = redis.call('GET', key)
  if not text then return nil end
  local ok, event = pcall(cjson.decode, text)
  if ok and type(event) == 'table' then return event end
  return nil
end
local function kept(key, value, ttl)
  local reply = redis.pcall('SET', key, value, 'PX', ttl)
  if type(reply) == 'table' and reply['err'] then
    if string.find(reply['err'], 'OOM', 1, true) == 1 then return false end
    error(reply)
  end
  return true
end
";

/// What the scripts answer, but for 1 (told and kept): EJECT did not tell an ejection
/// because its key holds a later deadline; a script told an event but Redis refused to
/// keep it.
const NOT_TOLD: i64 = 0;
const NOT_KEPT: i64 = 2;

/// Unless the key of the ejection holds a later deadline, publishes the ejection and sets
/// the key. KEYS: the key, the channel; ARGV: the event, its deadline (ms since the epoch),
/// the key's TTL (ms).
const EJECT: &str = r"
local current = stored(KEYS[1])
if current and tonumber(current['until_ms']) and tonumber(current['until_ms']) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('PUBLISH', KEYS[2], ARGV[1])
if kept(KEYS[1], ARGV[1], ARGV[3]) then return 1 end
return 2
";

/// Deletes the key of an ejection unless it began after the restore, publishes the
/// restore, and keeps it (unless a later one is kept) for as long as that ejection had left
/// or `ARGV[3]`, whichever is longer. KEYS: the ejection's key, the channel, the restore's
/// key; ARGV: the event, when it answered (ms since the epoch), how long to keep it at
/// least (ms).
const RESTORE: &str = r"
local current = stored(KEYS[1])
local keep = tonumber(ARGV[3])
if not (current and tonumber(current['at_ms']) and tonumber(current['at_ms']) > tonumber(ARGV[2])) then
  local left = redis.call('PTTL', KEYS[1])
  if left > keep then keep = left end
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', KEYS[2], ARGV[1])
local last = stored(KEYS[3])
if last and tonumber(last['at_ms']) and tonumber(last['at_ms']) >= tonumber(ARGV[2]) then
  return 1
end
if kept(KEYS[3], ARGV[1], keep) then return 1 end
return 2
";

/// The least time a restore is kept for replicas that did not hear it, whatever the
/// configuration's `max_cooldown`.
const RESTORE_KEPT_AT_LEAST: Duration = Duration::from_secs(1);

/// Shares a [`HealthRegistry`]'s ejections and restores with the other replicas that use the
/// same Redis server and prefix, and applies theirs. Started with [`HealthStore::start`]; it
/// works in the background until dropped. Redis being down never fails a request: the
/// replica serves on its own health meanwhile.
///
/// ```no_run
/// use llm_tower::health_store::{HealthStore, HealthStoreSettings};
/// use llm_tower::{Config, Upstream};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), llm_tower::ConfigError> {
/// let config = Config::from_path("gateway.yaml")?;
/// let upstream = Upstream::from_config(&config)?;
/// let registry = upstream.health().clone();
/// let service = upstream.build()?;
/// // Keep it as long as the service runs.
/// let settings = config.health_store.unwrap_or_else(|| HealthStoreSettings::new("redis://127.0.0.1:6379"));
/// let store = HealthStore::start(&settings, &registry)?;
/// # drop((service, store));
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
/// let status = llm_tower::health_store::HealthStoreStatus::default();
/// assert!(!status.connected);
/// assert_eq!(serde_json::to_value(status).unwrap()["dropped"], 0);
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
        let (status, watched) = watch::channel(HealthStoreStatus::default());
        let refresh = Arc::new(Notify::new());
        let task = Task {
            client,
            names: Names::new(&settings.prefix),
            origin: origin(),
            url: url.clone(),
            registry: registry.clone(),
            events: registry.subscribe(QUEUE),
            restored: HashMap::new(),
            status,
            refresh: refresh.clone(),
        };
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

/// This process's name on the channel: random, so that a restarted replica reads what its
/// previous life published like anyone else's.
fn origin() -> String {
    use std::hash::BuildHasher;
    let seed = std::collections::hash_map::RandomState::new()
        .hash_one((std::process::id(), SystemTime::now()));
    format!("{seed:016x}")
}

/// Why a connection ended.
#[derive(Debug)]
enum Lost {
    Redis(RedisError),
    TimedOut,
    SubscriptionClosed,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(err) => err.fmt(f),
            Self::TimedOut => write!(f, "no answer within {TIMEOUT:?}"),
            Self::SubscriptionClosed => f.write_str("the subscription closed"),
        }
    }
}

impl From<RedisError> for Lost {
    fn from(err: RedisError) -> Self {
        Self::Redis(err)
    }
}

/// `future`, or [`Lost::TimedOut`].
async fn bounded<T>(future: impl Future<Output = redis::RedisResult<T>>) -> Result<T, Lost> {
    Ok(timeout(TIMEOUT, future)
        .await
        .map_err(|_| Lost::TimedOut)??)
}

/// A command's error that Redis answered (`Ok(Some)`), as opposed to one that says the
/// connection is gone (`Err`).
fn refused<T>(result: Result<T, Lost>) -> Result<Option<RedisError>, Lost> {
    match result {
        Ok(_) => Ok(None),
        Err(Lost::Redis(err))
            if !(err.is_io_error()
                || err.is_connection_dropped()
                || err.is_connection_refusal()
                || err.is_timeout()
                || err.is_unrecoverable_error()) =>
        {
            Ok(Some(err))
        }
        Err(lost) => Err(lost),
    }
}

/// The subscription to the channel: its messages, and the side that pings it.
struct Subscription {
    sink: PubSubSink,
    messages: PubSubStream,
}

/// Runs `command`, bounded by [`TIMEOUT`].
async fn query<T: redis::FromRedisValue>(
    command: &redis::Cmd,
    connection: &mut MultiplexedConnection,
) -> Result<T, Lost> {
    bounded(command.query_async(connection)).await
}

struct Task {
    client: Client,
    names: Names,
    origin: String,
    /// For logs: the password replaced.
    url: String,
    registry: HealthRegistry,
    events: HealthEvents,
    /// Deployments restored while disconnected, and when: told on reconnecting.
    restored: HashMap<EndpointId, SystemTime>,
    status: watch::Sender<HealthStoreStatus>,
    /// Asks for the cooldowns in force to be read again.
    refresh: Arc<Notify>,
}

impl Task {
    async fn run(mut self) {
        let mut outage = Outage::default();
        loop {
            let lost = match self.connect().await {
                Ok((mut connection, mut subscription)) => {
                    let lost = self
                        .session(&mut connection, &mut subscription, &mut outage)
                        .await;
                    self.set_connected(false);
                    // `None`: the registry has a newer subscriber, or is gone.
                    let Some(lost) = lost else { return };
                    lost
                }
                Err(lost) => lost,
            };
            outage.began(&self.url, &lost);
            if !self.wait(outage.pause()).await {
                return;
            }
        }
    }

    async fn connect(&self) -> Result<(MultiplexedConnection, Subscription), Lost> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let (mut sink, messages) = bounded(self.client.get_async_pubsub()).await?.split();
        bounded(sink.subscribe(&self.names.channel)).await?;
        Ok((connection, Subscription { sink, messages }))
    }

    /// Until the connection is lost (`Some`) or the registry stops sending (`None`).
    async fn session(
        &mut self,
        connection: &mut MultiplexedConnection,
        subscription: &mut Subscription,
        outage: &mut Outage,
    ) -> Option<Lost> {
        if let Err(lost) = self.catch_up(connection).await {
            return Some(lost);
        }
        // Connected means caught up: what was in force is applied, what happened here is told.
        self.set_connected(true);
        outage.ended(&self.url);
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.events.recv() => {
                    let event = event?;
                    self.count_dropped();
                    if let Err(lost) = self.publish(connection, &event).await {
                        self.keep(event);
                        return Some(lost);
                    }
                }
                message = subscription.messages.next() => {
                    let Some(message) = message else {
                        return Some(Lost::SubscriptionClosed);
                    };
                    self.receive(message.get_payload_bytes());
                }
                () = self.refresh.notified() => {
                    if let Err(lost) = self.read_cooldowns(connection).await {
                        return Some(lost);
                    }
                }
                _ = ping.tick() => {
                    // Both connections: a subscription is quiet while nothing fails, which
                    // is when middleboxes drop idle connections without a word.
                    if let Err(lost) = query::<()>(&redis::cmd("PING"), connection).await {
                        return Some(lost);
                    }
                    if let Err(lost) = bounded(subscription.sink.ping::<redis::Value>()).await {
                        return Some(lost);
                    }
                }
            }
        }
    }

    /// After (re)connecting: applies the restores and the cooldowns in Redis, then tells the
    /// others what happened here meanwhile.
    async fn catch_up(&mut self, connection: &mut MultiplexedConnection) -> Result<(), Lost> {
        self.read_cooldowns(connection).await?;
        // Older ejections read above were ignored (the registry knows these restores came
        // after); the keys of those go now, unless an ejection began since, and the restores
        // are kept for the replicas that are cut off now.
        let restored: Vec<(EndpointId, SystemTime)> = self.restored.drain().collect();
        for (id, at) in restored {
            self.publish(connection, &HealthEvent::Restored { id, at })
                .await?;
        }
        for event in self.registry.ejections() {
            self.publish(connection, &event).await?;
        }
        Ok(())
    }

    /// Applies every restore and cooldown kept in Redis, restores first. A command Redis
    /// refused is logged, and what was read so far applied.
    async fn read_cooldowns(&self, connection: &mut MultiplexedConnection) -> Result<(), Lost> {
        if let Some(refused) = refused(self.scan(connection).await)? {
            tracing::warn!(error = %refused, "health store refused to list the cooldowns in force");
        }
        Ok(())
    }

    async fn scan(&self, connection: &mut MultiplexedConnection) -> Result<(), Lost> {
        for pattern in self.names.patterns() {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500);
                let (next, keys): (u64, Vec<String>) = query(&scan, connection).await?;
                if !keys.is_empty() {
                    let mut get = redis::cmd("MGET");
                    get.arg(&keys);
                    let values: Vec<Option<Vec<u8>>> = query(&get, connection).await?;
                    for (key, value) in keys.iter().zip(values) {
                        if let Some(value) = value {
                            self.receive_kept(key, &value);
                        }
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// Sends one local event. A command Redis refused (out of memory, read-only replica,
    /// no permission) is logged and the event dropped: the connection is fine, and
    /// tearing it down would stop this replica hearing the others.
    async fn publish(
        &self,
        connection: &mut MultiplexedConnection,
        event: &HealthEvent,
    ) -> Result<(), Lost> {
        let now = SystemTime::now();
        if event.remaining(now) == Some(Duration::ZERO) {
            return Ok(());
        }
        let id = event.id().as_str();
        let text = wire::encode(&self.origin, event);
        let mut script = redis::cmd("EVAL");
        match event {
            HealthEvent::Ejected { until, .. } => script
                .arg(format!("{PRELUDE}{EJECT}"))
                .arg(2)
                .arg(self.names.ejected(id))
                .arg(&self.names.channel)
                .arg(&text)
                .arg(wire::unix_ms(*until))
                .arg(wire::ttl_ms(event, now)),
            HealthEvent::Restored { at, .. } => script
                .arg(format!("{PRELUDE}{RESTORE}"))
                .arg(3)
                .arg(self.names.ejected(id))
                .arg(&self.names.channel)
                .arg(self.names.restored(id))
                .arg(&text)
                .arg(wire::unix_ms(*at))
                .arg(
                    self.registry
                        .max_cooldown()
                        .max(RESTORE_KEPT_AT_LEAST)
                        .as_millis() as u64,
                ),
        };
        let answer = match query::<i64>(&script, connection).await {
            Ok(answer) => answer,
            result => {
                if let Some(refused) = refused(result)? {
                    tracing::warn!(
                        endpoint = %event.id(),
                        error = %refused,
                        "health store refused an event; the other replicas do not hear of it"
                    );
                }
                return Ok(());
            }
        };
        if answer == NOT_TOLD {
            return Ok(());
        }
        if answer == NOT_KEPT {
            tracing::warn!(
                endpoint = %event.id(),
                "health store told an event but could not keep it (Redis refused the write: \
                 out of memory?); replicas that start or reconnect later do not read it"
            );
        }
        self.status.send_modify(|status| status.published += 1);
        count("llm_tower_health_store_published_total");
        Ok(())
    }

    /// An event on the channel.
    fn receive(&self, text: &[u8]) {
        if let Some((origin, event)) = decode(text) {
            self.take(&origin, &event);
        }
    }

    /// An event read from `key` on connecting. Only the key that keeps that event counts:
    /// a prefix that is this one's followed by more (`fleet:restored:eu`, another fleet's)
    /// has keys that this one's patterns match too.
    fn receive_kept(&self, key: &str, text: &[u8]) {
        if let Some((origin, event)) = decode(text)
            && self.names.key_of(&event) == key
        {
            self.take(&origin, &event);
        }
    }

    /// Another replica's event.
    fn take(&self, origin: &str, event: &HealthEvent) {
        if origin == self.origin {
            return;
        }
        if self.registry.apply(event) {
            self.status.send_modify(|status| status.applied += 1);
            count("llm_tower_health_store_applied_total");
            match event {
                HealthEvent::Ejected {
                    id,
                    until,
                    retry_after,
                    ..
                } => tracing::info!(
                    endpoint = %id,
                    cooldown_ms = until.duration_since(SystemTime::now()).unwrap_or_default().as_millis() as u64,
                    retry_after,
                    "endpoint ejected by another replica"
                ),
                HealthEvent::Restored { id, .. } => tracing::info!(
                    endpoint = %id,
                    "endpoint restored by another replica; probing it now"
                ),
            }
        }
    }

    /// A local event that could not be published: a restore is remembered for the next
    /// connection (a cooldown is read from the registry then anyway).
    fn keep(&mut self, event: HealthEvent) {
        match event {
            HealthEvent::Restored { id, at } => {
                self.restored.insert(id, at);
            }
            HealthEvent::Ejected { id, .. } => {
                self.restored.remove(&id);
            }
        }
    }

    /// Sleeps for `pause`, keeping the local events that come meanwhile. Returns `false`
    /// when the registry stops sending.
    async fn wait(&mut self, pause: Duration) -> bool {
        let pause = sleep(pause);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => return true,
                event = self.events.recv() => match event {
                    Some(event) => {
                        self.count_dropped();
                        self.keep(event);
                    }
                    None => return false,
                },
            }
        }
    }

    fn count_dropped(&self) {
        let dropped = self.events.dropped();
        self.status.send_if_modified(|status| {
            let changed = status.dropped != dropped;
            status.dropped = dropped;
            changed
        });
        #[cfg(feature = "metrics")]
        metrics::counter!("llm_tower_health_store_dropped_total").absolute(dropped);
    }

    fn set_connected(&self, connected: bool) {
        self.status
            .send_modify(|status| status.connected = connected);
        #[cfg(feature = "metrics")]
        metrics::gauge!("llm_tower_health_store_connected").set(if connected { 1.0 } else { 0.0 });
    }
}

/// A message or a key's value, if it is a health event.
fn decode(text: &[u8]) -> Option<(String, HealthEvent)> {
    let decoded = wire::decode(text);
    if decoded.is_none() {
        tracing::debug!("health store: ignored a value that is not a health event");
    }
    decoded
}

/// Reconnecting: the backoff, and whether the outage was logged (once per outage).
#[derive(Default)]
struct Outage {
    /// `Some` while disconnected: the pause before the next try.
    backoff: Option<Duration>,
}

impl Outage {
    fn began(&mut self, url: &str, lost: &Lost) {
        if self.backoff.is_some() {
            tracing::debug!(redis = %url, error = %lost, "health store still unreachable");
            return;
        }
        tracing::warn!(
            redis = %url,
            error = %lost,
            "health store unreachable; serving on this replica's own health and reconnecting \
             in the background"
        );
        self.backoff = Some(BACKOFF_FIRST);
    }

    /// The pause before the next try (jittered), doubling the one after.
    fn pause(&mut self) -> Duration {
        let backoff = self.backoff.get_or_insert(BACKOFF_FIRST);
        let pause = backoff.mul_f64(0.8 + 0.4 * fastrand::f64());
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
        pause
    }

    fn ended(&mut self, url: &str) {
        if self.backoff.take().is_some() {
            tracing::info!(redis = %url, "health store reachable again; sharing health");
        } else {
            tracing::info!(redis = %url, "sharing health through Redis");
        }
    }
}

fn count(name: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = name;
}
