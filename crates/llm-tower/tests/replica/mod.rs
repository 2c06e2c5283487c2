//! Replicas for the health store's tests: each its own providers, stack, registry and
//! store over a `redis-server` of the test's own, and the steps the tests share.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use llm_tower::health::HealthEvent;
use llm_tower::health_store::{HealthStore, HealthStoreStatus};
use llm_tower::{Config, HealthRegistry, Status, Upstream};
use llm_tower_mock::{Behavior, MockProvider, RedisServer};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::proxy::Proxy;

/// How long a replica may take to hear of another's event (the issue's bound).
pub(crate) const WITHIN: Duration = Duration::from_secs(1);
/// How long reconnecting may take after Redis returns (backoff is at most 5 s).
pub(crate) const RECONNECT: Duration = Duration::from_secs(10);

pub(crate) fn redis() -> Option<RedisServer> {
    match RedisServer::start() {
        Ok(redis) => Some(redis),
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// One replica: its own providers (`primary` first, `backup` second), its own registry
/// and store, the same deployment ids as every other replica.
pub(crate) struct Replica {
    pub(crate) primary: MockProvider,
    pub(crate) backup: MockProvider,
    pub(crate) registry: HealthRegistry,
    pub(crate) service: llm_tower::UpstreamService,
    pub(crate) store: HealthStore,
}

impl Replica {
    pub(crate) async fn start(redis: &str) -> Self {
        Self::start_with(redis, None).await
    }

    /// A replica whose store signs and checks events with `secret`, when there is one.
    pub(crate) async fn start_with(redis: &str, secret: Option<&str>) -> Self {
        let primary = MockProvider::start().await.unwrap();
        let backup = MockProvider::start().await.unwrap();
        let secret = secret.map_or_else(String::new, |secret| format!(r#", "secret": "{secret}""#));
        let config = Config::from_json_str(&format!(
            r#"{{
                "health_store": {{ "redis": "{redis}", "prefix": "test"{secret} }},
                "endpoints": [
                    {{ "id": "primary", "base_url": "{}", "priority": 0 }},
                    {{ "id": "backup", "base_url": "{}", "priority": 1 }}
                ]
            }}"#,
            primary.base_url(),
            backup.base_url()
        ))
        .unwrap();
        let upstream = Upstream::from_config(&config).unwrap();
        let registry = upstream.health().clone();
        let service = upstream.build().unwrap();
        let store = HealthStore::start(config.health_store.as_ref().unwrap(), &registry).unwrap();
        Self {
            primary,
            backup,
            registry,
            service,
            store,
        }
    }

    pub(crate) async fn chat(&self) -> StatusCode {
        let body = Bytes::from_static(br#"{"model":"m","messages":[]}"#);
        let request = Request::post("/v1/chat/completions")
            .body(Full::new(body))
            .unwrap();
        self.service
            .clone()
            .oneshot(request)
            .await
            .unwrap()
            .status()
    }

    /// Its next request is the half-open probe, to its primary, which answers: the
    /// primary is healthy again.
    pub(crate) async fn probe_answers(&self) {
        let sent = self.primary.request_count();
        assert_eq!(self.chat().await, StatusCode::OK);
        assert_eq!(
            self.primary.request_count(),
            sent + 1,
            "the probe went to the primary"
        );
        assert_eq!(self.status("primary"), Status::Healthy);
    }

    pub(crate) fn status(&self, id: &str) -> Status {
        self.registry.get(id).unwrap().status
    }

    /// A replica straight to `redis`, once connected (it has read what is kept).
    pub(crate) async fn connected_to(redis: &RedisServer) -> Self {
        let replica = Self::start(&redis.url()).await;
        replica.connected().await;
        replica
    }

    pub(crate) async fn connected(&self) {
        wait(self.store.watch(), RECONNECT, |s| s.connected).await;
    }

    pub(crate) async fn disconnected(&self) {
        wait(self.store.watch(), RECONNECT, |s| !s.connected).await;
    }

    /// Until another replica's event has changed something here (`applied` grew).
    pub(crate) async fn applied(&self, before: u64) {
        wait(self.store.watch(), WITHIN, |s| s.applied > before).await;
    }
}

/// Two replicas straight to Redis, both connected.
pub(crate) async fn connected_pair(redis: &RedisServer) -> (Replica, Replica) {
    let (a, b) = (
        Replica::start(&redis.url()).await,
        Replica::start(&redis.url()).await,
    );
    a.connected().await;
    b.connected().await;
    (a, b)
}

/// A through a proxy (so that it can be cut off from Redis), B straight to Redis; both
/// connected.
pub(crate) async fn pair_with_a_behind_a_proxy(redis: &RedisServer) -> (Proxy, Replica, Replica) {
    let proxy = Proxy::start(&redis.url()).await;
    let b = Replica::start(&redis.url()).await;
    b.connected().await;
    let a = Replica::start(&proxy.url()).await;
    a.connected().await;
    (proxy, a, b)
}

/// B ejects its primary and A hears of it; A is cut off; B's cooldown is cut short (as
/// a third replica's restore would) and its probe answers, which B tells while A
/// cannot hear.
pub(crate) async fn b_restores_while_a_is_cut_off(
    redis: &RedisServer,
) -> (Proxy, Replica, Replica) {
    let (proxy, a, b) = pair_with_a_behind_a_proxy(redis).await;
    b.primary.push(Behavior::retry_after(429, "30"));
    b.chat().await;
    a.applied(0).await;
    proxy.cut();
    a.disconnected().await;
    let published = b.store.status().published;
    b.registry.apply(&restored_now("primary"));
    b.probe_answers().await;
    wait(b.store.watch(), WITHIN, |s| s.published > published).await;
    (proxy, a, b)
}

pub(crate) async fn wait(
    mut status: watch::Receiver<HealthStoreStatus>,
    within: Duration,
    until: impl FnMut(&HealthStoreStatus) -> bool,
) {
    let reached = tokio::time::timeout(within, status.wait_for(until)).await;
    let reached = reached.map(|status| status.map(|status| *status));
    assert!(
        matches!(reached, Ok(Ok(_))),
        "not within {within:?}: {:?}",
        *status.borrow()
    );
}

/// Runs a command on `redis`, as an operator (or another program) would.
pub(crate) async fn command(redis: &RedisServer, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(&mut connection).await.unwrap()
}

pub(crate) fn restored_now(id: &str) -> HealthEvent {
    HealthEvent::Restored {
        id: id.into(),
        at: std::time::SystemTime::now(),
    }
}
