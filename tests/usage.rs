//! Usage and cost, black-box: the tokens of every answer counted per client key, model and
//! deployment, whatever the answer's API and whether it streamed; the stream a client did not
//! ask usage of left as it would have been; only the answer billed; cost from the price table.

mod common;

use bytes::Bytes;
use common::{
    Gateway, body, endpoint, json_reply, local_recorder, only, scripted_raw_upstream, sse_reply,
    with_keys,
};
use http::{Request, StatusCode};
use http_body_util::Full;
use llm_tower::{Config, EndpointConfig, ProviderName};
use llm_tower_gateway::GatewayConfig;
use llm_tower_mock::{Behavior, MockProvider};
use serde_json::json;

const TEAM_A: &str = "Bearer gw-team-a-0123456789abcdef";

fn as_team_a(gw: &Gateway, body: &str) -> Request<Full<Bytes>> {
    let mut request = gw.chat(body);
    request
        .headers_mut()
        .insert("authorization", TEAM_A.parse().unwrap());
    request
}

/// An admin page, as team A (admin routes are behind the client keys).
async fn admin(gw: &Gateway, path: &str) -> String {
    let request = Request::get(gw.url(path))
        .header("authorization", TEAM_A)
        .body(Full::new(Bytes::new()))
        .unwrap();
    String::from_utf8(body(gw.send(request).await).await.to_vec()).unwrap()
}

/// The value of the metric line that starts with `series`, if any.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn tokens(text: &str, deployment: &str, kind: &str) -> Option<f64> {
    metric(
        text,
        &format!(
            r#"llm_tower_tokens_total{{client="team-a",model="mock-model",deployment="{deployment}",kind="{kind}"}}"#
        ),
    )
}

const STREAM: &str =
    r#"{"model":"mock-model","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn a_stream_that_did_not_ask_for_usage_is_counted_and_left_as_it_was() {
    let (metrics, _guard) = local_recorder();
    let mock = MockProvider::start().await.unwrap();
    // What the provider streams to a client that does not ask for usage.
    let direct = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let unasked = body(
        direct
            .request(
                Request::post(format!("{}/chat/completions", mock.base_url()))
                    .body(Full::new(Bytes::from(STREAM)))
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .await;
    let gw = common::serve(
        with_keys(&mock),
        Some(metrics.clone()),
        std::future::pending(),
    )
    .await;
    let response = gw.send(as_team_a(&gw, STREAM)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body(response).await,
        unasked,
        "the stream as it would have been"
    );
    let sent = &mock.requests()[1];
    let sent: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    let text = admin(&gw, "/metrics").await;
    assert_eq!(tokens(&text, "only", "input"), Some(9.0), "{text}");
    assert_eq!(tokens(&text, "only", "output"), Some(6.0), "{text}");
    // Each deployment's last minute.
    let upstreams: serde_json::Value =
        serde_json::from_str(&admin(&gw, "/upstreams").await).unwrap();
    let minute = &upstreams["upstreams"][0]["last_minute"];
    let sum = |kind: &str| {
        minute[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!((sum("input_tokens"), sum("output_tokens")), (9, 6));
}

#[tokio::test]
async fn a_stream_that_asked_for_usage_sees_it_once() {
    let (metrics, _guard) = local_recorder();
    let mock = MockProvider::start().await.unwrap();
    let gw = common::serve(with_keys(&mock), Some(metrics), std::future::pending()).await;
    let asked = r#"{"model":"mock-model","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let text =
        String::from_utf8(body(gw.send(as_team_a(&gw, asked)).await).await.to_vec()).unwrap();
    assert_eq!(
        text.matches(r#""usage":{"completion_tokens":6,"prompt_tokens":9"#)
            .count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches(r#""usage":null"#).count(), 3, "{text}");
    let sent: serde_json::Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    assert_eq!(
        sent["stream_options"],
        json!({"include_usage": true}),
        "asked once, by the client"
    );
    let metrics = admin(&gw, "/metrics").await;
    assert_eq!(tokens(&metrics, "only", "output"), Some(6.0), "{metrics}");
}

#[tokio::test]
async fn an_endpoint_that_refuses_the_option_is_not_asked() {
    let (metrics, _guard) = local_recorder();
    let mock = MockProvider::start().await.unwrap();
    let mut config = with_keys(&mock);
    config.upstream.endpoints[0].stream_usage = false;
    let gw = common::serve(config, Some(metrics), std::future::pending()).await;
    body(gw.send(as_team_a(&gw, STREAM)).await).await;
    let sent: serde_json::Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    assert_eq!(sent.get("stream_options"), None);
    // Its usage is estimated from the text: "Hello from llm-tower-mock." is 26 characters.
    let text = admin(&gw, "/metrics").await;
    assert_eq!(tokens(&text, "only", "output"), Some(7.0), "{text}");
}

#[tokio::test]
async fn a_fallback_after_a_503_bills_only_the_answer() {
    let (metrics, _guard) = local_recorder();
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    a.push(Behavior::status(503));
    a.push(Behavior::status(503));
    let mut config = with_keys(&a);
    config.upstream = Config::with_endpoints(vec![
        endpoint("a", a.base_url(), 0),
        endpoint("b", b.base_url(), 1),
    ]);
    let gw = common::serve(config, Some(metrics), std::future::pending()).await;
    let response = gw.send(as_team_a(&gw, &common::chat("mock-model"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await;
    let text = admin(&gw, "/metrics").await;
    assert_eq!(a.requests().len(), 2, "the first deployment failed twice");
    assert_eq!(tokens(&text, "b", "input"), Some(9.0), "{text}");
    assert_eq!(tokens(&text, "b", "output"), Some(6.0), "{text}");
    assert_eq!(tokens(&text, "a", "input"), None, "{text}");
}

#[tokio::test]
async fn cost_is_the_price_table_s_to_the_cent() {
    let (metrics, _guard) = local_recorder();
    let mock = MockProvider::start().await.unwrap();
    let mut config = with_keys(&mock);
    // $2.50 and $10 per million tokens, as OpenAI prices gpt-4o; 1 000 requests of 9 tokens
    // in and 6 out cost 9 000 × 2.5e-6 + 6 000 × 1e-5 = $0.0825.
    config.upstream.prices =
        serde_json::from_value(json!({"mock-model": {"input": 2.5, "output": 10.0}})).unwrap();
    let gw = common::serve(config, Some(metrics), std::future::pending()).await;
    for _ in 0..1000 {
        body(gw.send(as_team_a(&gw, &common::chat("mock-model"))).await).await;
    }
    let text = admin(&gw, "/metrics").await;
    let cost = metric(
        &text,
        r#"llm_tower_cost_usd_total{client="team-a",model="mock-model"}"#,
    )
    .unwrap();
    assert!((cost - 0.0825).abs() < 1e-9, "{cost}");
}

#[tokio::test]
async fn an_openai_client_s_tokens_on_claude_are_counted_from_claude_s_stream() {
    let (metrics, _guard) = local_recorder();
    let message = |output: u64| {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 20, "cache_read_input_tokens": 1000, "output_tokens": output}})
    };
    let stream = sse_reply(&[
        (
            Some("message_start"),
            json!({"type": "message_start", "message": message(1)}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi."}}),
        ),
        (
            Some("message_delta"),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 4}}),
        ),
        (Some("message_stop"), json!({"type": "message_stop"})),
    ]);
    let (url, _) = scripted_raw_upstream(vec![stream, json_reply(200, &message(4))]).await;
    let claude = EndpointConfig {
        provider: ProviderName::Anthropic,
        ..endpoint("claude", url, 0)
    };
    let mut config = GatewayConfig::new(Config::with_endpoints(vec![claude]));
    config.client_auth = with_keys(&MockProvider::start().await.unwrap()).client_auth;
    let gw = common::serve(config, Some(metrics), std::future::pending()).await;
    let text = body(gw.send(as_team_a(&gw, STREAM)).await).await;
    assert!(
        !String::from_utf8_lossy(&text).contains("usage"),
        "not asked for"
    );
    body(gw.send(as_team_a(&gw, &common::chat("mock-model"))).await).await;
    let text = admin(&gw, "/metrics").await;
    // Claude's input without its cache, and the cache read: 1 020 a request.
    assert_eq!(tokens(&text, "claude", "input"), Some(2040.0), "{text}");
    assert_eq!(
        tokens(&text, "claude", "cached_input"),
        Some(2000.0),
        "{text}"
    );
    assert_eq!(tokens(&text, "claude", "output"), Some(8.0), "{text}");
}

#[tokio::test]
async fn usage_off_counts_nothing_and_sends_the_request_as_it_came() {
    let (metrics, _guard) = local_recorder();
    let mock = MockProvider::start().await.unwrap();
    let mut config = with_keys(&mock);
    config.upstream.usage = false;
    let gw = common::serve(config, Some(metrics), std::future::pending()).await;
    body(gw.send(as_team_a(&gw, STREAM)).await).await;
    assert_eq!(&mock.requests()[0].body[..], STREAM.as_bytes());
    assert!(
        !admin(&gw, "/metrics")
            .await
            .contains("llm_tower_tokens_total")
    );
    let _ = only(&mock);
}

/// The library's view: the record on the response, filled as the body is read; a stream its
/// client drops after the first chunk is recorded with what was read, estimated.
#[tokio::test(start_paused = true)]
async fn a_stream_abandoned_by_its_client_is_recorded_estimated() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::Stream {
        chunks: 5,
        interval: std::time::Duration::from_secs(1),
    });
    let service = llm_tower::Upstream::from_config(&only(&mock))
        .unwrap()
        .usage(true)
        .build()
        .unwrap();
    let request = Request::post(format!("{}/chat/completions", mock.base_url()))
        .body(Full::new(Bytes::from(STREAM)))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let record = response
        .extensions()
        .get::<llm_tower::UsageRecord>()
        .cloned()
        .unwrap();
    let mut stream = response.into_body();
    let first = stream.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("Hello"));
    assert_eq!(record.usage(), None, "nothing recorded while it streams");
    drop(stream);
    let usage = record.usage().unwrap();
    // "Hello": 5 characters, 2 tokens; the request a token every 4 bytes.
    assert_eq!(
        (usage.input, usage.output, usage.estimated),
        ((STREAM.len() / 4) as u64, 2, true)
    );
    assert_eq!(record.model().as_deref(), Some("mock-model"));
}

/// An OpenAI client on Gemini: the tokens read from Gemini's `usageMetadata` (its thoughts
/// counted as output), under the model the path names (Gemini's body names none).
#[tokio::test]
async fn an_openai_client_s_tokens_on_gemini_are_counted_under_its_model() {
    let (metrics, _guard) = local_recorder();
    let response = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hi."}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 2, "thoughtsTokenCount": 30, "totalTokenCount": 43},
        "modelVersion": "gemini-2.5-flash"
    });
    let (url, _) = scripted_raw_upstream(vec![json_reply(200, &response)]).await;
    let gemini = EndpointConfig {
        provider: ProviderName::Gemini,
        ..endpoint("gemini", url, 0)
    };
    let mut config = GatewayConfig::new(Config::with_endpoints(vec![gemini]));
    config.client_auth = with_keys(&MockProvider::start().await.unwrap()).client_auth;
    let gw = common::serve(config, Some(metrics), std::future::pending()).await;
    let response = gw
        .send(as_team_a(&gw, &common::chat("gemini-2.5-flash")))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await;
    let text = admin(&gw, "/metrics").await;
    let series = |kind: &str| {
        metric(
            &text,
            &format!(
                r#"llm_tower_tokens_total{{client="team-a",model="gemini-2.5-flash",deployment="gemini",kind="{kind}"}}"#
            ),
        )
    };
    assert_eq!(
        (series("input"), series("output"), series("reasoning")),
        (Some(11.0), Some(32.0), Some(30.0)),
        "{text}"
    );
}
