//! Endpoint health: ejection, cooldowns, probes and the shared registry.
#![allow(clippy::float_cmp)] // paused time makes cooldowns exact

mod common;

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http::header::RETRY_AFTER;
use http_body_util::BodyExt;
use llm_tower_fallback::{FallbackLayer, HealthRegistry};
use llm_tower_health::Status;
use llm_tower_mock::scripted::{ScriptedUpstream, Step};
use tokio::sync::Notify;
use tower::{Layer, ServiceExt};

use common::{Stack, ep, with};

#[tokio::test(start_paused = true)]
async fn ejection_after_threshold() {
    let stack = Stack::with(vec![ep("a"), with("b", |b| b.priority(1))], |b| {
        b.unhealthy_threshold(3)
    });
    stack.upstream.set_default("a", Step::Status(500));
    for expected in 1..=2 {
        stack.ok().await;
        let snap = stack.registry.get("a").unwrap();
        assert_eq!(
            (snap.status, snap.consecutive_failures),
            (Status::Healthy, expected)
        );
    }
    stack.ok().await;
    assert_eq!(stack.status("a"), Status::Ejected);
    assert_eq!(stack.upstream.count("a"), 3);
    stack.ok().await;
    assert_eq!(stack.upstream.count("a"), 3, "skipped while ejected");
    // A success resets the count.
    let stack = Stack::with(vec![ep("a"), with("b", |b| b.priority(1))], |b| {
        b.unhealthy_threshold(2)
    });
    stack.upstream.script(
        "a",
        [Step::Status(500), Step::Status(200), Step::Status(500)],
    );
    for _ in 0..3 {
        stack.ok().await;
    }
    assert_eq!(stack.status("a"), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn retry_after_cools_down_even_below_the_threshold() {
    let stack = Stack::with(vec![ep("a"), with("b", |b| b.priority(1))], |b| {
        b.unhealthy_threshold(3)
    });
    stack
        .upstream
        .script("a", [Step::header(429, RETRY_AFTER, "30")]);
    assert_eq!(stack.ok().await.body(), "b:200");
    let snap = stack.registry.get("a").unwrap();
    assert_eq!(snap.status, Status::Ejected);
    assert_eq!(snap.seconds_until_return, 30.0);
    assert_eq!(
        snap.ejections, 0,
        "a pause the upstream asked for, not an ejection"
    );
    stack.ok().await;
    assert_eq!(
        stack.upstream.count("a"),
        1,
        "skipped while the upstream asked for a pause"
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(stack.ok().await.body(), "a:200");
    assert_eq!(stack.status("a"), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn cooldown_from_health_check_interval_then_probe_and_recovery() {
    let stack = Stack::new(vec![
        with("a", |b| b.health_check_interval(Duration::from_secs(3))),
        with("b", |b| b.priority(1)),
    ]);
    stack.upstream.script("a", [Step::Status(503)]);
    stack.ok().await;
    tokio::time::advance(Duration::from_millis(2999)).await;
    stack.ok().await;
    assert_eq!(stack.upstream.count("a"), 1, "still cooling at 2.999 s");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(stack.status("a"), Status::HalfOpen);
    assert_eq!(stack.ok().await.body(), "a:200", "probe at 3 s");
    assert_eq!(stack.status("a"), Status::Healthy);
    let snap = stack.registry.get("a").unwrap();
    assert_eq!((snap.consecutive_failures, snap.ejections), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn cooldown_from_retry_after_and_hint() {
    let stack = Stack::new(vec![
        with("a", |b| b.health_check_interval(Duration::from_secs(3))),
        with("b", |b| b.priority(1)),
    ]);
    stack
        .upstream
        .script("a", [Step::header(429, RETRY_AFTER, "10")]);
    stack.ok().await;
    let snap = stack.registry.get("a").unwrap();
    assert_eq!(snap.seconds_until_return, 10.0);
    tokio::time::advance(Duration::from_secs(9)).await;
    stack.ok().await;
    assert_eq!(stack.upstream.count("a"), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(stack.ok().await.body(), "a:200");
    // The retry layer's hint works the same; a shorter one than the interval does not shorten it.
    stack
        .upstream
        .script("a", [Step::Hint(503, Duration::from_secs(20))]);
    stack.ok().await;
    assert_eq!(stack.registry.get("a").unwrap().seconds_until_return, 20.0);
    tokio::time::advance(Duration::from_secs(20)).await;
    stack.ok().await;
    stack
        .upstream
        .script("a", [Step::Hint(503, Duration::from_secs(1))]);
    stack.ok().await;
    assert_eq!(stack.registry.get("a").unwrap().seconds_until_return, 3.0);
    // Hints are capped by max_cooldown (60 s).
    tokio::time::advance(Duration::from_secs(3)).await;
    stack
        .upstream
        .script("a", [Step::header(503, RETRY_AFTER, "86400")]);
    stack.ok().await;
    stack.ok().await;
    assert!(stack.registry.get("a").unwrap().seconds_until_return <= 60.0);
}

#[tokio::test(start_paused = true)]
async fn failed_probes_double_the_cooldown_up_to_the_cap() {
    let stack = Stack::with(
        vec![
            with("a", |b| b.health_check_interval(Duration::from_secs(1))),
            with("b", |b| b.priority(1)),
        ],
        |b| b.max_cooldown(Duration::from_secs(5)),
    );
    stack.upstream.set_default("a", Step::Status(503));
    let mut cooldowns = Vec::new();
    for _ in 0..5 {
        stack.ok().await; // ejects a (or fails its probe)
        let snap = stack.registry.get("a").unwrap();
        cooldowns.push(snap.seconds_until_return);
        tokio::time::advance(Duration::from_secs_f64(snap.seconds_until_return)).await;
    }
    assert_eq!(cooldowns, [1.0, 2.0, 4.0, 5.0, 5.0]);
    assert_eq!(stack.registry.get("a").unwrap().ejections, 5);
}

#[tokio::test(start_paused = true)]
async fn exactly_one_probe_among_concurrent_requests() {
    let stack = Stack::new(vec![ep("a"), with("b", |b| b.priority(1))]);
    stack.upstream.script("a", [Step::Status(503)]);
    stack.ok().await;
    tokio::time::advance(Duration::from_secs(5)).await;
    stack.upstream.clear();
    let gate = Arc::new(Notify::new());
    stack.upstream.script("a", [Step::Gate(gate.clone())]);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let svc = stack.service.clone();
            tokio::spawn(async move { svc.oneshot(Request::new(String::new())).await })
        })
        .collect();
    // Let all of them run until they park or finish.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(stack.upstream.count("a"), 1, "exactly one probe");
    assert!(stack.registry.get("a").unwrap().probe_in_flight);
    gate.notify_one();
    let mut bodies = Vec::new();
    for task in tasks {
        bodies.push(
            task.await
                .unwrap()
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes(),
        );
    }
    assert_eq!(bodies.iter().filter(|b| *b == "a:200").count(), 1);
    assert_eq!(bodies.iter().filter(|b| *b == "b:200").count(), 99);
    assert_eq!(stack.status("a"), Status::Healthy);
}

/// A success of a request sent before the ejection says nothing of the outage that followed:
/// it neither ends the cooldown (one the upstream asked for included) nor counts as a restore.
#[tokio::test(start_paused = true)]
async fn a_late_success_does_not_end_a_cooldown_that_began_after_it_was_sent() {
    for ejection in [Step::Status(503), Step::header(429, RETRY_AFTER, "30")] {
        let stack = Stack::new(vec![ep("a"), with("b", |b| b.priority(1))]);
        let gate = Arc::new(Notify::new());
        stack
            .upstream
            .script("a", [Step::Gate(gate.clone()), ejection]);
        // Sent while a is healthy; answers only later.
        let slow = tokio::spawn({
            let svc = stack.service.clone();
            async move { svc.oneshot(Request::new(String::new())).await }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_millis(10)).await;
        // Meanwhile a fails and is put out.
        assert_eq!(stack.ok().await.body(), "b:200");
        let before = stack.registry.get("a").unwrap();
        assert_eq!(before.status, Status::Ejected);
        gate.notify_one();
        let slow = slow.await.unwrap().unwrap().into_body().collect().await;
        assert_eq!(slow.unwrap().to_bytes(), "a:200");
        let after = stack.registry.get("a").unwrap();
        assert_eq!(after.status, Status::Ejected, "{after:?}");
        assert_eq!(after.seconds_until_return, before.seconds_until_return);
        // Still skipped.
        assert_eq!(stack.ok().await.body(), "b:200");
        assert_eq!(stack.upstream.count("a"), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn cancelled_probe_releases_the_slot() {
    let stack = Stack::new(vec![ep("a"), with("b", |b| b.priority(1))]);
    stack.upstream.script(
        "a",
        [Step::Status(503), Step::Gate(Arc::new(Notify::new()))],
    );
    stack.ok().await;
    tokio::time::advance(Duration::from_secs(5)).await;
    // The probe hangs; its client goes away.
    let probe = stack.send();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), probe)
            .await
            .is_err()
    );
    assert_eq!(stack.upstream.count("a"), 2);
    assert!(!stack.registry.get("a").unwrap().probe_in_flight);
    assert_eq!(stack.registry.get("a").unwrap().in_flight, 0);
    // The next request probes again and restores a.
    assert_eq!(stack.ok().await.body(), "a:200");
    assert_eq!(stack.status("a"), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn registry_is_shared_between_stacks_and_serialises() {
    let registry = HealthRegistry::new();
    let upstream = ScriptedUpstream::new();
    let first = FallbackLayer::builder(vec![ep("a"), ep("b")])
        .build(registry.clone())
        .unwrap()
        .layer(upstream.clone());
    let second = FallbackLayer::builder(vec![ep("a"), ep("b")])
        .build(registry.clone())
        .unwrap()
        .layer(upstream.clone());
    upstream.script("a", [Step::Status(503)]);
    first.oneshot(Request::new(String::new())).await.unwrap();
    // The second stack skips a too.
    for _ in 0..4 {
        second
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap();
    }
    assert_eq!(upstream.count("a"), 1);
    let json = serde_json::to_value(registry.snapshot()).unwrap();
    assert_eq!(json[0]["id"], "a");
    assert_eq!(json[0]["status"], "ejected");
    assert_eq!(json[0]["seconds_until_return"], 5.0);
    assert_eq!(json[1]["status"], "healthy");
}
