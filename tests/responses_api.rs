//! The OpenAI Responses API (`/v1/responses`) through the gateway, black-box, with answers
//! written from OpenAI's API reference (a `response` object; a stream of `response.created`,
//! `response.output_text.delta`, ..., `response.completed` events): routed by its model and
//! aliases like chat, its usage read from the answer and from `response.completed`, and a
//! stream that breaks ends with an `error` event in the Responses shape — never continued,
//! since a continuation cannot be spliced into its events.

mod common;

use bytes::Bytes;
use common::responses::{completed, first_events, response};
use common::{
    Gateway, body, continuing, endpoint, json_reply, local_recorder, read_to_failure,
    scripted_raw_upstream, sse_reply, with_keys,
};
use http::{Request, StatusCode};
use http_body_util::Full;
use llm_tower::{Config, ModelsConfig};
use llm_tower_mock::MockProvider;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};

const TEAM_A: &str = "Bearer gw-team-a-0123456789abcdef";

fn ask(gw: &Gateway, body: &Value) -> Request<Full<Bytes>> {
    Request::post(gw.url("/v1/responses"))
        .header("authorization", TEAM_A)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Team A's tokens of `kind` on deployment `a` under `model`, from `/metrics`.
fn tokens(metrics: &str, model: &str, kind: &str) -> Option<f64> {
    let series = format!(
        r#"llm_tower_tokens_total{{client="team-a",model="{model}",deployment="a",kind="{kind}"}}"#
    );
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
}

async fn gateway(config: Config, metrics: Option<PrometheusHandle>) -> Gateway {
    let mut gateway = with_keys(&MockProvider::start().await.unwrap());
    gateway.upstream = config;
    common::serve(gateway, metrics, std::future::pending()).await
}

/// `/metrics`, as team A.
async fn metrics_of(gw: &Gateway) -> String {
    let request = Request::get(gw.url("/metrics"))
        .header("authorization", TEAM_A)
        .body(Full::new(Bytes::new()))
        .unwrap();
    String::from_utf8(body(gw.send(request).await).await.to_vec()).unwrap()
}

/// An alias routes a Responses request like a chat one (the upstream sees the model it
/// serves), and the answer's usage is counted under the model asked for.
#[tokio::test]
async fn a_response_is_routed_by_its_alias_and_its_usage_counted() {
    let (metrics, _recorder) = local_recorder();
    let answer = json_reply(200, &response("gpt-4o-mini-2024-07-18"));
    let (url, seen) = scripted_raw_upstream(vec![answer]).await;
    let mut a = endpoint("a", url, 0);
    a.models = Some(ModelsConfig(vec![("fast".into(), "gpt-4o-mini".into())]));
    let gw = gateway(Config::with_endpoints(vec![a]), Some(metrics)).await;

    let response = gw
        .send(ask(&gw, &json!({ "model": "fast", "input": "Say hello." })))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body(response).await).unwrap();
    assert_eq!(answer["output"][0]["content"][0]["text"], "Hello there.");
    let sent = seen.lock().unwrap()[0].clone();
    assert!(sent.starts_with("POST /v1/responses "), "{sent}");
    assert!(sent.contains(r#""model":"gpt-4o-mini""#), "{sent}");
    let metrics = metrics_of(&gw).await;
    assert_eq!(tokens(&metrics, "fast", "input"), Some(36.0), "{metrics}");
    assert_eq!(tokens(&metrics, "fast", "output"), Some(87.0), "{metrics}");
}

/// A streamed answer's usage is the one `response.completed` carries.
#[tokio::test]
async fn a_streamed_response_s_usage_comes_from_response_completed() {
    let (metrics, _recorder) = local_recorder();
    let mut events = first_events("gpt-4o");
    events.push(completed("gpt-4o"));
    let (url, _) = scripted_raw_upstream(vec![sse_reply(&events)]).await;
    let gw = gateway(
        Config::with_endpoints(vec![endpoint("a", url, 0)]),
        Some(metrics),
    )
    .await;

    let request = json!({ "model": "gpt-4o", "input": "Say hello.", "stream": true });
    let response = gw.send(ask(&gw, &request)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(body(response).await.to_vec()).unwrap();
    assert!(text.contains("event: response.completed"), "{text}");
    let metrics = metrics_of(&gw).await;
    assert_eq!(tokens(&metrics, "gpt-4o", "input"), Some(36.0), "{metrics}");
    assert_eq!(
        tokens(&metrics, "gpt-4o", "output"),
        Some(87.0),
        "{metrics}"
    );
}

/// A Responses stream cut after its first events ends with an `error` event in the
/// Responses shape, and is not continued, though a deployment could continue a chat stream.
#[tokio::test]
async fn a_broken_response_stream_ends_with_an_error_event_and_is_not_continued() {
    // The events as a whole answer has them, after its head.
    let whole = sse_reply(&first_events("gpt-4o"));
    let body = whole.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let events = String::from_utf8_lossy(&whole[body..]);
    // One chunk, then the connection closes: no last chunk.
    let cut = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
         {:x}\r\n{events}\r\n",
        events.len()
    )
    .into_bytes();
    let (broken, _) = scripted_raw_upstream(vec![cut]).await;
    let other = MockProvider::start().await.unwrap();
    let config = Config::with_endpoints(vec![endpoint("a", broken, 0), continuing("b", &other, 1)]);
    let gw = gateway(config, None).await;

    let request = json!({ "model": "gpt-4o", "input": "Say hello.", "stream": true });
    let response = gw.send(ask(&gw, &request)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (text, failed) = read_to_failure(response).await;
    assert!(failed, "the client's stream fails after the event: {text}");
    assert!(
        text.contains(r#""delta":"Hello""#),
        "the text so far: {text}"
    );
    let error = text
        .split("\n\n")
        .find(|event| event.starts_with("event: error"))
        .unwrap_or_else(|| panic!("no error event: {text}"));
    let data = error
        .lines()
        .nth(1)
        .unwrap()
        .strip_prefix("data: ")
        .unwrap();
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["type"], "error");
    assert!(
        data["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{data}"
    );
    assert_eq!(other.request_count(), 0, "not continued");
}
