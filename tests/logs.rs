//! What the gateway logs, read through a log captured per test: the request path's
//! middleware is the same on both paths (the router, and the server's direct call of the
//! stack's route), the access log records how each response ended, and no key reaches a log.
//!
//! A test binary of its own, its tests one at a time: each reads the log through a
//! thread-local subscriber, and tracing caches per call site, process-wide, whether it is
//! enabled, so a test running beside it on another thread with no subscriber could switch
//! its spans and events off under it.

mod common;

use bytes::Bytes;
use common::{
    CHAT, Captured, body, endpoint, everything, header, only, refusing_base_url, serve_exactly,
    serve_router_only, start, with_keys,
};
use http::{Request, StatusCode};
use http_body_util::Full;
use llm_tower::{Config, WhenAllUnhealthy};
use llm_tower_mock::{Behavior, MockProvider};

/// Held by each test: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The request path is written once (`src/routes/`): the router routes the mount to the
/// stack's route, and the server calls that same route directly. What differed while the
/// direct path wrote it a second time is the same on both now: the response carries the
/// request's id even when the upstream sent an id of its own, and what a request logs (here a
/// refused key) is logged in the request's span, with the path as the client sent it.
#[tokio::test]
async fn the_request_middleware_is_the_same_on_both_paths() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (logs, _guard) = Captured::install(tracing::Level::INFO);
    let mock = MockProvider::start().await.unwrap();
    let direct = serve_exactly(with_keys(&mock), None, std::future::pending()).await;
    let router = serve_router_only(with_keys(&mock)).await;
    for (path, gw) in [("direct", &direct), ("router", &router)] {
        mock.push(Behavior::Status {
            status: 200,
            retry_after: None,
            headers: vec![("x-request-id".into(), "upstream-id".into())],
            body: None,
        });
        let request = Request::post(gw.url("/v1/chat/completions"))
            .header("authorization", "Bearer gw-team-a-0123456789abcdef")
            .header("x-request-id", "client-chosen-id")
            .body(Full::new(Bytes::from(CHAT)))
            .unwrap();
        let response = gw.send(request).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&response, "x-request-id"),
            "client-chosen-id",
            "{path}"
        );

        let logged = logs.text().len();
        assert_eq!(gw.post(CHAT).await.status(), StatusCode::UNAUTHORIZED);
        let text = logs.text();
        let refusal = text[logged..]
            .lines()
            .find(|line| line.contains("request refused"))
            .unwrap_or_else(|| panic!("{path}: the refusal is not logged: {text}"));
        assert!(
            refusal.contains(r#"request{method=POST path="/v1/chat/completions"}"#),
            "{path}: {refusal}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn upstream_key_never_in_responses_or_trace_logs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (logs, _guard) = Captured::install(tracing::Level::TRACE);

    let mock = MockProvider::start().await.unwrap();
    let mut config = Config::with_endpoints(vec![
        endpoint("live", mock.base_url(), 0),
        endpoint("dead", refusing_base_url(), 1),
    ]);
    config.fallback.max_body_bytes = 256;
    config.fallback.when_all_unhealthy = WhenAllUnhealthy::Fail;
    let gw = start(config).await;
    let mut shown = String::new();
    // Success, a 400 from upstream, 413, connect failures and "no endpoint available".
    for behaviour in [Behavior::Reply, Behavior::status(400)] {
        mock.push(behaviour);
        shown.push_str(&everything(gw.post(CHAT).await).await);
    }
    // A client key in the query string is stripped before upstream and never logged.
    let with_query = Request::post(gw.url("/v1/chat/completions?key=client-query-secret"))
        .body(Full::new(Bytes::from(CHAT)))
        .unwrap();
    shown.push_str(&everything(gw.send(with_query).await).await);
    let response = gw.post(&"x".repeat(300)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    shown.push_str(&everything(response).await);
    mock.set_default(Behavior::CloseBeforeHead);
    for _ in 0..3 {
        shown.push_str(&everything(gw.post(CHAT).await).await);
    }
    assert!(shown.contains("upstream_connect_failed") || shown.contains("no_endpoint_available"));
    let logs = logs.text();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "captured at trace level"
    );
    for secret in [
        "sk-upstream-live",
        "sk-upstream-dead",
        "client-query-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} in a response: {shown}");
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}

#[tokio::test(start_paused = true)]
async fn the_access_log_records_how_each_response_ended() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (logs, _guard) = Captured::install(tracing::Level::INFO);
    let mock = MockProvider::start().await.unwrap();
    let gw = start(only(&mock)).await;
    // A complete JSON answer, an empty one, and an error of the gateway's own.
    let response = gw.post(CHAT).await;
    assert!(!body(response).await.is_empty());
    mock.push(Behavior::Status {
        status: 204,
        retry_after: None,
        headers: Vec::new(),
        body: Some(String::new()),
    });
    let _ = body(gw.post(CHAT).await).await;
    mock.push(Behavior::status(400));
    let _ = body(gw.post(CHAT).await).await;
    let text = logs.text();
    let requests: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("llm_tower::access"))
        .collect();
    assert_eq!(requests.len(), 3, "{text}");
    for (line, status) in requests
        .iter()
        .zip(["status=200", "status=204", "status=400"])
    {
        assert!(line.contains(status), "{line}");
        assert!(
            !line.contains("dropped"),
            "a delivered response logged as dropped: {line}"
        );
    }
}

/// The access log line says each request's tokens (`input/output`) and cost; a model without
/// a price is said once, however often it answers.
#[tokio::test]
async fn the_access_log_says_tokens_and_cost_and_an_unpriced_model_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (logs, _guard) = Captured::install(tracing::Level::INFO);
    let mock = MockProvider::start().await.unwrap();
    let mut config = only(&mock);
    config.prices =
        serde_json::from_value(serde_json::json!({"mock-model": {"input": 2.5, "output": 10.0}}))
            .unwrap();
    let gw = start(config).await;
    let _ = body(gw.post(CHAT).await).await;
    for _ in 0..2 {
        let _ = body(gw.post(&common::chat("unpriced-model")).await).await;
    }
    let text = logs.text();
    let requests: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("llm_tower::access"))
        .collect();
    assert_eq!(requests.len(), 3, "{text}");
    // 9 × $2.50 + 6 × $10 per million.
    assert!(
        requests[0].contains("tokens=9/6 cost=0.0000825"),
        "{}",
        requests[0]
    );
    assert!(
        requests[1].contains("tokens=9/6") && !requests[1].contains("cost="),
        "{}",
        requests[1]
    );
    assert_eq!(text.matches("no price for this model").count(), 1, "{text}");
    assert!(text.contains(r#"model="unpriced-model""#), "{text}");
}
