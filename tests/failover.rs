//! Failover past the faults a retry cannot fix (issue 27), over loopback against
//! llm-tower-mock, on paused time: a prompt too long for its model goes on to a bigger one
//! (and only there), a content filter's refusal reaches the client as it came.
//!
//! Over 500 lines on purpose: one issue's rescues, each a short scenario with the fixtures of
//! the provider formats it needs (an Anthropic stream cut short, the rest of an answer) beside
//! the tests that read them.

mod common;

use common::{
    body, chat, continuing, endpoint, error_json, header, models_seen, read_to_failure, serving,
    start, the_rest,
};
use std::fmt::Write as _;
use std::time::Duration;

use http::StatusCode;
use llm_tower::{Config, ModelFallbacks};
use llm_tower_mock::{Behavior, MockProvider};

/// A 400 as OpenAI sends it for a prompt longer than the model's context window.
fn context_length_exceeded() -> Behavior {
    Behavior::Status {
        status: 400,
        retry_after: None,
        headers: Vec::new(),
        body: Some(
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130017 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#
                .into(),
        ),
    }
}

/// The same refusal in Anthropic's words.
fn prompt_too_long() -> Behavior {
    Behavior::Status {
        status: 400,
        retry_after: None,
        headers: Vec::new(),
        body: Some(
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#
                .into(),
        ),
    }
}

async fn mocks() -> (MockProvider, MockProvider) {
    (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    )
}

/// `small` serves gpt-4o, `big` serves gpt-4.1 (which it calls `gpt-4.1-long`).
fn small_and_big(small: &MockProvider, big: &MockProvider) -> Config {
    Config::with_endpoints(vec![
        serving("small", small, 0, &[("gpt-4o", "gpt-4o")]),
        serving("big", big, 0, &[("gpt-4.1", "gpt-4.1-long")]),
    ])
}

#[tokio::test(start_paused = true)]
async fn a_prompt_too_long_goes_on_to_the_context_window_fallback() {
    for refusal in [context_length_exceeded(), prompt_too_long()] {
        let (small, big) = mocks().await;
        small.set_default(refusal);
        let mut config = small_and_big(&small, &big);
        config.models = ModelFallbacks::new().context_window_fallback("gpt-4o", ["gpt-4.1"]);
        let gw = start(config).await;

        let response = gw.post(&chat("gpt-4o")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-llm-tower-endpoint"), "big");
        assert_eq!(header(&response, "x-llm-tower-model"), "gpt-4.1");
        assert_eq!(header(&response, "x-llm-tower-attempts"), "2");
        body(response).await;
        assert_eq!(models_seen(&small), ["gpt-4o"], "refused once, not retried");
        assert_eq!(models_seen(&big), ["gpt-4.1-long"], "the model rewritten");
        // Not the deployment's fault: its health is untouched.
        assert_eq!(gw.upstream("small").await["status"], "healthy");
        assert_eq!(gw.upstream("small").await["consecutive_failures"], 0);
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_context_window_fallback_the_refusal_is_returned_once() {
    let (small, big) = mocks().await;
    small.set_default(context_length_exceeded());
    // An ordinary chain is for failures, not for a prompt that does not fit.
    let mut config = small_and_big(&small, &big);
    config.models = ModelFallbacks::new().chain("gpt-4o", ["gpt-4.1"]);
    let gw = start(config).await;

    let response = gw.post(&chat("gpt-4o")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&response, "x-llm-tower-attempts"), "1");
    let error = error_json(response).await;
    assert_eq!(error["error"]["code"], "context_length_exceeded");
    assert_eq!(small.request_count(), 1);
    assert_eq!(big.request_count(), 0);
}

/// Two models that name each other: each is sent the prompt once, and the second refusal is
/// what the client gets.
#[tokio::test(start_paused = true)]
async fn the_same_prompt_is_never_resent_to_a_model_that_refused_it() {
    let (small, big) = mocks().await;
    small.set_default(context_length_exceeded());
    big.set_default(prompt_too_long());
    let mut config = small_and_big(&small, &big);
    config.models = ModelFallbacks::new()
        .context_window_fallback("gpt-4o", ["gpt-4.1"])
        .context_window_fallback("gpt-4.1", ["gpt-4o"]);
    let gw = start(config).await;

    let response = gw.post(&chat("gpt-4o")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "big");
    assert_eq!(header(&response, "x-llm-tower-attempts"), "2");
    let error = error_json(response).await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("prompt is too long")
    );
    assert_eq!((small.request_count(), big.request_count()), (1, 1));
}

/// A content filter's 400 is the answer: not retried, not fallen back from, its reason kept.
#[tokio::test(start_paused = true)]
async fn a_content_filter_refusal_reaches_the_client_with_its_reason() {
    let (a, b) = mocks().await;
    a.set_default(Behavior::Status {
        status: 400,
        retry_after: None,
        headers: Vec::new(),
        body: Some(
            r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#
                .into(),
        ),
    });
    let mut config = Config::with_endpoints(vec![
        endpoint("a", a.base_url(), 0),
        endpoint("b", b.base_url(), 1),
    ]);
    config.models = ModelFallbacks::new();
    let gw = start(config).await;
    let response = gw.post(&chat("gpt-4o")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&response, "x-llm-tower-attempts"), "1");
    let error = error_json(response).await;
    assert_eq!(error["error"]["code"], "content_policy_violation");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("safety system")
    );
    assert_eq!((a.request_count(), b.request_count()), (1, 0));
    assert_eq!(gw.upstream("a").await["status"], "healthy");
}

/// A primary down for 60 s, asked every 4 s: its cooldown escalates (5, 10, 20, 40 s), but it
/// is probed at least every `max_probe_interval` (10 s), so it is back in use within 15 s of
/// recovering, and no request waits on it meanwhile.
#[tokio::test(start_paused = true)]
async fn a_recovered_primary_is_back_within_the_probe_interval() {
    let (a, b) = mocks().await;
    a.set_default(Behavior::status(503));
    let gw = start(Config::with_endpoints(vec![
        endpoint("a", a.base_url(), 0),
        endpoint("b", b.base_url(), 1),
    ]))
    .await;
    let started = tokio::time::Instant::now();
    let recovery = Duration::from_secs(60);
    let mut back_at = None;
    for i in 0..20 {
        let at = Duration::from_secs(4 * i);
        tokio::time::advance((started + at).saturating_duration_since(tokio::time::Instant::now()))
            .await;
        if at == recovery {
            a.set_default(Behavior::Reply);
        }
        let response = gw.post(&chat("gpt-4o")).await;
        assert_eq!(response.status(), StatusCode::OK, "request at {at:?}");
        if header(&response, "x-llm-tower-endpoint") == "a" && back_at.is_none() {
            back_at = Some(at);
        }
        body(response).await;
    }
    let back_at = back_at.expect("the primary is used again");
    let after = back_at
        .checked_sub(recovery)
        .expect("not used while it was down");
    assert!(
        after <= Duration::from_secs(15),
        "back {after:?} after recovering"
    );
    // While it was down: the first request (and its retry), then one probe at a time, at
    // least 10 s apart.
    let down = a.request_count() - (20 - usize::try_from(back_at.as_secs() / 4).unwrap());
    assert!(
        down <= 2 + 6,
        "{down} requests reached the primary while it was down"
    );
}

/// An Anthropic messages stream (its documented events) cut after the first text delta: the
/// chunked body stops without its last chunk, and the connection closes.
async fn anthropic_stream_cut_after_a_delta() -> String {
    let events = [
        r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-20241022","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
    ];
    let mut reply = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    for data in events {
        let name = &data[9..data[9..].find('"').unwrap() + 9];
        let event = format!("event: {name}\ndata: {data}\n\n");
        write!(reply, "{:x}\r\n{event}\r\n", event.len()).unwrap();
    }
    common::raw_upstream(Box::leak(reply.into_bytes().into_boxed_slice())).await
}

/// A stream cut after bytes reached the client, with nowhere to continue: the client gets one
/// error event in its API's stream format, then the abort; never a clean end, never `[DONE]`.
#[tokio::test(start_paused = true)]
async fn a_cut_stream_ends_with_an_error_event_in_the_client_s_format() {
    let openai = MockProvider::start().await.unwrap();
    openai.push(Behavior::ResetAfterChunks(2));
    let cases = [
        (
            "/v1/chat/completions",
            openai.base_url(),
            "chat.completion.chunk",
            "data: {\"error\":{",
        ),
        (
            "/v1/messages",
            anthropic_stream_cut_after_a_delta().await,
            "content_block_delta",
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\"",
        ),
    ];
    for (path, base_url, delivered, event) in cases {
        let backup = MockProvider::start().await.unwrap();
        // Each upstream speaks the client's API: nothing is translated.
        let provider = if path.ends_with("/messages") {
            llm_tower::ProviderName::Anthropic
        } else {
            llm_tower::ProviderName::Openai
        };
        let first = llm_tower::EndpointConfig {
            provider,
            ..endpoint("a", base_url, 0)
        };
        let gw = start(Config::with_endpoints(vec![
            first,
            endpoint("b", backup.base_url(), 1),
        ]))
        .await;
        let request = http::Request::post(gw.url(path))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                r#"{"model":"m","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#,
            )))
            .unwrap();
        let response = gw.send(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let (text, failed) = read_to_failure(response).await;
        assert!(failed, "{path}: the stream is aborted after the event");
        assert!(
            text.contains(delivered),
            "{path}: what came before the cut: {text}"
        );
        let at = text
            .find(event)
            .unwrap_or_else(|| panic!("{path}: no error event in {text}"));
        let last = &text[at..];
        assert!(
            last.ends_with("\n\n") && last.matches("data:").count() == 1,
            "{path}: {last}"
        );
        assert!(last.contains("incomplete"), "{path}: {last}");
        assert!(
            !text.contains("[DONE]") && !text.contains("message_stop"),
            "{path}"
        );
        assert_eq!(backup.request_count(), 0, "bytes were out: no fallback");
    }
}

/// An error status with an event-stream body, or a JSON answer, is not an event stream that
/// broke: nothing is added to it.
#[tokio::test(start_paused = true)]
async fn a_json_answer_is_never_given_an_error_event() {
    let (a, _b) = mocks().await;
    let gw = start(Config::with_endpoints(vec![endpoint("a", a.base_url(), 0)])).await;
    let response = gw.post(&chat("gpt-4o")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (text, failed) = read_to_failure(response).await;
    assert!(!failed && !text.contains("\"error\""), "{text}");
    serde_json::from_str::<serde_json::Value>(&text).expect("the JSON answer as it came");
}

/// The `data:` chunks of an OpenAI chat stream, parsed (`[DONE]` aside).
fn chunks(text: &str) -> Vec<serde_json::Value> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

const STREAMED: &str =
    r#"{"model":"mock-model","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

/// A stream cut after "Hello from", with a deployment that declares `continuation: prefill`:
/// it is sent the request with "Hello from" as the assistant's last message, and the client
/// reads one whole answer: one role chunk, one id, model and `created`, one `[DONE]`.
#[tokio::test(start_paused = true)]
async fn a_cut_stream_is_continued_where_it_broke_off() {
    let (a, b) = mocks().await;
    a.push(Behavior::ResetAfterChunks(2));
    b.push(the_rest());
    let plain = MockProvider::start().await.unwrap();
    let gw = start(Config::with_endpoints(vec![
        endpoint("a", a.base_url(), 0),
        // Not declared: never sent a prefill, though it comes first.
        endpoint("plain", plain.base_url(), 1),
        continuing("b", &b, 2),
    ]))
    .await;
    let response = gw.post(STREAMED).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (text, failed) = read_to_failure(response).await;
    assert!(!failed, "the client's stream ends cleanly: {text}");
    let chunks = chunks(&text);
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello from llm-tower-mock.");
    assert_eq!(text.matches(r#""role":"assistant""#).count(), 1, "{text}");
    assert_eq!(text.matches("data: [DONE]").count(), 1);
    for chunk in &chunks {
        assert_eq!(chunk["id"], "chatcmpl-llm-tower-mock", "{chunk}");
        assert_eq!(chunk["model"], "mock-model");
        assert_eq!(chunk["created"], chunks[0]["created"]);
    }
    let sent = b.requests()[0].json().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(
        messages.last().unwrap(),
        &serde_json::json!({"role": "assistant", "content": "Hello from"})
    );
    assert_eq!(sent["continue_final_message"], true);
    assert_eq!((a.request_count(), plain.request_count()), (1, 0));
}

/// A stream that stalls past its idle timeout after text went out is continued too.
#[tokio::test(start_paused = true)]
async fn a_stalled_stream_is_continued() {
    let (a, b) = mocks().await;
    a.push(Behavior::Stream {
        chunks: 3,
        interval: Duration::from_secs(60),
    });
    b.push(the_rest());
    let mut first = endpoint("a", a.base_url(), 0);
    first.stream_idle_timeout = Some(Duration::from_secs(5));
    let gw = start(Config::with_endpoints(vec![first, continuing("b", &b, 1)])).await;
    let started = tokio::time::Instant::now();
    let (text, failed) = read_to_failure(gw.post(STREAMED).await).await;
    assert!(!failed, "{text}");
    let content: String = chunks(&text)
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello llm-tower-mock.");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let sent = b.requests()[0].json().unwrap();
    assert_eq!(sent["messages"][1]["content"], "Hello");
}

/// A continuation that is refused never hides the failure it was to make good: the client is
/// told of the broken stream, in band, and its stream is aborted.
#[tokio::test(start_paused = true)]
async fn a_refused_continuation_leaves_the_stream_s_own_failure() {
    let (a, b) = mocks().await;
    a.push(Behavior::ResetAfterChunks(2));
    b.push(Behavior::Status {
        status: 400,
        retry_after: None,
        headers: Vec::new(),
        body: Some(
            r#"{"error":{"message":"this model does not support assistant prefill","type":"invalid_request_error","code":null}}"#
                .into(),
        ),
    });
    let gw = start(Config::with_endpoints(vec![
        endpoint("a", a.base_url(), 0),
        continuing("b", &b, 1),
    ]))
    .await;
    let (text, failed) = read_to_failure(gw.post(STREAMED).await).await;
    assert!(failed, "{text}");
    let last = text.rsplit("\n\n").find(|e| !e.is_empty()).unwrap();
    assert!(last.starts_with("data: {\"error\":"), "{last}");
    assert!(last.contains("upstream_connection_closed"), "{last}");
    assert!(!last.contains("prefill"), "{last}");
    assert_eq!(b.request_count(), 1, "asked once");
}

/// An Anthropic messages stream cut after "Hello", continued on an Anthropic deployment with
/// `continuation: prefill`: it is sent the request with "Hello" as the assistant's last
/// message, and the client reads one message: one `message_start`, one text block, the rest of
/// the text, the stop.
#[tokio::test(start_paused = true)]
async fn an_anthropic_stream_is_continued_where_it_broke_off() {
    let broken = anthropic_stream_cut_after_a_delta().await;
    let rest = [
        ("message_start", r#"{"type":"message_start","message":{"id":"msg_02","type":"message","role":"assistant","content":[],"model":"claude-b","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":14,"output_tokens":1}}}"#),
        ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
        ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", world."}}"#),
        ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
        ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}"#),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ]
    .iter()
    .fold(String::new(), |mut all, (name, data)| {
        write!(all, "event: {name}\ndata: {data}\n\n").unwrap();
        all
    });
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{rest}",
        rest.len()
    );
    let (continuing_url, seen) =
        common::recording_raw_upstream(Box::leak(reply.into_bytes().into_boxed_slice())).await;
    let mut b = endpoint("b", continuing_url, 1);
    b.provider = llm_tower::ProviderName::Anthropic;
    b.continuation = Some(llm_tower::Continuation::Prefill);
    let mut a = endpoint("a", broken, 0);
    a.provider = llm_tower::ProviderName::Anthropic;
    let gw = start(Config::with_endpoints(vec![a, b])).await;
    let request = http::Request::post(gw.url("/v1/messages"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            r#"{"model":"claude","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .unwrap();
    let (text, failed) = read_to_failure(gw.send(request).await).await;
    assert!(!failed, "{text}");
    let events: Vec<(String, serde_json::Value)> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            (
                name,
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[0].1["message"]["id"], "msg_01",
        "the first answer's message"
    );
    let said: String = events
        .iter()
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect();
    assert_eq!(said, "Hello, world.");
    assert_eq!(
        events[5].1["usage"]["output_tokens"], 4,
        "1 reported first, then 3"
    );
    let sent = seen.lock().unwrap()[0].clone();
    let body: serde_json::Value =
        serde_json::from_str(sent.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        body["messages"][1],
        serde_json::json!({"role": "assistant", "content": "Hello"})
    );
    assert!(sent.starts_with("POST /v1/messages "), "{sent}");
}

/// A first token late beyond `first_byte_timeout: 10s` (the head comes at once, the body
/// does not): the fallback answers within 11 s, and the late deployment is tried once.
#[tokio::test(start_paused = true)]
async fn a_late_first_token_costs_one_first_byte_timeout() {
    let (a, b) = mocks().await;
    a.set_default(Behavior::StallBody);
    let mut late = endpoint("a", a.base_url(), 0);
    late.first_byte_timeout = Some(Duration::from_secs(10));
    let gw = start(Config::with_endpoints(vec![
        late,
        endpoint("b", b.base_url(), 1),
    ]))
    .await;
    let started = tokio::time::Instant::now();
    let response = gw.post(STREAMED).await;
    let elapsed = started.elapsed();
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert!(elapsed <= Duration::from_secs(11), "{elapsed:?}");
    let (text, failed) = read_to_failure(response).await;
    assert!(!failed && text.contains("data: [DONE]"));
    assert_eq!(a.request_count(), 1);
}

/// Continuations are bounded: with `max_continuations: 1`, a continuation that breaks too is
/// not continued again (another deployment that could is not asked), and the client is told.
#[tokio::test(start_paused = true)]
async fn a_broken_continuation_is_not_continued_past_max_continuations() {
    let (a, b) = mocks().await;
    let c = MockProvider::start().await.unwrap();
    a.push(Behavior::ResetAfterChunks(2));
    b.push(Behavior::ResetAfterChunks(2));
    c.push(the_rest());
    let gw = start(Config::with_endpoints(vec![
        endpoint("a", a.base_url(), 0),
        continuing("b", &b, 1),
        continuing("c", &c, 2),
    ]))
    .await;
    let (text, failed) = read_to_failure(gw.post(STREAMED).await).await;
    assert!(failed, "{text}");
    assert!(text.contains("data: {\"error\":"), "{text}");
    assert_eq!((b.request_count(), c.request_count()), (1, 0));
    // What went out before the second break is one answer so far: no second role chunk.
    assert_eq!(text.matches(r#""role":"assistant""#).count(), 1, "{text}");
}
