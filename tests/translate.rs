//! Fallback across providers (issue 28, first step): an OpenAI-format client whose chain moves
//! from an OpenAI deployment that is down to an Anthropic one gets OpenAI-format answers —
//! JSON, streams, and refusals of what Anthropic cannot honour — over loopback, against the
//! mock (OpenAI) and a raw upstream that answers as Anthropic's API reference shows.

mod common;

use std::fmt::Write as _;

use common::{body, endpoint, error_json, header, recording_raw_upstream, serving, start};
use http::StatusCode;
use llm_tower::{Config, EndpointConfig, ModelFallbacks, ModelsConfig, ProviderName};
use llm_tower_mock::{Behavior, MockProvider};
use serde_json::{Value, json};

/// An HTTP/1.1 reply carrying `body` with `content_type`.
fn reply(content_type: &str, body: &str) -> &'static [u8] {
    let text = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Box::leak(text.into_bytes().into_boxed_slice())
}

/// The chain gpt-4o → claude-3-5-haiku: `openai` (down) serves gpt-4o, `claude` (an Anthropic
/// endpoint at `claude_url`) serves claude-3-5-haiku.
async fn chain_to_claude(claude_url: String) -> (common::Gateway, MockProvider) {
    let openai = MockProvider::start().await.unwrap();
    openai.set_default(Behavior::status(503));
    let claude = EndpointConfig {
        provider: ProviderName::Anthropic,
        models: Some(ModelsConfig(vec![(
            "claude-3-5-haiku".into(),
            "claude-3-5-haiku-20241022".into(),
        )])),
        ..endpoint("claude", claude_url, 1)
    };
    let mut config = Config::with_endpoints(vec![
        serving("openai", &openai, 0, &[("gpt-4o", "gpt-4o")]),
        claude,
    ]);
    config.models = ModelFallbacks::new().chain("gpt-4o", ["claude-3-5-haiku"]);
    (start(config).await, openai)
}

/// The request an upstream was sent: its head, and its body as JSON.
fn request_of(seen: &str) -> (String, Value) {
    let (head, body) = seen.split_once("\r\n\r\n").unwrap();
    (head.to_lowercase(), serde_json::from_str(body).unwrap())
}

#[tokio::test(start_paused = true)]
async fn an_openai_client_s_chain_to_claude_gets_an_openai_answer() {
    let message = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": "Bonjour."}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 4}
    });
    let (url, seen) = recording_raw_upstream(reply("application/json", &message.to_string())).await;
    let (gw, openai) = chain_to_claude(url).await;
    let response = gw
        .post(r#"{"model":"gpt-4o","max_tokens":50,"messages":[{"role":"system","content":"Answer in French."},{"role":"user","content":"Hello"}]}"#)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "claude");
    assert_eq!(header(&response, "x-llm-tower-model"), "claude-3-5-haiku");
    assert_eq!(header(&response, "content-type"), "application/json");
    let completion: Value = serde_json::from_slice(&body(response).await).unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(
        completion["model"], "claude-3-5-haiku-20241022",
        "names what answered"
    );
    assert_eq!(completion["choices"][0]["message"]["content"], "Bonjour.");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(completion["usage"]["total_tokens"], 16);
    assert!(
        openai.request_count() >= 1,
        "the first deployment was tried"
    );

    let (head, sent) = request_of(&seen.lock().unwrap()[0]);
    assert!(head.starts_with("post /v1/messages "), "{head}");
    assert!(head.contains("x-api-key: sk-upstream-claude"), "{head}");
    assert!(head.contains("anthropic-version: "), "{head}");
    assert!(!head.contains("authorization"), "{head}");
    assert_eq!(
        sent,
        json!({
            "model": "claude-3-5-haiku-20241022",
            "system": "Answer in French.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
            "max_tokens": 50
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_claude_stream_reaches_an_openai_client_as_chunks() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_02", "type": "message", "role": "assistant", "content": [], "model": "claude-3-5-haiku-20241022", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 3}}),
        json!({"type": "message_stop"}),
    ];
    let stream = events.iter().fold(String::new(), |mut stream, e| {
        let name = e["type"].as_str().unwrap();
        writeln!(stream, "event: {name}\ndata: {e}\n").unwrap();
        stream
    });
    let (url, _) = recording_raw_upstream(reply("text/event-stream", &stream)).await;
    let (gw, _openai) = chain_to_claude(url).await;
    let response = gw
        .post(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}"#)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let text = String::from_utf8(body(response).await.to_vec()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let said: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(said, "Hi there.");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);
}

/// What Anthropic cannot honour is refused, naming the field and the deployment: never
/// dropped without a word.
#[tokio::test(start_paused = true)]
async fn a_field_claude_cannot_honour_is_a_400_naming_it() {
    let (url, seen) = recording_raw_upstream(reply("application/json", "{}")).await;
    let (gw, _openai) = chain_to_claude(url).await;
    let response = gw
        .post(
            r#"{"model":"gpt-4o","logprobs":true,"messages":[{"role":"user","content":"Hello"}]}"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = error_json(response).await;
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"logprobs\"") && message.contains("claude"),
        "{message}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing was sent to Claude"
    );
}

/// An Anthropic-format client on an OpenAI-compatible deployment: its request goes out as a
/// chat completion, and it reads Anthropic answers — a message, a stream of events, an error.
#[tokio::test(start_paused = true)]
async fn an_anthropic_client_on_an_openai_deployment_gets_anthropic_answers() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(Config::with_endpoints(vec![endpoint(
        "openai",
        mock.base_url(),
        0,
    )]))
    .await;
    let messages = |body: &'static str| {
        http::Request::post(gw.url("/v1/messages"))
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap()
    };
    let response = gw
        .send(messages(
            r#"{"model":"mock-model","max_tokens":64,"system":"Be brief.","messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let message: Value = serde_json::from_slice(&body(response).await).unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], "Hello from llm-tower-mock.");
    assert_eq!(message["stop_reason"], "end_turn");
    let sent = mock.requests()[0].clone();
    assert_eq!(sent.uri.path(), "/v1/chat/completions");
    let sent = sent.json().unwrap();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["max_tokens"], 64);

    let response = gw
        .send(messages(
            r#"{"model":"mock-model","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .await;
    let text = String::from_utf8(body(response).await.to_vec()).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    let said: String = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|event| event["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(said, "Hello from llm-tower-mock.");

    mock.set_default(Behavior::Status {
        status: 404,
        retry_after: None,
        headers: Vec::new(),
        body: Some(
            r#"{"error":{"message":"The model `nope` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#
                .into(),
        ),
    });
    let response = gw
        .send(messages(
            r#"{"model":"nope","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let error: Value = serde_json::from_slice(&body(response).await).unwrap();
    assert_eq!(
        error,
        json!({"type": "error", "error": {"type": "not_found_error", "message": "The model `nope` does not exist"}})
    );
}

/// The chain gpt-4o (down) → gemini-2.0-flash on a Gemini endpoint at `gemini_url`.
async fn chain_to_gemini(gemini_url: String) -> (common::Gateway, MockProvider) {
    let openai = MockProvider::start().await.unwrap();
    openai.set_default(Behavior::status(503));
    let gemini = EndpointConfig {
        provider: ProviderName::Gemini,
        models: Some(ModelsConfig(vec![(
            "gemini-2.0-flash".into(),
            "gemini-2.0-flash".into(),
        )])),
        ..endpoint("gemini", gemini_url, 1)
    };
    let mut config = Config::with_endpoints(vec![
        serving("openai", &openai, 0, &[("gpt-4o", "gpt-4o")]),
        gemini,
    ]);
    config.models = ModelFallbacks::new().chain("gpt-4o", ["gemini-2.0-flash"]);
    (start(config).await, openai)
}

#[tokio::test(start_paused = true)]
async fn an_openai_client_s_chain_to_gemini_gets_openai_answers() {
    let response = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hallo."}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 6, "candidatesTokenCount": 2, "totalTokenCount": 8},
        "modelVersion": "gemini-2.0-flash", "responseId": "resp-7"
    });
    let (url, seen) =
        recording_raw_upstream(reply("application/json", &response.to_string())).await;
    let (gw, _openai) = chain_to_gemini(url).await;
    let answer = gw
        .post(r#"{"model":"gpt-4o","messages":[{"role":"system","content":"German."},{"role":"user","content":"Hello"}]}"#)
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(header(&answer, "x-llm-tower-model"), "gemini-2.0-flash");
    let completion: Value = serde_json::from_slice(&body(answer).await).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "Hallo.");
    assert_eq!(completion["model"], "gemini-2.0-flash");
    let (head, sent) = request_of(&seen.lock().unwrap()[0]);
    assert!(
        head.starts_with("post /v1/models/gemini-2.0-flash:generatecontent "),
        "{head}"
    );
    assert!(
        head.contains("x-goog-api-key: sk-upstream-gemini"),
        "{head}"
    );
    assert_eq!(
        sent["systemInstruction"],
        json!({"parts": [{"text": "German."}]})
    );
    assert_eq!(
        sent["contents"],
        json!([{"role": "user", "parts": [{"text": "Hello"}]}])
    );

    let events = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hal"}]}, "index": 0}], "modelVersion": "gemini-2.0-flash"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo."}]}, "finishReason": "STOP", "index": 0}]}),
    ];
    let stream = events.iter().fold(String::new(), |mut all, e| {
        writeln!(all, "data: {e}\r\n\r").unwrap();
        all
    });
    let (url, seen) = recording_raw_upstream(reply("text/event-stream", &stream)).await;
    let (gw, _openai) = chain_to_gemini(url).await;
    let answer = gw
        .post(r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello"}]}"#)
        .await;
    let text = String::from_utf8(body(answer).await.to_vec()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let said: String = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(said, "Hallo.");
    let (head, _) = request_of(&seen.lock().unwrap()[0]);
    assert!(
        head.starts_with("post /v1/models/gemini-2.0-flash:streamgeneratecontent?alt=sse "),
        "{head}"
    );
}
