//! Golden fixtures for Anthropic messages ↔ OpenAI chat, written from the two API references:
//! a request with every mapped field, the refusals, a completion, an error, and stream
//! transcripts (text, and a tool call); and a property: no input makes translation panic.

use std::fmt::Write as _;

use bytes::BytesMut;
use http::StatusCode;
use llm_tower_core::{SseSplitter, Translation};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::request::to_openai;
use super::response::{completion_to_anthropic, error_to_anthropic};
use super::stream::StreamToAnthropic;

#[test]
fn a_request_with_every_mapped_field() {
    let anthropic = json!({
        "model": "gpt-4o",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18 C"}]},
                {"type": "text", "text": "Thanks."}
            ]}
        ],
        "tools": [{"name": "weather", "description": "Weather of a city", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "weather"},
        "temperature": 0.3,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "stream": true
    });
    let openai: Value = serde_json::from_slice(
        &to_openai(
            anthropic.to_string().as_bytes(),
            "gpt",
            &Translation::default(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        openai,
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}
                ]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
                {"role": "user", "content": "Thanks."}
            ],
            "max_tokens": 256,
            "temperature": 0.3,
            "stream": true,
            "stream_options": {"include_usage": true},
            "stop": ["END"],
            "user": "u-1",
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather of a city", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}}
        })
    );
    for (field, value) in [
        ("top_k", json!(5)),
        ("thinking", json!({"type": "adaptive"})),
    ] {
        let mut request =
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        request[field] = value;
        let err = to_openai(
            request.to_string().as_bytes(),
            "gpt-main",
            &Translation::default(),
        )
        .unwrap_err();
        assert!(
            err.message().contains(&format!("\"{field}\"")) && err.message().contains("gpt-main"),
            "{}",
            err.message()
        );
    }
}

#[test]
fn a_completion_and_an_error_come_back_as_anthropic_s() {
    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38, "prompt_tokens_details": {"cached_tokens": 10}}
    });
    let message: Value = serde_json::from_slice(
        &completion_to_anthropic(completion.to_string().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        message,
        json!({
            "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o",
            "content": [{"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 8, "cache_read_input_tokens": 10}
        })
    );
    let error = br#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let anthropic: Value =
        serde_json::from_slice(&error_to_anthropic(error, StatusCode::TOO_MANY_REQUESTS).unwrap())
            .unwrap();
    assert_eq!(
        anthropic,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached for gpt-4o"}})
    );
}

fn transcript(chunks: &[Value]) -> Vec<(String, Value)> {
    let mut text = String::new();
    for chunk in chunks {
        writeln!(text, "data: {chunk}\n").unwrap();
    }
    text.push_str("data: [DONE]\n\n");
    let mut translation = StreamToAnthropic::default();
    let mut out = BytesMut::new();
    for event in SseSplitter::default().push(text.as_bytes()) {
        translation.event(&event, &mut out);
    }
    SseSplitter::default()
        .push(&out)
        .into_iter()
        .map(|e| {
            (
                e.event.unwrap_or_default(),
                serde_json::from_str(&e.data).unwrap(),
            )
        })
        .collect()
}

fn chunk(delta: &Value, finish: &Value) -> Value {
    json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

#[test]
fn a_text_stream_comes_back_as_anthropic_events() {
    let events = transcript(&[
        chunk(&json!({"role": "assistant", "content": ""}), &Value::Null),
        chunk(&json!({"content": "Hel"}), &Value::Null),
        chunk(&json!({"content": "lo."}), &Value::Null),
        chunk(&json!({}), &json!("stop")),
        json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}),
    ]);
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
    assert_eq!(events[0].1["message"]["id"], "chatcmpl-9");
    let said: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(said, "Hello.");
    assert_eq!(events[5].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[5].1["usage"]["output_tokens"], 3);
}

#[test]
fn a_tool_call_stream_comes_back_as_a_tool_use_block() {
    let call = |arguments: &str, first: bool| {
        let mut call = json!({"index": 0, "function": {"arguments": arguments}});
        if first {
            call = json!({"index": 0, "id": "call_7", "type": "function", "function": {"name": "weather", "arguments": arguments}});
        }
        chunk(&json!({"tool_calls": [call]}), &Value::Null)
    };
    let events = transcript(&[
        chunk(
            &json!({"role": "assistant", "content": "Let me see."}),
            &Value::Null,
        ),
        call("", true),
        call("{\"city\":", false),
        call("\"Rome\"}", false),
        chunk(&json!({}), &json!("tool_calls")),
    ]);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[4].1["content_block"],
        json!({"type": "tool_use", "id": "call_7", "name": "weather", "input": {}})
    );
    assert_eq!(events[4].1["index"], 1);
    let input: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(input, "{\"city\":\"Rome\"}");
    assert_eq!(events[8].1["delta"]["stop_reason"], "tool_use");
}

proptest! {
    #[test]
    fn no_input_makes_translation_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), text in ".{0,64}") {
        let _ = to_openai(&bytes, "d", &Translation::default());
        let request = format!(r#"{{"model":"m","system":[{{"type":"text","text":{text:?}}}],"messages":[{{"role":"user","content":[{{"type":"tool_result","content":7}}]}}]}}"#);
        let _ = to_openai(request.as_bytes(), "d", &Translation::default());
        let _ = completion_to_anthropic(&bytes);
        let _ = error_to_anthropic(&bytes, StatusCode::BAD_GATEWAY);
        let mut stream = StreamToAnthropic::default();
        let mut out = BytesMut::new();
        for event in SseSplitter::default().push(&bytes) {
            stream.event(&event, &mut out);
        }
    }
}

#[test]
fn thinking_is_a_reasoning_effort_and_reasoning_comes_back_as_thinking() {
    let ask = |budget: u64| {
        let request = json!({"model": "m", "max_tokens": 30000,
        "thinking": {"type": "enabled", "budget_tokens": budget},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "…", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Hello."}
            ]},
            {"role": "user", "content": "and?"}
        ]});
        let body = to_openai(
            request.to_string().as_bytes(),
            "gpt-main",
            &Translation::default(),
        )
        .unwrap();
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    let efforts: Vec<Value> = [1024, 2048, 8192, 16000, 24576]
        .into_iter()
        .map(|budget| ask(budget)["reasoning_effort"].clone())
        .collect();
    assert_eq!(efforts, ["low", "low", "medium", "high", "high"]);
    // Claude's signed blocks have no place on an OpenAI-compatible server: the text goes on.
    assert_eq!(
        ask(1024)["messages"][1],
        json!({"role": "assistant", "content": "Hello."})
    );

    let completion = json!({
        "id": "c-2", "object": "chat.completion", "created": 1, "model": "deepseek-reasoner",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "reasoning_content": "Think first.", "content": "Done."}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    });
    let message: Value = serde_json::from_slice(
        &completion_to_anthropic(completion.to_string().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        message["content"],
        json!([
            {"type": "thinking", "thinking": "Think first.", "signature": ""},
            {"type": "text", "text": "Done."}
        ])
    );
}

#[test]
fn a_reasoning_stream_comes_back_as_a_thinking_block_then_text() {
    let events = transcript(&[
        chunk(&json!({"role": "assistant", "content": ""}), &Value::Null),
        chunk(&json!({"reasoning_content": "Hmm"}), &Value::Null),
        chunk(&json!({"reasoning": ", yes."}), &Value::Null),
        chunk(&json!({"content": "Yes."}), &Value::Null),
        chunk(&json!({}), &json!("stop")),
    ]);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[1].1["content_block"]["type"], "thinking");
    assert_eq!(
        (events[2].1["delta"].clone(), events[3].1["index"].clone()),
        (
            json!({"type": "thinking_delta", "thinking": "Hmm"}),
            json!(0)
        )
    );
    assert_eq!(events[5].1["index"], 1);
    assert_eq!(
        events[6].1["delta"],
        json!({"type": "text_delta", "text": "Yes."})
    );
}
