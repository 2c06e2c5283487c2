//! [`HealthStore`](super::HealthStore)'s background task: it connects, catches up, then
//! publishes this replica's events and applies the others' until the store is dropped,
//! reconnecting whenever the connection is lost (see `store.rs` for the design).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{HealthEvent, HealthEvents, HealthRegistry};
use futures_util::StreamExt;
use llm_tower_core::EndpointId;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, MissedTickBehavior, sleep};

use super::calls::{Lost, Subscription, TIMEOUT, bounded, query, refused};
use super::handle::HealthStoreStatus;
use super::mac::Signer;
use super::names::Names;
use super::outage::Outage;
use super::rejected::{Source, Warnings};
use super::scripts::{self, NOT_KEPT, NOT_TOLD};
use super::wire::{self, Rejected};

/// Local events waiting for the task: enough for every deployment of a large fleet to
/// change state at once.
const QUEUE: usize = 4096;
/// How often a quiet connection is checked with `PING` (a peer that vanished without
/// closing the connection is found within this plus the timeout).
const PING_EVERY: Duration = Duration::from_secs(5);
/// How often, at most, Redis refusing rate-limit readings is logged.
const READINGS_WARN_EVERY: Duration = Duration::from_secs(60);

/// This process's name on the channel: random, so that a restarted replica reads what its
/// previous life published like anyone else's.
fn origin() -> String {
    use std::hash::BuildHasher;
    let seed = std::collections::hash_map::RandomState::new()
        .hash_one((std::process::id(), SystemTime::now()));
    format!("{seed:016x}")
}

pub(super) struct Task {
    client: Client,
    names: Names,
    origin: String,
    /// Signs what this replica tells, and checks what it hears (`health_store.secret`).
    signer: Option<Signer>,
    /// How often what was not taken is logged.
    warnings: Warnings,
    /// For logs: the password replaced.
    url: String,
    registry: HealthRegistry,
    events: HealthEvents,
    /// Deployments restored while disconnected, and when: told on reconnecting.
    restored: HashMap<EndpointId, SystemTime>,
    status: watch::Sender<HealthStoreStatus>,
    /// Asks for the cooldowns in force to be read again.
    refresh: Arc<Notify>,
    /// When a refused rate-limit reading was last logged.
    readings_warned: Option<Instant>,
}

impl Task {
    pub(super) fn new(
        client: Client,
        names: Names,
        signer: Option<Signer>,
        url: String,
        registry: &HealthRegistry,
        status: watch::Sender<HealthStoreStatus>,
        refresh: Arc<Notify>,
    ) -> Self {
        Self {
            client,
            names,
            origin: origin(),
            signer,
            warnings: Warnings::default(),
            url,
            registry: registry.clone(),
            events: registry.subscribe(QUEUE),
            restored: HashMap::new(),
            status,
            refresh,
            readings_warned: None,
        }
    }

    pub(super) async fn run(mut self) {
        touch_counters();
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
        // Readings taken while cut off: a deployment skipped for its headroom gets no
        // request here to read it again from.
        for event in self.registry.rate_limits() {
            self.publish(connection, &event).await?;
        }
        Ok(())
    }

    /// Applies every restore, cooldown and rate-limit reading kept in Redis, restores first. A command Redis
    /// refused is logged, and what was read so far applied.
    async fn read_cooldowns(&mut self, connection: &mut MultiplexedConnection) -> Result<(), Lost> {
        if let Some(refused) = refused(self.scan(connection).await)? {
            tracing::warn!(error = %refused, "health store refused to list the cooldowns in force");
        }
        Ok(())
    }

    async fn scan(&mut self, connection: &mut MultiplexedConnection) -> Result<(), Lost> {
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
                    let values: Vec<Vec<u8>> = query(&scripts::read(&keys), connection).await?;
                    for (key, value) in keys.iter().zip(values) {
                        // Empty: gone since the scan, or not a string.
                        if !value.is_empty() {
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
        &mut self,
        connection: &mut MultiplexedConnection,
        event: &HealthEvent,
    ) -> Result<(), Lost> {
        let now = SystemTime::now();
        if event.remaining(now) == Some(Duration::ZERO) {
            return Ok(());
        }
        let text = wire::encode(&self.origin, event, self.signer.as_ref());
        let script = scripts::command(&self.names, &text, event, now, self.registry.max_cooldown());
        let answer = match query::<i64>(&script, connection).await {
            Ok(answer) => answer,
            result => {
                if let Some(refused) = refused(result)?
                    && self.worth_warning(event)
                {
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
        if answer == NOT_KEPT && self.worth_warning(event) {
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

    /// Whether a refusal of `event` is to be logged: always for an ejection or a restore;
    /// for rate-limit readings, told every second per busy deployment, once a minute.
    fn worth_warning(&mut self, event: &HealthEvent) -> bool {
        if !matches!(event, HealthEvent::RateLimits { .. }) {
            return true;
        }
        let now = Instant::now();
        let due = self
            .readings_warned
            .is_none_or(|warned| now.duration_since(warned) >= READINGS_WARN_EVERY);
        if due {
            self.readings_warned = Some(now);
        }
        due
    }

    /// An event on the channel.
    fn receive(&mut self, text: &[u8]) {
        match wire::open(text, self.signer.as_ref()) {
            Ok((origin, event)) => self.take(&origin, &event),
            Err(why) => self.reject(why, text.len(), Source::Channel),
        }
    }

    /// An event read from `key` on connecting. Only the key that keeps that event counts:
    /// a prefix that is this one's followed by more (`fleet:restored:eu`, another fleet's)
    /// has keys that this one's patterns match too. (With a secret, that other fleet's
    /// values are rejected, and counted, before their key is compared: a MAC, if they have
    /// one, covers their own prefix.)
    fn receive_kept(&mut self, key: &str, text: &[u8]) {
        match wire::open(text, self.signer.as_ref()) {
            Ok((origin, event)) if self.names.key_of(&event) == key => {
                self.take(&origin, &event);
            }
            Ok(_) => {}
            Err(why) => self.reject(why, text.len(), Source::Key),
        }
    }

    /// A message or a key's value that is not a health event this replica may take: forged,
    /// another program's, or too large. Counted, and logged now and then.
    fn reject(&mut self, why: Rejected, len: usize, source: Source) {
        self.status.send_modify(|status| status.rejected += 1);
        count("llm_tower_health_store_rejected_total");
        self.warnings.rejected(why, len, source);
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
                // Told every second per busy deployment: not worth a line each.
                HealthEvent::RateLimits { id, .. } => tracing::debug!(
                    endpoint = %id,
                    "rate limits read by another replica"
                ),
            }
        }
    }

    /// A local event that could not be published: a restore is remembered for the next
    /// connection (cooldowns and rate limits are read from the registry then anyway).
    fn keep(&mut self, event: HealthEvent) {
        match event {
            HealthEvent::Restored { id, at } => {
                self.restored.insert(id, at);
            }
            HealthEvent::Ejected { id, .. } => {
                self.restored.remove(&id);
            }
            HealthEvent::RateLimits { .. } => {}
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

/// Every counter at zero from the start, so that a rate over them (an alert on
/// `rejected`) has a first sample before the first increment.
fn touch_counters() {
    #[cfg(feature = "metrics")]
    for name in [
        "llm_tower_health_store_published_total",
        "llm_tower_health_store_applied_total",
        "llm_tower_health_store_dropped_total",
        "llm_tower_health_store_rejected_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

fn count(name: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(name).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = name;
}
