//! Someone who can write to Redis but is not a replica (issue 24): forged events on the
//! channel and in the keys, a message too large to be an event, a subscription cut by
//! Redis. The replicas here share a secret, unless a test says otherwise; the test signs
//! events itself from what `wire.rs` documents, as another replica would.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::StatusCode;
use llm_tower::health_store::{HealthStore, HealthStoreSettings};
use llm_tower::{Config, HealthRegistry, Secret, Status};
use llm_tower_mock::{Behavior, RedisServer};
use sha2::Sha256;

use crate::replica::{Replica, WITHIN, command, redis, wait};

const SECRET: &str = "the-fleet-s-secret-0123456789abcdef-0123";
const WRONG: &str = "not-the-fleet-s-secret-0123456789abcdef-";
/// What the configuration of the test's replicas caps a cooldown at (the default).
const MAX_COOLDOWN_S: f64 = 60.0;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An ejection of `id` from now until `until_ms`, unsigned, in the replicas' own words.
fn ejection(id: &str, until_ms: u64) -> String {
    format!(
        r#"{{"event":"ejected","origin":"forger","id":"{id}","at_ms":{},"until_ms":{until_ms},"retry_after":true,"ejections":1}}"#,
        now_ms()
    )
}

/// `text` signed with `secret` for the prefix `test`: HMAC-SHA256 of the prefix, a newline
/// and the text, as hex in a last field `mac`.
fn signed(secret: &str, text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(b"test\n");
    mac.update(text.as_bytes());
    let hex = mac
        .finalize()
        .into_bytes()
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        });
    format!(r#"{},"mac":"{hex}"}}"#, text.strip_suffix('}').unwrap())
}

async fn publish(redis: &RedisServer, text: &str) {
    command(redis, &["PUBLISH", "test:events", text]).await;
}

async fn signed_replica(redis: &RedisServer) -> Replica {
    let replica = Replica::start_with(&redis.url(), Some(SECRET)).await;
    replica.connected().await;
    replica
}

/// Someone PUBLISHes unsigned ejections of every deployment (the review's attack: both
/// out for a minute): the replicas ignore them, count them, and keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_unsigned_ejection_on_the_channel_is_ignored_and_counted() {
    let Some(redis) = redis() else { return };
    let (a, b) = (signed_replica(&redis).await, signed_replica(&redis).await);
    let until = now_ms() + 60_000;
    publish(&redis, &ejection("primary", until)).await;
    publish(&redis, &ejection("backup", until)).await;
    for replica in [&a, &b] {
        wait(replica.store.watch(), WITHIN, |s| s.rejected == 2).await;
        assert_eq!(replica.status("primary"), Status::Healthy);
        assert_eq!(replica.status("backup"), Status::Healthy);
        assert_eq!(replica.store.status().applied, 0);
        assert!(replica.store.status().connected);
    }
    assert_eq!(a.chat().await, StatusCode::OK);
    assert_eq!(a.primary.request_count(), 1, "the primary still serves");
}

/// An ejection signed with another secret, and one signed with the right secret whose
/// deadline was changed after, are ignored and counted too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badly_signed_ejection_is_ignored_and_counted() {
    let Some(redis) = redis() else { return };
    let a = signed_replica(&redis).await;
    let (soon, later) = (now_ms() + 1_000, now_ms() + 60_000);
    publish(&redis, &signed(WRONG, &ejection("primary", later))).await;
    let tampered = signed(SECRET, &ejection("backup", soon)).replace(
        &format!(r#""until_ms":{soon}"#),
        &format!(r#""until_ms":{later}"#),
    );
    publish(&redis, &tampered).await;
    wait(a.store.watch(), WITHIN, |s| s.rejected == 2).await;
    assert_eq!(a.status("primary"), Status::Healthy);
    assert_eq!(a.status("backup"), Status::Healthy);
    assert_eq!(a.store.status().applied, 0);
}

/// A replica's ejection, signed by its store, is applied by the others with the secret, and
/// by a replica without one (a fleet putting the secret in place, replica by replica); an
/// ejection the test signs the way `wire.rs` documents is applied like a replica's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejection_signed_with_the_secret_is_applied() {
    let Some(redis) = redis() else { return };
    let (a, b) = (signed_replica(&redis).await, signed_replica(&redis).await);
    let plain = Replica::connected_to(&redis).await;

    a.primary.push(Behavior::retry_after(429, "30"));
    assert_eq!(a.chat().await, StatusCode::OK);
    b.applied(0).await;
    plain.applied(0).await;
    assert_eq!(b.status("primary"), Status::Ejected);
    assert_eq!(plain.status("primary"), Status::Ejected);

    let before = b.store.status().applied;
    publish(
        &redis,
        &signed(SECRET, &ejection("backup", now_ms() + 30_000)),
    )
    .await;
    b.applied(before).await;
    assert_eq!(b.status("backup"), Status::Ejected);
    assert_eq!(b.store.status().rejected, 0);
}

/// Redis cuts the subscription (`CLIENT KILL TYPE pubsub`, as it does to a subscriber over
/// its output limit). The store reconnects, subscribes again and reads the keys again:
/// there, a forged ejection and a badly signed restore are ignored and counted, and a
/// signed ejection is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_subscription_is_cut_forged_keys_read_again_are_ignored() {
    let Some(redis) = redis() else { return };
    let a = signed_replica(&redis).await;
    let until = now_ms() + 30_000;
    let restore = format!(
        r#"{{"event":"restored","origin":"forger","id":"primary","at_ms":{}}}"#,
        now_ms()
    );
    for (key, value) in [
        ("test:ejected:primary", ejection("primary", until)),
        ("test:restored:primary", signed(WRONG, &restore)),
        (
            "test:ejected:backup",
            signed(SECRET, &ejection("backup", until)),
        ),
    ] {
        command(&redis, &["SET", key, &value]).await;
    }

    command(&redis, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    a.disconnected().await;
    a.connected().await;
    let status = a.store.status();
    assert_eq!((status.rejected, status.applied), (2, 1), "{status:?}");
    assert_eq!(a.status("primary"), Status::Healthy);
    assert_eq!(a.status("backup"), Status::Ejected);

    // Subscribed again: a signed ejection on the channel is heard.
    publish(&redis, &signed(SECRET, &ejection("primary", until))).await;
    a.applied(1).await;
    assert_eq!(a.status("primary"), Status::Ejected);
}

/// A replica with the secret is trusted, but its deadline is not: an ejection a year long,
/// read from a key or heard on the channel, lasts at most this configuration's
/// `max_cooldown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_ejection_lasts_at_most_max_cooldown() {
    let Some(redis) = redis() else { return };
    let a_year = now_ms() + 365 * 24 * 3600 * 1000;
    let kept = signed(SECRET, &ejection("primary", a_year));
    command(&redis, &["SET", "test:ejected:primary", &kept]).await;

    let late = signed_replica(&redis).await;
    publish(&redis, &signed(SECRET, &ejection("backup", a_year))).await;
    late.applied(1).await;
    for id in ["primary", "backup"] {
        let deployment = late.registry.get(id).unwrap();
        assert_eq!(deployment.status, Status::Ejected);
        assert!(
            deployment.seconds_until_return <= MAX_COOLDOWN_S,
            "{deployment:?}"
        );
    }
}

/// A message over 64 KiB is rejected before it is parsed, and so is a key's value: here a
/// well-formed ejection, padded, which a replica without a secret would otherwise take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_or_a_key_over_64_kib_is_rejected_unread() {
    let Some(redis) = redis() else { return };
    let padded = |id| {
        let mut padded = ejection(id, now_ms() + 30_000);
        padded.insert_str(1, &" ".repeat(64 * 1024));
        assert!(serde_json::from_str::<serde_json::Value>(&padded).is_ok());
        padded
    };
    command(&redis, &["SET", "test:ejected:backup", &padded("backup")]).await;
    let a = Replica::connected_to(&redis).await;
    assert_eq!(a.store.status().rejected, 1);
    publish(&redis, &padded("primary")).await;
    wait(a.store.watch(), WITHIN, |s| s.rejected == 2).await;
    assert_eq!(a.status("primary"), Status::Healthy);
    assert_eq!(a.status("backup"), Status::Healthy);
    assert!(a.store.status().connected);
}

/// A PUBLISH larger than what Redis lets wait for a subscriber (32 MB by default; 1 MB
/// here) makes Redis cut the subscription: the store reconnects and hears the next event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_over_the_pubsub_output_limit_cuts_the_subscription_and_it_comes_back() {
    let Some(redis) = redis() else { return };
    let (a, b) = (signed_replica(&redis).await, signed_replica(&redis).await);
    command(
        &redis,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 1mb 0",
        ],
    )
    .await;
    publish(&redis, &"x".repeat(2 << 20)).await;
    a.disconnected().await;
    a.connected().await;
    b.connected().await;

    b.primary.push(Behavior::retry_after(429, "30"));
    assert_eq!(b.chat().await, StatusCode::OK);
    a.applied(0).await;
    assert_eq!(a.status("primary"), Status::Ejected);
}

/// The secret shows in no Debug or serialised form of the settings, the configuration or
/// the store; a URL's password in its query is hidden from errors too.
#[tokio::test]
async fn the_secret_and_passwords_show_nowhere() {
    let config = Config::from_json_str(&format!(
        r#"{{ "health_store": {{ "redis": "redis://127.0.0.1:1?password=hunter2", "secret": "{SECRET}" }},
              "endpoints": [{{ "id": "primary", "base_url": "http://127.0.0.1:1" }}] }}"#
    ))
    .unwrap();
    let settings = config.health_store.clone().unwrap();
    let store = HealthStore::start(&settings, &HealthRegistry::new()).unwrap();
    let shown = format!(
        "{config:?} {settings:?} {} {store:?} {}",
        serde_json::to_string(&settings).unwrap(),
        serde_json::to_string(&store.status()).unwrap()
    );
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("password=***"), "{shown}");

    let refused = HealthStoreSettings {
        secret: Some(Secret::new("tiny-secret")),
        ..HealthStoreSettings::new("rediss://h:1/0?password=hunter2")
    };
    for settings in [
        refused.clone(),
        HealthStoreSettings {
            redis: "redis://h:1/0?password=hunter2".into(),
            ..refused
        },
    ] {
        let err = HealthStore::start(&settings, &HealthRegistry::new())
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("hunter2") && !err.contains("tiny-secret"),
            "{err}"
        );
    }
}
