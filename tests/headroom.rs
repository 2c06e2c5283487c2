//! Headroom, black-box: a deployment whose provider says (OpenAI's `x-ratelimit-*`,
//! Anthropic's `anthropic-ratelimit-*`) its rate-limit window is nearly spent gets no client
//! request until the window resets, so no 429 has to happen; a 429 without `Retry-After`
//! cools it until the reset its headers name; `/upstreams` shows what the provider told.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{endpoint, header};
use http::StatusCode;
use llm_tower::Config;
use llm_tower_gateway::GatewayConfig;
use llm_tower_mock::{Behavior, MockProvider};
use serde_json::Value;

/// A 200 with the normal completion and these headers.
fn ok_with(headers: Vec<(String, String)>) -> Behavior {
    Behavior::Status {
        status: 200,
        retry_after: None,
        headers,
        body: None,
    }
}

/// OpenAI's requests window: `remaining` of 3, full again in `reset`.
fn openai(remaining: u64, reset: &str) -> Vec<(String, String)> {
    vec![
        ("x-ratelimit-limit-requests".into(), "3".into()),
        (
            "x-ratelimit-remaining-requests".into(),
            remaining.to_string(),
        ),
        ("x-ratelimit-reset-requests".into(), reset.into()),
    ]
}

/// `a` (tried first) and `b`, each of two deployments.
async fn gateway(a: &MockProvider, b: &MockProvider) -> common::Gateway {
    let config = Config::with_endpoints(vec![
        endpoint("a", a.base_url(), 0),
        endpoint("b", b.base_url(), 1),
    ]);
    common::serve(GatewayConfig::new(config), None, std::future::pending()).await
}

async fn chat(gw: &common::Gateway) -> StatusCode {
    let response = gw.send(gw.chat(&common::chat("mock-model"))).await;
    let status = response.status();
    common::body(response).await;
    status
}

fn deployment(upstreams: &Value, id: &str) -> Value {
    upstreams["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
        .unwrap()
        .clone()
}

#[tokio::test(start_paused = true)]
async fn no_request_reaches_a_deployment_whose_window_is_spent_before_it_resets() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    // A counts its window down to 0, and would answer 429 after that.
    a.script([
        ok_with(openai(2, "20s")),
        ok_with(openai(1, "20s")),
        ok_with(openai(0, "20s")),
    ]);
    a.set_default(Behavior::status(429));
    let gw = gateway(&a, &b).await;
    for _ in 0..6 {
        assert_eq!(chat(&gw).await, StatusCode::OK);
    }
    assert_eq!(a.request_count(), 3, "none at 0 before the reset");
    assert_eq!(b.request_count(), 3);
    let upstreams = gw.json("/upstreams").await;
    let a_shown = deployment(&upstreams, "a");
    assert_eq!(
        a_shown["status"], "healthy",
        "skipped, not ejected: {a_shown}"
    );
    assert_eq!(a_shown["rate_limits"]["requests"]["remaining"], 0);
    assert_eq!(a_shown["rate_limits"]["requests"]["limit"], 3);
    assert!(
        a_shown["rate_limits"]["requests"]["reset_seconds"]
            .as_f64()
            .unwrap()
            > 19.0
    );

    // The window resets: A is tried again.
    a.set_default(ok_with(openai(2, "20s")));
    tokio::time::advance(Duration::from_secs(21)).await;
    assert_eq!(chat(&gw).await, StatusCode::OK);
    assert_eq!(a.request_count(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_cools_until_the_reset_it_names() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    // Tokens spent for 30 s, said only by the rate-limit headers.
    a.push(Behavior::Status {
        status: 429,
        retry_after: None,
        headers: vec![
            ("x-ratelimit-limit-tokens".into(), "1000".into()),
            ("x-ratelimit-remaining-tokens".into(), "0".into()),
            ("x-ratelimit-reset-tokens".into(), "30s".into()),
        ],
        body: None,
    });
    let gw = gateway(&a, &b).await;
    assert_eq!(chat(&gw).await, StatusCode::OK, "B took it");
    assert_eq!(a.request_count(), 1, "not retried on A: it asked for 30 s");
    let a_shown = deployment(&gw.json("/upstreams").await, "a");
    assert_eq!(a_shown["status"], "ejected");
    let left = a_shown["seconds_until_return"].as_f64().unwrap();
    assert!(
        left > 29.0,
        "the reset it named, not the base cooldown: {a_shown}"
    );
}

/// `now` + `secs` as RFC 3339 (`2026-12-06T14:00:30Z`), as Anthropic writes its resets.
fn rfc3339_in(secs: u64) -> String {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    let (days, in_day) = (at / 86_400, at % 86_400);
    let (year, month, day) = llm_tower_core::civil::civil_from_days(days.cast_signed());
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

#[tokio::test(start_paused = true)]
async fn anthropic_headers_steer_the_same_way() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let reset = rfc3339_in(60);
    // Input tokens nearly spent (2 % left, under the default 5 %); requests plenty.
    a.push(ok_with(vec![
        ("anthropic-ratelimit-requests-limit".into(), "50".into()),
        ("anthropic-ratelimit-requests-remaining".into(), "49".into()),
        ("anthropic-ratelimit-requests-reset".into(), reset.clone()),
        (
            "anthropic-ratelimit-input-tokens-limit".into(),
            "50000".into(),
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining".into(),
            "1000".into(),
        ),
        ("anthropic-ratelimit-input-tokens-reset".into(), reset),
    ]));
    a.set_default(Behavior::status(429));
    let gw = gateway(&a, &b).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw).await, StatusCode::OK);
    }
    assert_eq!(a.request_count(), 1);
    let a_shown = deployment(&gw.json("/upstreams").await, "a");
    assert_eq!(
        a_shown["rate_limits"]["tokens"]["remaining"], 1000,
        "{a_shown}"
    );
    assert_eq!(a_shown["rate_limits"]["requests"]["remaining"], 49);
}

#[tokio::test(start_paused = true)]
async fn when_every_deployment_is_low_the_one_that_resets_first_is_tried() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    a.push(ok_with(openai(0, "50s")));
    b.push(ok_with(openai(0, "10s")));
    let gw = gateway(&a, &b).await;
    // A's window spent: B answers, and says its own is spent too.
    assert_eq!(chat(&gw).await, StatusCode::OK);
    assert_eq!(chat(&gw).await, StatusCode::OK);
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    // Both low: B resets first (10 s against A's 50 s).
    let response = gw.send(gw.chat(&common::chat("mock-model"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!((a.request_count(), b.request_count()), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_reset_far_off_keeps_a_deployment_away_no_longer_than_a_cooldown() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    a.push(ok_with(openai(0, "1000h")));
    let gw = gateway(&a, &b).await;
    assert_eq!(chat(&gw).await, StatusCode::OK);
    assert_eq!(chat(&gw).await, StatusCode::OK);
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    // `max_cooldown` (60 s by default) bounds the skip, as it bounds any Retry-After.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(chat(&gw).await, StatusCode::OK);
    assert_eq!(a.request_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_larger_than_what_is_left_of_a_tokens_window_goes_elsewhere() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    // 10 000 of 100 000 tokens left: above the 5 % share.
    a.set_default(ok_with(vec![
        ("x-ratelimit-limit-tokens".into(), "100000".into()),
        ("x-ratelimit-remaining-tokens".into(), "10000".into()),
        ("x-ratelimit-reset-tokens".into(), "30s".into()),
    ]));
    let gw = gateway(&a, &b).await;
    assert_eq!(chat(&gw).await, StatusCode::OK);
    assert_eq!(a.request_count(), 1);
    // A small request fits what is left.
    assert_eq!(chat(&gw).await, StatusCode::OK);
    assert_eq!(a.request_count(), 2);
    // One that may use 20 000 does not: it goes to B, and no 429 has to happen.
    let big =
        r#"{"model":"mock-model","max_tokens":20000,"messages":[{"role":"user","content":"hi"}]}"#;
    let response = gw.send(gw.chat(big)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!((a.request_count(), b.request_count()), (2, 1));
}
