//! The gateway's router in-process, over real loopback sockets, against llm-tower-mock.
//!
//! Everything runs on one current-thread runtime with paused time: cooldowns are crossed with
//! `tokio::time::advance`, never with wall-clock sleeps. Endpoints have no per-try timeout so
//! the paused clock's auto-advance cannot fire one while a socket is being read.
#![allow(clippy::float_cmp)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{CHAT, body, endpoint, header, only, refusing_base_url, start};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use llm_tower::{Config, EndpointConfig};
use llm_tower_gateway::{self as gateway, GatewayConfig};
use llm_tower_mock::{Behavior, MockProvider};
use serde_json::Value;

#[tokio::test(start_paused = true)]
async fn plain_json_and_streaming_pass_through() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(only(&mock)).await;

    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "only");
    assert_eq!(header(&response, "x-llm-tower-attempts"), "1");
    let json: Value = serde_json::from_slice(&body(response).await).unwrap();
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(mock.requests()[0].uri.path(), "/v1/chat/completions");

    // SSE: the first chunk reaches the client while the upstream is still streaming.
    mock.push(Behavior::Stream {
        chunks: 3,
        interval: Duration::from_secs(10),
    });
    let started = tokio::time::Instant::now();
    let response = gw.post(r#"{"stream":true}"#).await;
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let mut stream = response.into_body();
    let first = stream.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: {"),
        "{first:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "first chunk before the upstream finished"
    );
    let rest = stream.collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&rest)
            .trim_end()
            .ends_with("data: [DONE]")
    );
    assert!(
        started.elapsed() >= Duration::from_secs(20),
        "streamed, not buffered"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_then_success() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::status(503));
    let gw = start(only(&mock)).await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-attempts"), "2");
    assert_eq!(mock.request_count(), 2);
    let bodies: Vec<_> = mock.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies,
        [Bytes::from(CHAT), Bytes::from(CHAT)],
        "identical bytes on the retry"
    );
}

#[tokio::test(start_paused = true)]
async fn fallback_ejection_probe_and_recovery() {
    let primary = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    primary.script([Behavior::CloseBeforeHead, Behavior::CloseBeforeHead]);
    let gw = start(Config::with_endpoints(vec![
        EndpointConfig {
            health_check_interval: Duration::from_secs(4),
            ..endpoint("primary", primary.base_url(), 0)
        },
        endpoint("backup", backup.base_url(), 1),
    ]))
    .await;

    // Connection closed twice (first try and retry), then the backup answers.
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "backup");
    assert_eq!(header(&response, "x-llm-tower-attempts"), "3");
    assert_eq!(primary.request_count(), 2);
    let state = gw.upstream("primary").await;
    assert_eq!(state["status"], "ejected");
    assert_eq!(state["consecutive_failures"], 1);

    // Skipped while cooling down.
    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "backup");
    assert_eq!(header(&response, "x-llm-tower-attempts"), "1");
    assert_eq!(primary.request_count(), 2);

    // After the cooldown one probe goes to the primary and restores it.
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(gw.upstream("primary").await["status"], "half_open");
    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "primary");
    assert_eq!(primary.request_count(), 3);
    assert_eq!(gw.upstream("primary").await["status"], "healthy");
}

#[tokio::test(start_paused = true)]
async fn retry_after_cools_the_endpoint_down() {
    let primary = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    primary.push(Behavior::retry_after(429, "30"));
    let gw = start(Config::with_endpoints(vec![
        endpoint("primary", primary.base_url(), 0),
        endpoint("backup", backup.base_url(), 1),
    ]))
    .await;
    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "backup");
    assert_eq!(
        primary.request_count(),
        1,
        "a 30 s wait is not slept: no retry"
    );
    let state = gw.upstream("primary").await;
    assert_eq!(state["status"], "ejected");
    assert_eq!(state["seconds_until_return"], 30.0);
    tokio::time::advance(Duration::from_secs(29)).await;
    gw.post(CHAT).await;
    assert_eq!(primary.request_count(), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "primary");
}

#[tokio::test(start_paused = true)]
async fn all_endpoints_down_gives_an_error_json() {
    let (a, b) = (refusing_base_url(), refusing_base_url());
    let gw = start(Config::with_endpoints(vec![
        endpoint("a", a, 0),
        endpoint("b", b, 0),
    ]))
    .await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(header(&response, "content-type"), "application/json");
    assert_eq!(header(&response, "x-llm-tower-attempts"), "4");
    let json: Value = serde_json::from_slice(&body(response).await).unwrap();
    assert_eq!(json["error"]["code"], "upstream_connect_failed");
    assert_eq!(json["error"]["type"], "upstream_error");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not connect")
    );
}

#[tokio::test(start_paused = true)]
async fn upstream_sees_only_the_endpoints_credentials() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::Status {
        status: 200,
        retry_after: None,
        headers: vec![
            ("connection".into(), "x-hop-out".into()),
            ("x-hop-out".into(), "1".into()),
            ("keep-alive".into(), "timeout=5".into()),
            ("proxy-authenticate".into(), "Basic".into()),
        ],
        body: None,
    });
    let gw = start(only(&mock)).await;
    let request = Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer client-secret")
        .header("x-api-key", "client-secret")
        .header("api-key", "client-secret")
        .header("x-goog-api-key", "client-secret")
        .header("proxy-authorization", "Basic client-secret")
        .header("user-agent", "curl/8")
        .header("connection", "x-hop-in")
        .header("x-hop-in", "1")
        .header("te", "trailers")
        .header("x-client-header", "kept")
        .body(Full::new(Bytes::from(CHAT)))
        .unwrap();
    let response = gw.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    for name in ["x-hop-out", "keep-alive", "proxy-authenticate"] {
        assert!(
            response.headers().get(name).is_none(),
            "{name} reached the client"
        );
    }
    let seen = &mock.requests()[0];
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer sk-upstream-only")
    );
    assert!(seen.header("user-agent").unwrap().starts_with("llm-tower/"));
    assert_eq!(seen.header("x-client-header"), Some("kept"));
    for name in [
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "proxy-authorization",
        "x-hop-in",
        "te",
    ] {
        assert_eq!(seen.header(name), None, "{name} reached the upstream");
    }
    for value in seen.headers.values() {
        assert!(!value.to_str().unwrap_or_default().contains("client-secret"));
    }
}

#[tokio::test(start_paused = true)]
async fn body_over_the_cap_is_rejected_before_upstream() {
    let mock = MockProvider::start().await.unwrap();
    let mut config = only(&mock);
    config.fallback.max_body_bytes = 64;
    let gw = start(config).await;
    let response = gw.post(&"x".repeat(64)).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "exactly the cap is accepted"
    );
    // Declared length over the cap, and a chunked upload that grows over it.
    let declared = gw.post(&"x".repeat(65)).await;
    let chunk = "x".repeat(40);
    let chunked = gw
        .raw(&format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n28\r\n{chunk}\r\n28\r\n{chunk}\r\n0\r\n\r\n"
        ))
        .await;
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(header(&declared, "content-type"), "application/json");
    let json: Value = serde_json::from_slice(&body(declared).await).unwrap();
    assert_eq!(json["error"]["code"], "request_too_large");
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("request_too_large"), "{chunked}");
    assert_eq!(
        mock.request_count(),
        1,
        "the upstream received nothing more"
    );
}

#[tokio::test(start_paused = true)]
async fn http2_clients_reach_http1_endpoints() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(only(&mock)).await;
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let response = h2.request(gw.chat(CHAT)).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-attempts"), "1");
    assert_eq!(
        mock.requests()[0].header("host"),
        Some(mock.addr().to_string().as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn h2c_endpoints_are_reached_over_http2_when_configured() {
    let mock = MockProvider::start().await.unwrap();
    let mut config = only(&mock);
    config.client.http2_only = true;
    let gw = start(config).await;

    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    let json: Value = serde_json::from_slice(&body(response).await).unwrap();
    assert_eq!(json["object"], "chat.completion");

    mock.push(Behavior::Stream {
        chunks: 3,
        interval: Duration::from_millis(10),
    });
    let response = gw.post(r#"{"stream":true}"#).await;
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let streamed = body(response).await;
    assert!(
        String::from_utf8_lossy(&streamed)
            .trim_end()
            .ends_with("data: [DONE]")
    );

    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.version, http::Version::HTTP_2);
        assert_eq!(request.uri.path(), "/v1/chat/completions");
        assert!(request.header("authorization").is_some());
    }
}

#[tokio::test(start_paused = true)]
async fn absolute_form_target_still_reaches_the_configured_endpoint() {
    let mock = MockProvider::start().await.unwrap();
    // Even a host name the gateway answers to cannot choose the upstream.
    let mut config = GatewayConfig::new(only(&mock));
    config.allowed_hosts = vec!["evil.example".into()];
    let gw = common::serve(config, None, std::future::pending()).await;
    let answer = gw
        .raw(&format!(
            "POST http://evil.example:9/v1/chat/completions HTTP/1.1\r\nhost: evil.example:9\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{CHAT}",
            CHAT.len()
        ))
        .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = &mock.requests()[0];
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(seen.header("host"), Some(mock.addr().to_string().as_str()));
}

#[tokio::test(start_paused = true)]
async fn admin_routes() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(only(&mock)).await;
    let response = gw
        .client
        .get(gw.url("/healthz").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let upstreams = gw.json("/upstreams").await;
    assert_eq!(upstreams["config"]["generation"], 1);
    assert!(upstreams["config"]["loaded_at_unix"].as_u64().unwrap() > 1_700_000_000);
    let upstreams = &upstreams["upstreams"];
    assert_eq!(upstreams[0]["id"], "only");
    assert_eq!(upstreams[0]["status"], "healthy");
    assert!(!upstreams.to_string().contains("sk-upstream"));
    // Not under the mount: not forwarded.
    let response = gw
        .client
        .get(gw.url("/elsewhere").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn demo_serves_a_request() {
    let demo = gateway::demo("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let gw = common::serve(demo.config.clone(), None, std::future::pending()).await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(demo.primary.request_count(), 1);
}

#[test]
fn gateway_config_file_with_listen_and_mount() {
    let dir = std::env::temp_dir().join(format!("llm-tower-gw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gw.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:9999\nmount: /openai\nendpoints:\n  - id: a\n    base_url: https://api.openai.com/v1\n",
    )
    .unwrap();
    let config = GatewayConfig::from_path(&path).unwrap();
    assert_eq!(config.listen.port(), 9999);
    assert_eq!(config.mount, "/openai");
    assert_eq!(config.upstream.endpoints[0].id, "a");
    std::fs::write(
        &path,
        "listen: nowhere\nendpoints: [{ id: a, base_url: 'http://h' }]\n",
    )
    .unwrap();
    let err = GatewayConfig::from_path(&path).unwrap_err().to_string();
    assert!(err.contains("listen"), "{err}");
    std::fs::write(
        &path,
        "mount: v1\nendpoints: [{ id: a, base_url: 'http://h' }]\n",
    )
    .unwrap();
    assert!(
        GatewayConfig::from_path(&path)
            .unwrap_err()
            .to_string()
            .contains("mount")
    );
    std::fs::write(
        &path,
        "endpoints: [{ id: a, base_url: 'http://h', provider: nope }]\n",
    )
    .unwrap();
    assert!(
        GatewayConfig::from_path(&path)
            .unwrap_err()
            .to_string()
            .contains("endpoints[0].provider")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn metrics_route_reports_attempts_and_health() {
    // A current-thread runtime runs every task on this thread, so a local recorder sees all.
    let (handle, _guard) = common::local_recorder();
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::status(503));
    let config = GatewayConfig::new(only(&mock));
    let gw = common::serve(config, Some(handle), std::future::pending()).await;
    assert_eq!(gw.post(CHAT).await.status(), StatusCode::OK);
    let text = gw.text("/metrics").await;
    for line in [
        r#"llm_tower_attempts_total{endpoint="only",outcome="503"} 1"#,
        r#"llm_tower_attempts_total{endpoint="only",outcome="200"} 1"#,
        r#"llm_tower_retries_total{endpoint="only"} 1"#,
        r#"llm_tower_endpoint_healthy{endpoint="only"} 1"#,
        r#"llm_tower_ejections_total{endpoint="only"} 0"#,
        // Both attempts' latencies, in buckets (which add up across replicas, where a
        // summary's quantiles do not), each under the last bound.
        r#"llm_tower_upstream_latency_seconds_bucket{endpoint="only",le="655.36"} 2"#,
        r#"llm_tower_upstream_latency_seconds_bucket{endpoint="only",le="+Inf"} 2"#,
        r#"llm_tower_upstream_latency_seconds_count{endpoint="only"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(!text.contains("quantile="), "{text}");
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_lets_streams_finish() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::Stream {
        chunks: 3,
        interval: Duration::from_secs(2),
    });
    let config = GatewayConfig::new(only(&mock));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gw = common::serve(config, None, async {
        let _ = stopped.await;
    })
    .await;
    let response = gw.post(r#"{"stream":true}"#).await;
    // The stream has started; now the process is asked to stop.
    stop.send(()).unwrap();
    let text = String::from_utf8(body(response).await.to_vec()).unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the stream finished: {text}"
    );
    assert_eq!(text.matches("data: {").count(), 3);
    let server = gw.server;
    drop(gw.client);
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("the server stops once the stream is done")
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn every_response_carries_a_request_id() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(only(&mock)).await;
    let first = gw.post(CHAT).await;
    let second = gw.post(CHAT).await;
    let (a, b) = (
        header(&first, "x-request-id"),
        header(&second, "x-request-id"),
    );
    assert!(!a.is_empty() && !b.is_empty());
    assert_ne!(a, b, "ids are unique");
    // A client's own id is kept, and sent upstream.
    let request = Request::post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "client-chosen-42")
        .body(Full::new(Bytes::from(CHAT)))
        .unwrap();
    let response = gw.send(request).await;
    assert_eq!(header(&response, "x-request-id"), "client-chosen-42");
    assert_eq!(
        mock.requests().last().unwrap().header("x-request-id"),
        Some("client-chosen-42")
    );
}
