//! Which endpoint the balancer picks: strategies, in-flight counts and priority tiers.

mod common;

use std::sync::Arc;

use http::Request;
use http_body_util::BodyExt;
use llm_tower_fallback::Strategy;
use llm_tower_mock::scripted::Step;
use tokio::sync::Notify;
use tower::ServiceExt;

use common::{Stack, ep, with};

#[tokio::test(start_paused = true)]
async fn round_robin_distribution() {
    let stack = Stack::new(vec![ep("a"), ep("b"), ep("c")]);
    for _ in 0..30 {
        stack.ok().await;
    }
    let order = stack.upstream.order();
    assert_eq!(&order[..6], ["a", "b", "c", "a", "b", "c"]);
    for id in ["a", "b", "c"] {
        assert_eq!(stack.upstream.count(id), 10);
    }
}

#[tokio::test(start_paused = true)]
async fn weighted_distribution_is_smooth() {
    let stack = Stack::with(vec![with("a", |b| b.weight(3)), ep("b")], |b| {
        b.strategy(Strategy::Weighted)
    });
    for _ in 0..40 {
        stack.ok().await;
    }
    assert_eq!(stack.upstream.count("a"), 30);
    assert_eq!(stack.upstream.count("b"), 10);
    // Smooth: b appears once in every window of four.
    for window in stack.upstream.order().chunks(4) {
        assert_eq!(
            window.iter().filter(|id| *id == "b").count(),
            1,
            "{window:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn least_in_flight_avoids_the_busy_endpoint() {
    let stack = Stack::with(vec![ep("a"), ep("b")], |b| {
        b.strategy(Strategy::LeastInFlight)
    });
    let gate = Arc::new(Notify::new());
    stack.upstream.set_default("a", Step::Gate(gate.clone()));
    stack.upstream.set_default("b", Step::Gate(gate.clone()));
    // The first request parks on one endpoint; every later one must pick the other while
    // it has fewer requests in flight.
    let first = tokio::spawn({
        let svc = stack.service.clone();
        async move { svc.oneshot(Request::new(String::new())).await }
    });
    tokio::task::yield_now().await;
    let busy = stack.upstream.order()[0].clone();
    let second = tokio::spawn({
        let svc = stack.service.clone();
        async move { svc.oneshot(Request::new(String::new())).await }
    });
    tokio::task::yield_now().await;
    assert_ne!(stack.upstream.order()[1], busy);
    gate.notify_waiters();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_request_is_in_flight_until_its_body_ends() {
    let stack = Stack::new(vec![ep("a")]);
    let response = stack
        .service
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(
        stack.registry.get("a").unwrap().in_flight,
        1,
        "head received, body not read"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "a:200");
    assert_eq!(stack.registry.get("a").unwrap().in_flight, 0);
    // A body dropped unread ends the count too.
    drop(
        stack
            .service
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap(),
    );
    assert_eq!(stack.registry.get("a").unwrap().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn priority_tiers() {
    let stack = Stack::new(vec![
        with("backup", |b| b.priority(1)),
        ep("main"),
        with("last", |b| b.priority(2)),
    ]);
    for _ in 0..5 {
        stack.ok().await;
    }
    assert_eq!(stack.upstream.order(), vec!["main"; 5]);
    stack.upstream.clear();
    stack.upstream.script("main", [Step::Status(503)]);
    assert_eq!(stack.ok().await.body(), "backup:200");
    // main is cooling down: the next tier takes the traffic.
    stack.ok().await;
    assert_eq!(stack.upstream.order(), ["main", "backup", "backup"]);
}
