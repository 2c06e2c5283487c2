//! Two replicas (two stacks, two registries, two stores) sharing health through a real
//! `redis-server` of the test's own. Skipped, saying why, without the `redis` feature or
//! without a `redis-server` binary (`.ci/run` installs one).

#[cfg(not(feature = "redis"))]
#[test]
fn health_store_tests_need_the_redis_feature() {
    eprintln!("skipped: built without llm-tower's `redis` feature");
}

#[cfg(feature = "redis")]
mod hostile;
#[cfg(feature = "redis")]
mod proxy;
#[cfg(feature = "redis")]
mod replica;

#[cfg(feature = "redis")]
mod shared {
    use http::StatusCode;
    use llm_tower::health_store::{HealthStore, HealthStoreSettings};
    use llm_tower::{Config, HealthRegistry, Status, Upstream};
    use llm_tower_mock::Behavior;

    use super::proxy::Proxy;
    use super::replica::{
        RECONNECT, Replica, WITHIN, b_restores_while_a_is_cut_off, command, connected_pair,
        pair_with_a_behind_a_proxy, redis, restored_now, wait,
    };

    /// A's primary answers `429 Retry-After: 30`: A falls back and ejects it; within a
    /// second B skips it too, and B's own primary never hears of the request.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ejection_seen_by_one_replica_is_honoured_by_the_other() {
        let Some(redis) = redis() else { return };
        let (a, b) = connected_pair(&redis).await;

        a.primary.push(Behavior::retry_after(429, "30"));
        let before = b.store.status().applied;
        assert_eq!(a.chat().await, StatusCode::OK);
        assert_eq!(a.status("primary"), Status::Ejected);
        b.applied(before).await;
        let shared = b.registry.get("primary").unwrap();
        assert_eq!(shared.status, Status::Ejected);
        assert!(
            (28.0..=30.0).contains(&shared.seconds_until_return),
            "B honours A's deadline: {shared:?}"
        );

        assert_eq!(b.chat().await, StatusCode::OK);
        assert_eq!(b.primary.request_count(), 0, "B never sent to its primary");
        assert_eq!(b.backup.request_count(), 1);
        assert_eq!(b.status("backup"), Status::Healthy);
        // An event is not sent back: A published one, applied nothing.
        assert_eq!(a.store.status().applied, 0);
        assert!(a.store.status().published >= 1);
    }

    /// A's primary answers 200 saying its requests window is spent for 20 s: A skips it from
    /// then on, and so does B, which never sent it a request; a replica that starts later
    /// reads the word from Redis, where it is kept until the window resets.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spent_rate_limit_window_one_replica_read_is_skipped_by_all() {
        let Some(redis) = redis() else { return };
        let (a, b) = connected_pair(&redis).await;
        a.primary.push(spent("0", "20s"));
        let before = b.store.status().applied;
        assert_eq!(a.chat().await, StatusCode::OK);
        b.applied(before).await;
        let told = b.registry.get("primary").unwrap().rate_limits.unwrap();
        let requests = told.requests.unwrap();
        assert_eq!((requests.limit, requests.remaining), (Some(3), 0));
        assert!((19.0..=20.0).contains(&requests.reset_seconds), "{told:?}");

        for replica in [&a, &b] {
            assert_eq!(replica.chat().await, StatusCode::OK);
        }
        assert_eq!(
            a.primary.request_count(),
            1,
            "A sent nothing after the word"
        );
        assert_eq!(b.primary.request_count(), 0, "B never sent to its primary");
        assert_eq!(b.backup.request_count(), 1);
        assert_eq!(b.status("primary"), Status::Healthy, "skipped, not ejected");

        let ttl = command(&redis, &["PTTL", "test:rate_limits:primary"]).await;
        let redis::Value::Int(ttl) = ttl else {
            panic!("{ttl:?}")
        };
        assert!(
            (15_000..=20_000).contains(&ttl),
            "kept until the reset: {ttl}"
        );
        let late = Replica::connected_to(&redis).await;
        assert_eq!(late.chat().await, StatusCode::OK);
        assert_eq!(late.primary.request_count(), 0, "read on connecting");
        // What a replica heard it does not tell again: not on an answer of its own (B's
        // backup said nothing of rate limits), nor on connecting.
        assert_eq!(b.store.status().published, 0);
        assert_eq!(late.store.status().published, 0);
    }

    /// A reading kept in Redis from a clock 30 s ahead does not silence the others: A's
    /// newer word (on its own clock) still reaches B.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reading_from_a_clock_ahead_does_not_silence_the_others() {
        let Some(redis) = redis() else { return };
        let (a, b) = connected_pair(&redis).await;
        let ahead = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 30_000;
        let planted = format!(
            r#"{{"event":"rate_limits","origin":"skewed","id":"primary","at_ms":{ahead},"requests":{{"remaining":50,"reset_ms":60000}}}}"#
        );
        command(&redis, &["SET", "test:rate_limits:primary", &planted]).await;
        a.primary.push(spent("0", "20s"));
        let before = b.store.status().applied;
        assert_eq!(a.chat().await, StatusCode::OK);
        b.applied(before).await;
        assert_eq!(b.chat().await, StatusCode::OK);
        assert_eq!(b.primary.request_count(), 0, "B heard A's spent window");
    }

    /// A 200 saying `remaining` of 3 requests are left until `reset`.
    fn spent(remaining: &str, reset: &str) -> Behavior {
        let headers = [
            ("x-ratelimit-limit-requests", "3"),
            ("x-ratelimit-remaining-requests", remaining),
            ("x-ratelimit-reset-requests", reset),
        ];
        Behavior::Status {
            status: 200,
            retry_after: None,
            headers: headers.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
            body: None,
        }
    }

    /// A replica that starts after the ejection reads it from Redis; a restore elsewhere lets
    /// its probe through at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_replica_reads_current_ejections_and_a_restore_opens_its_probe() {
        let Some(redis) = redis() else { return };
        let a = Replica::start(&redis.url()).await;
        a.connected().await;
        a.primary.push(Behavior::retry_after(503, "30"));
        assert_eq!(a.chat().await, StatusCode::OK);
        wait(a.store.watch(), WITHIN, |s| s.published >= 1).await;

        let late = Replica::start(&redis.url()).await;
        late.applied(0).await;
        assert_eq!(late.status("primary"), Status::Ejected);
        assert_eq!(late.chat().await, StatusCode::OK);
        assert_eq!(late.primary.request_count(), 0);

        // A's cooldown is cut short (as a third replica's restore would), so its next request
        // probes its primary, which answers: a real restore, which A publishes. The late
        // replica's cooldown then ends now, and its next request probes its own primary.
        let before = late.store.status().applied;
        a.registry.apply(&restored_now("primary"));
        assert_eq!(a.status("primary"), Status::HalfOpen);
        a.probe_answers().await;
        late.applied(before).await;
        assert_eq!(late.status("primary"), Status::HalfOpen);
        late.probe_answers().await;
    }

    /// Redis dies: both replicas go on serving on their own health. An ejection made during
    /// the outage reaches the other replica once Redis is back (empty, as after a crash).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_serve_through_a_redis_outage_and_share_again_after_it() {
        let Some(mut redis) = redis() else { return };
        let (a, b) = connected_pair(&redis).await;

        redis.stop();
        a.disconnected().await;
        b.disconnected().await;
        a.primary.push(Behavior::retry_after(429, "30"));
        assert_eq!(a.chat().await, StatusCode::OK, "A serves without Redis");
        assert_eq!(b.chat().await, StatusCode::OK, "B serves without Redis");
        assert_eq!(
            b.primary.request_count(),
            1,
            "B has not heard: its primary served"
        );

        let before = b.store.status().applied;
        redis.restart().unwrap();
        a.connected().await;
        b.connected().await;
        // A republishes its cooldowns on reconnecting; B may have connected first and hear it
        // on the channel, or after and read it from the key.
        wait(b.store.watch(), RECONNECT, |s| s.applied > before).await;
        assert_eq!(b.status("primary"), Status::Ejected);
        assert_eq!(b.chat().await, StatusCode::OK);
        assert_eq!(b.primary.request_count(), 1, "B skips the primary again");
    }

    /// A store pointed at nothing: the replica serves, and the store keeps trying.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_starts_and_serves_while_redis_is_down() {
        let Some(mut redis) = redis() else { return };
        let url = redis.url();
        redis.stop();
        let a = Replica::start(&url).await;
        a.primary.push(Behavior::retry_after(503, "30"));
        assert_eq!(a.chat().await, StatusCode::OK);
        assert_eq!(a.status("primary"), Status::Ejected);
        assert!(!a.store.status().connected);

        redis.restart().unwrap();
        a.connected().await;
        // Its cooldown, made before Redis was reachable, is there for a late replica.
        wait(a.store.watch(), WITHIN, |s| s.published >= 1).await;
        let late = Replica::start(&url).await;
        late.applied(0).await;
        assert_eq!(late.status("primary"), Status::Ejected);
    }

    /// While A is cut off, B sees the deployment answer again. When A is back it reads the
    /// restore it missed (kept in Redis for it) and probes now, and it tells only the
    /// cooldowns it found itself, so B, which saw it answer, is not ejected again by A's
    /// stale copy of B's own ejection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reconnecting_replica_probes_what_was_restored_meanwhile_and_tells_nothing_back() {
        let Some(redis) = redis() else { return };
        let (proxy, a, b) = b_restores_while_a_is_cut_off(&redis).await;
        proxy.heal();
        a.connected().await;
        assert_eq!(
            a.status("primary"),
            Status::HalfOpen,
            "A missed the restore, but reads it: A probes now, not in 30 s"
        );
        // A told what it had to tell before it counted as connected: nothing about the
        // primary, so a late replica, like B, finds it healthy.
        let late = Replica::connected_to(&redis).await;
        assert_eq!(late.status("primary"), Status::Healthy);
        assert_eq!(late.store.status().applied, 0);
        assert_eq!(b.status("primary"), Status::Healthy);

        a.probe_answers().await;
    }

    /// While A is cut off, B sees the deployment answer, then fail again. When A is back it
    /// reads both the restore and the new ejection, and the restore, though read after a
    /// cooldown that began before it, does not end the new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restore_read_on_reconnecting_does_not_end_a_later_ejection() {
        let Some(redis) = redis() else { return };
        let (proxy, a, b) = b_restores_while_a_is_cut_off(&redis).await;
        let published = b.store.status().published;
        b.primary.push(Behavior::retry_after(429, "20"));
        b.chat().await;
        assert_eq!(b.status("primary"), Status::Ejected);
        wait(b.store.watch(), WITHIN, |s| s.published > published).await;

        proxy.heal();
        a.connected().await;
        let primary = a.registry.get("primary").unwrap();
        assert_eq!(primary.status, Status::Ejected, "{primary:?}");
        assert!(
            (18.0..=20.0).contains(&primary.seconds_until_return),
            "B's new deadline: {primary:?}"
        );
    }

    /// Redis restarts empty while B holds A's ejection and A is cut off. A key gone with the
    /// server is not a restore, so B keeps the cooldown, through a second reconnect too; A
    /// tells it again when it is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_that_restarted_empty_lifts_no_cooldown() {
        let Some(mut redis) = redis() else { return };
        let (proxy, a, b) = pair_with_a_behind_a_proxy(&redis).await;
        a.primary.push(Behavior::retry_after(429, "30"));
        a.chat().await;
        b.applied(0).await;

        proxy.cut();
        a.disconnected().await;
        redis.stop();
        b.disconnected().await;
        redis.restart().unwrap();
        b.connected().await;
        assert_eq!(b.status("primary"), Status::Ejected);
        redis.stop();
        b.disconnected().await;
        redis.restart().unwrap();
        b.connected().await;
        assert_eq!(b.status("primary"), Status::Ejected);
        assert_eq!(b.chat().await, StatusCode::OK);
        assert_eq!(b.primary.request_count(), 0, "B still skips A's ejection");

        proxy.heal();
        a.connected().await;
        let late = Replica::connected_to(&redis).await;
        assert_eq!(late.status("primary"), Status::Ejected, "A told it again");
    }

    /// While A is cut off, its primary answers again. When A is back it ignores B's older
    /// ejection in Redis, deletes it, and B lets its probe through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restore_made_during_an_outage_wins_over_an_older_ejection() {
        let Some(redis) = redis() else { return };
        let (proxy, a, b) = pair_with_a_behind_a_proxy(&redis).await;
        b.primary.push(Behavior::retry_after(429, "30"));
        b.chat().await;
        a.applied(0).await;

        proxy.cut();
        a.disconnected().await;
        a.registry.apply(&restored_now("primary"));
        a.probe_answers().await;

        let before = b.store.status().applied;
        proxy.heal();
        a.connected().await;
        assert_eq!(
            a.status("primary"),
            Status::Healthy,
            "B's older key is stale"
        );
        b.applied(before).await;
        assert_eq!(b.status("primary"), Status::HalfOpen, "B probes now");
        // Nothing is left in Redis for a late replica to be shut out by.
        let late = Replica::connected_to(&redis).await;
        assert_eq!(late.status("primary"), Status::Healthy);
        assert_eq!(late.store.status().applied, 0);
    }

    /// A subscription that goes silent (a NAT forgot the idle flow) is found by its ping
    /// within 5 s plus the 2 s timeout, and the replica reconnects.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscription_gone_silent_is_noticed() {
        let Some(redis) = redis() else { return };
        let proxy = Proxy::start(&redis.url()).await;
        let a = Replica::start(&proxy.url()).await;
        a.connected().await;
        proxy.silence_subscriptions();
        a.disconnected().await;
        proxy.heal();
        a.connected().await;
    }

    /// A key holding something that is not an event (another program's, a bad write) is
    /// overwritten by the next ejection; the store stays connected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_that_is_not_an_event_breaks_nothing() {
        let Some(redis) = redis() else { return };
        let (a, b) = connected_pair(&redis).await;
        command(&redis, &["SET", "test:ejected:primary", "5"]).await;
        a.primary.push(Behavior::retry_after(429, "30"));
        a.chat().await;
        b.applied(0).await;
        assert_eq!(b.status("primary"), Status::Ejected);
        assert!(a.store.status().connected);
    }

    /// Redis out of memory (`maxmemory` reached under `noeviction`): it refuses writes, but
    /// the replicas listening still hear an ejection; one that starts later cannot read it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_out_of_memory_still_tells_the_replicas_listening() {
        let Some(redis) = redis() else { return };
        let (a, b) = connected_pair(&redis).await;
        command(&redis, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
        command(&redis, &["CONFIG", "SET", "maxmemory", "1"]).await;

        a.primary.push(Behavior::retry_after(429, "30"));
        a.chat().await;
        b.applied(0).await;
        assert_eq!(b.status("primary"), Status::Ejected);
        assert!(
            a.store.status().connected,
            "a refused write is no lost connection"
        );
        let late = Replica::connected_to(&redis).await;
        assert_eq!(late.status("primary"), Status::Healthy, "nothing was kept");
    }

    /// Another fleet's prefix that begins with this one's (`test:restored:eu`) has keys this
    /// one's patterns match: they are not read as this fleet's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_fleets_keys_under_a_longer_prefix_are_not_read() {
        let Some(redis) = redis() else { return };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let theirs = format!(
            r#"{{"event":"ejected","origin":"eu","id":"primary","at_ms":{now},"until_ms":{},"retry_after":true,"ejections":1}}"#,
            now + 30_000
        );
        command(
            &redis,
            &["SET", "test:restored:eu:ejected:primary", &theirs],
        )
        .await;
        // The same event under this fleet's own key is read: the value is well formed.
        command(
            &redis,
            &[
                "SET",
                "test:ejected:backup",
                &theirs.replace("primary", "backup"),
            ],
        )
        .await;

        let late = Replica::connected_to(&redis).await;
        assert_eq!(late.status("primary"), Status::Healthy);
        assert_eq!(late.status("backup"), Status::Ejected);
    }

    /// A deployment the registry did not have when a cooldown was published (a reload adds
    /// it) learns of it when the store is told to refresh.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refresh_reads_cooldowns_for_deployments_added_since() {
        let Some(redis) = redis() else { return };
        let a = Replica::start(&redis.url()).await;
        a.connected().await;
        a.primary.push(Behavior::retry_after(429, "30"));
        assert_eq!(a.chat().await, StatusCode::OK);
        wait(a.store.watch(), WITHIN, |s| s.published >= 1).await;

        // B's store starts over a registry with no deployments: nothing to apply yet.
        let registry = HealthRegistry::new();
        let settings = HealthStoreSettings {
            prefix: "test".into(),
            ..HealthStoreSettings::new(redis.url())
        };
        let store = HealthStore::start(&settings, &registry).unwrap();
        wait(store.watch(), RECONNECT, |s| s.connected).await;
        assert_eq!(store.status().applied, 0);

        let config = Config::from_json_str(&format!(
            r#"{{ "endpoints": [{{ "id": "primary", "base_url": "{}" }}] }}"#,
            a.primary.base_url()
        ))
        .unwrap();
        let _stack = Upstream::from_config(&config)
            .unwrap()
            .registry(registry.clone())
            .build()
            .unwrap();
        assert_eq!(registry.get("primary").unwrap().status, Status::Healthy);
        store.refresh();
        wait(store.watch(), WITHIN, |s| s.applied == 1).await;
        assert_eq!(registry.get("primary").unwrap().status, Status::Ejected);
    }

    #[tokio::test]
    async fn the_settings_are_checked_before_anything_starts() {
        let registry = HealthRegistry::new();
        let err = HealthStore::start(&HealthStoreSettings::new("rediss://:pw@h:1"), &registry)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("health_store.redis") && !err.contains("pw"),
            "{err}"
        );
    }

    #[test]
    fn a_store_needs_a_runtime() {
        let err = HealthStore::start(
            &HealthStoreSettings::new("redis://127.0.0.1:1"),
            &HealthRegistry::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("Tokio runtime"), "{err}");
    }
}
