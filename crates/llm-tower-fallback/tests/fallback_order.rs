//! Falling back: the order endpoints are tried in, when the balancer stops, and what the
//! client gets back.

mod common;

use std::io::ErrorKind::ConnectionRefused;
use std::time::Duration;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{Request, Response, StatusCode};
use llm_tower_core::{AttemptKind, Attempts, CountBased, ErrorKind, Outcome, RetryPolicy};
use llm_tower_fallback::{FallbackLayer, HealthRegistry, WhenAllUnhealthy};
use llm_tower_health::Status;
use llm_tower_mock::scripted::{ScriptedUpstream, Step};
use tower::{Layer, ServiceExt};

use common::{Stack, ep, error_of, with};

#[tokio::test(start_paused = true)]
async fn fallback_order_wraps_around() {
    let stack = Stack::new(vec![ep("a"), ep("b"), ep("c")]);
    stack.ok().await; // a; the next request starts at b
    stack.upstream.clear();
    stack.upstream.script("b", [Step::Status(503)]);
    stack.upstream.script("c", [Step::Status(502)]);
    let response = stack.ok().await;
    assert_eq!(response.body(), "a:200");
    assert_eq!(stack.upstream.order(), ["b", "c", "a"]);
    let attempts = Attempts::of(response.extensions()).unwrap().to_vec();
    let kinds: Vec<_> = attempts.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AttemptKind::First,
            AttemptKind::Fallback,
            AttemptKind::Fallback
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn fallback_false_stops_at_that_endpoint() {
    let stack = Stack::new(vec![with("a", |b| b.fallback(false)), ep("b")]);
    stack.upstream.script("a", [Step::Status(503)]);
    let response = stack.ok().await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.body(), "a:503");
    assert_eq!(stack.upstream.order(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn client_errors_return_at_once_and_leave_health_alone() {
    let stack = Stack::new(vec![ep("a"), ep("b")]);
    for code in [400, 404, 413, 422] {
        stack.upstream.set_default("a", Step::Status(code));
        stack.upstream.set_default("b", Step::Status(code));
        let response = stack.ok().await;
        assert_eq!(response.status().as_u16(), code);
        assert_eq!(stack.upstream.calls().len(), 1, "{code}: no fallback");
        assert_eq!(stack.status("a"), Status::Healthy);
        assert_eq!(stack.status("b"), Status::Healthy);
        assert_eq!(stack.registry.get("a").unwrap().consecutive_failures, 0);
        stack.upstream.clear();
    }
}

#[tokio::test(start_paused = true)]
async fn bad_credentials_fall_back_and_count() {
    let stack = Stack::new(vec![ep("a"), ep("b")]);
    stack.upstream.script("a", [Step::Status(401)]);
    let response = stack.ok().await;
    assert_eq!(response.body(), "b:200");
    assert_eq!(stack.status("a"), Status::Ejected);
    stack.upstream.script("b", [Step::Status(403)]);
    // b fails too and a is cooling: a is tried as the soonest to return.
    let response = stack.ok().await;
    assert_eq!(response.body(), "a:200");
}

#[tokio::test(start_paused = true)]
async fn when_all_unhealthy_try_soonest_and_fail() {
    for mode in [WhenAllUnhealthy::TrySoonest, WhenAllUnhealthy::Fail] {
        let stack = Stack::with(
            vec![
                with("a", |b| b.health_check_interval(Duration::from_secs(9))),
                with("b", |b| b.health_check_interval(Duration::from_secs(4))),
            ],
            |b| b.when_all_unhealthy(mode),
        );
        stack.upstream.script("a", [Step::Status(503)]);
        stack.upstream.script("b", [Step::Status(503)]);
        let response = stack.ok().await;
        assert_eq!(response.body(), "b:503", "last upstream response");
        assert_eq!(stack.status("a"), Status::Ejected);
        assert_eq!(stack.status("b"), Status::Ejected);
        stack.upstream.clear();
        tokio::time::advance(Duration::from_secs(1)).await;
        match mode {
            WhenAllUnhealthy::TrySoonest => {
                assert_eq!(stack.ok().await.body(), "b:200");
                assert_eq!(stack.upstream.order(), ["b"]);
            }
            WhenAllUnhealthy::Fail => {
                let err = stack.send().await.unwrap_err();
                let err = error_of(&err);
                assert_eq!(err.kind(), ErrorKind::NoEndpointAvailable);
                assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
                let response: Response<Bytes> = err.to_response();
                assert_eq!(response.headers()[RETRY_AFTER], "3");
                assert!(stack.upstream.calls().is_empty(), "nobody contacted");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn last_upstream_response_is_returned_intact() {
    let stack = Stack::new(vec![ep("a"), ep("b")]);
    stack
        .upstream
        .script("a", [Step::header(503, "x-detail", "overloaded")]);
    stack
        .upstream
        .script("b", [Step::header(502, "x-detail", "bad gateway")]);
    let response = stack.ok().await;
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-detail"], "bad gateway");
    assert_eq!(response.body(), "b:502");
    // A transport error after a response: the response is what the client gets.
    tokio::time::advance(Duration::from_secs(60)).await;
    stack
        .upstream
        .script("a", [Step::header(503, "x-detail", "overloaded")]);
    stack.upstream.script("b", [Step::Fail(ConnectionRefused)]);
    let response = stack.ok().await;
    assert_eq!(response.headers()["x-detail"], "overloaded");
    assert_eq!(response.body(), "a:503");
    let outcomes: Vec<_> = Attempts::of(response.extensions())
        .unwrap()
        .to_vec()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert!(
        outcomes.contains(&Outcome::Error(ErrorKind::Connect)),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)),
        "{outcomes:?}"
    );
    // Only transport errors: an error carrying the attempts.
    tokio::time::advance(Duration::from_secs(60)).await;
    stack.upstream.script("a", [Step::Fail(ConnectionRefused)]);
    stack.upstream.script("b", [Step::Fail(ConnectionRefused)]);
    let err = stack.send().await.unwrap_err();
    let err = error_of(&err);
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(err.attempts().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn attempts_across_retries_and_fallbacks() {
    let registry = HealthRegistry::new();
    let policy = RetryPolicy::CountBased(CountBased { times: 1 });
    let endpoints = vec![
        with("a", |b| b.retry_policy(policy.clone())),
        with("b", |b| b.retry_policy(policy.clone())),
    ];
    let layer = FallbackLayer::builder(endpoints).build(registry).unwrap();
    let upstream = ScriptedUpstream::new();
    upstream.script("a", [Step::Status(503), Step::Status(503)]);
    let service = layer.layer(llm_tower_retry::RetryLayer::new().layer(upstream.clone()));
    let response = service
        .oneshot(Request::new(String::from("x")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let attempts = Attempts::of(response.extensions()).unwrap().to_vec();
    let summary: Vec<_> = attempts
        .iter()
        .map(|a| (a.endpoint.to_string(), a.kind, a.outcome))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "a".into(),
                AttemptKind::First,
                Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)
            ),
            (
                "a".into(),
                AttemptKind::Retry,
                Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)
            ),
            (
                "b".into(),
                AttemptKind::Fallback,
                Outcome::Status(StatusCode::OK)
            ),
        ]
    );
    assert_eq!(upstream.calls().len(), 3);
}
