//! Active health checks through the gateway, over loopback: configured in the file, sent
//! with the endpoint's key through the real client, shown in `/upstreams` and `/metrics`.

mod common;

use std::time::Duration;

use http::StatusCode;
use llm_tower::{Config, EndpointConfig, HealthCheck};
use llm_tower_mock::{Behavior, MockProvider};
use serde_json::Value;

use common::{CHAT, Gateway, endpoint, header, refusing_base_url, start};

/// `/upstreams`' entry of `id` once `done` says so; the checker's own request is real I/O,
/// so it is waited for (a bounded number of looks, on paused time), not assumed done.
async fn upstream_once(gw: &Gateway, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let state = gw.upstream(id).await;
        if done(&state) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} never got there: {}", gw.upstream(id).await);
}

fn chat_requests(mock: &MockProvider) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.uri.path().ends_with("/chat/completions"))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_check_restores_an_ejected_endpoint_without_traffic() {
    let primary = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    primary.script([Behavior::CloseBeforeHead, Behavior::CloseBeforeHead]);
    let gw = start(Config::with_endpoints(vec![
        EndpointConfig {
            health_check_interval: Duration::from_secs(4),
            health_check: Some(HealthCheck::default()),
            ..endpoint("primary", primary.base_url(), 0)
        },
        endpoint("backup", backup.base_url(), 1),
    ]))
    .await;

    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "backup");
    assert_eq!(gw.upstream("primary").await["status"], "ejected");

    tokio::time::advance(Duration::from_secs(4)).await;
    let state = upstream_once(&gw, "primary", |s| s["status"] == "healthy").await;
    assert_eq!(state["last_check"]["passed"], true);
    assert_eq!(state["last_check"]["outcome"], "200");
    // Restored by `GET /v1/models` with the endpoint's key; no chat request meanwhile.
    assert_eq!(chat_requests(&primary), 2);
    let check = primary
        .requests()
        .into_iter()
        .find(|r| r.uri.path() == "/v1/models")
        .expect("the check");
    assert_eq!(check.method, http::Method::GET);
    assert_eq!(
        check.header("authorization"),
        Some("Bearer sk-upstream-primary")
    );

    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "primary");
    assert_eq!(header(&response, "x-llm-tower-attempts"), "1");
}

#[tokio::test(start_paused = true)]
async fn periodic_checks_keep_requests_away_from_a_dead_endpoint() {
    let backup = MockProvider::start().await.unwrap();
    let gw = start(Config::with_endpoints(vec![
        EndpointConfig {
            health_check: Some(HealthCheck {
                interval: Some(Duration::from_secs(1)),
                timeout: Duration::from_millis(500),
                ..HealthCheck::default()
            }),
            ..endpoint("dead", refusing_base_url(), 0)
        },
        endpoint("backup", backup.base_url(), 1),
    ]))
    .await;

    let state = upstream_once(&gw, "dead", |s| s["status"] == "ejected").await;
    assert_eq!(state["last_check"]["passed"], false);
    assert_eq!(state["checks_failed"], 1);
    for _ in 0..5 {
        let response = gw.post(CHAT).await;
        assert_eq!(header(&response, "x-llm-tower-endpoint"), "backup");
        assert_eq!(header(&response, "x-llm-tower-attempts"), "1");
    }
}
