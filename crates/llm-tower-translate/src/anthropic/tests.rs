//! Golden fixtures for OpenAI chat ↔ Anthropic messages, written from the two API references:
//! a request with every mapped field, the refusals, a message, an error, and stream
//! transcripts (text, and a tool call); and a property: no input makes translation panic.

use std::fmt::Write as _;

use bytes::BytesMut;
use llm_tower_core::{SseSplitter, Translation};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::request::to_anthropic;
use super::response::{error_to_openai, message_to_openai};
use super::stream::StreamToOpenAi;

fn anthropic_of(openai: &Value) -> (Value, bool) {
    let (body, usage) = to_anthropic(
        openai.to_string().as_bytes(),
        "claude-main",
        &Translation::default(),
    )
    .unwrap();
    (serde_json::from_slice(&body).unwrap(), usage)
}

#[test]
fn a_request_with_every_mapped_field() {
    let openai = json!({
        "model": "claude-3-5-haiku",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "4 C"}]}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "max_completion_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "user": "user-42",
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let (anthropic, usage_in_stream) = anthropic_of(&openai);
    assert!(usage_in_stream);
    assert_eq!(
        anthropic,
        json!({
            "model": "claude-3-5-haiku",
            "system": "Be brief.\n\nUse metric units.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Oslo"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "4 C"}
                ]}
            ],
            "tools": [{"name": "weather", "description": "Weather of a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any"},
            "max_tokens": 300,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "user-42"},
            "stream": true
        })
    );
    let (plain, usage_in_stream) =
        anthropic_of(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(plain["max_tokens"], 4096, "Anthropic requires one");
    assert_eq!(
        plain["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
    assert!(!usage_in_stream && plain.get("stream").is_none());
}

#[test]
fn fields_anthropic_cannot_honour_are_refused_by_name() {
    for (field, value) in [
        ("logprobs", json!(true)),
        ("n", json!(2)),
        ("seed", json!(7)),
        ("frequency_penalty", json!(0.5)),
        ("response_format", json!({"type": "json_object"})),
    ] {
        let mut request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        request[field] = value;
        let err = to_anthropic(
            request.to_string().as_bytes(),
            "claude-main",
            &Translation::default(),
        )
        .unwrap_err();
        let message = err.message();
        assert!(
            message.contains(&format!("\"{field}\"")) && message.contains("claude-main"),
            "{message}"
        );
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }
    // Values that ask for nothing are fine.
    let request = json!({"model": "m", "n": 1, "logprobs": false, "response_format": {"type": "text"}, "messages": [{"role": "user", "content": "hi"}]});
    assert!(
        to_anthropic(
            request.to_string().as_bytes(),
            "claude-main",
            &Translation::default()
        )
        .is_ok()
    );
    let bad_role = json!({"model": "m", "messages": [{"role": "narrator", "content": "hi"}]});
    let err = to_anthropic(
        bad_role.to_string().as_bytes(),
        "claude-main",
        &Translation::default(),
    )
    .unwrap_err();
    assert!(
        err.message().contains("messages[0].role"),
        "{}",
        err.message()
    );
}

#[test]
fn a_message_and_an_error_come_back_as_openai_s() {
    let message = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 20, "output_tokens": 10, "cache_read_input_tokens": 100}
    });
    let completion: Value = serde_json::from_slice(
        &message_to_openai(message.to_string().as_bytes(), 1_700_000_000).unwrap(),
    )
    .unwrap();
    assert_eq!(
        completion,
        json!({
            "id": "msg_01", "object": "chat.completion", "created": 1_700_000_000, "model": "claude-3-5-haiku-20241022",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Checking.",
                "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]
            }}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 10, "total_tokens": 130, "prompt_tokens_details": {"cached_tokens": 100}}
        })
    );
    let error = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let openai: Value = serde_json::from_slice(&error_to_openai(error).unwrap()).unwrap();
    assert_eq!(
        openai,
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}})
    );
    assert!(
        error_to_openai(b"<html>bad gateway</html>").is_none(),
        "not the provider's: as it came"
    );
}

fn transcript(events: &[(&str, Value)], usage_in_stream: bool) -> Vec<Value> {
    let text = events.iter().fold(String::new(), |mut text, (name, data)| {
        writeln!(text, "event: {name}\ndata: {data}\n").unwrap();
        text
    });
    let mut translation = StreamToOpenAi::new(5, usage_in_stream);
    let mut out = BytesMut::new();
    for event in SseSplitter::default().push(text.as_bytes()) {
        translation.event(&event, &mut out);
    }
    let out = String::from_utf8(out.to_vec()).unwrap();
    assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
    out.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn a_text_stream_comes_back_as_chunks() {
    let chunks = transcript(
        &[
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-x", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ],
        true,
    );
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0).map(|c| &c["delta"]))
        .collect();
    assert_eq!(
        deltas,
        [
            &json!({"role": "assistant", "content": ""}),
            &json!({"content": "Hello"}),
            &json!({"content": "!"}),
            &json!({})
        ]
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    for chunk in &chunks {
        assert_eq!(
            (
                chunk["id"].as_str(),
                chunk["model"].as_str(),
                chunk["created"].as_u64()
            ),
            (Some("msg_1"), Some("claude-x"), Some(5))
        );
        assert_eq!(chunk["object"], "chat.completion.chunk");
    }
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(chunks[4]["usage"]["prompt_tokens"], 25);
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 15);
}

#[test]
fn a_tool_call_stream_comes_back_as_tool_call_deltas() {
    let chunks = transcript(
        &[
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_2", "model": "claude-x", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ],
        false,
    );
    assert_eq!(
        chunks[1]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 0, "id": "toolu_9", "type": "function", "function": {"name": "weather", "arguments": ""}}])
    );
    let arguments: String = chunks[2..4]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(arguments, r#"{"city": "Paris"}"#);
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks.len(), 5, "no usage chunk unless asked");
}

proptest! {
    #[test]
    fn no_input_makes_translation_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), text in ".{0,64}") {
        let _ = to_anthropic(&bytes, "d", &Translation::default());
        let request = format!(r#"{{"model":"m","messages":[{{"role":"user","content":{text:?}}},{{"role":"tool","content":[1]}}],"stop":[{text:?}]}}"#);
        let _ = to_anthropic(request.as_bytes(), "d", &Translation::default());
        let _ = message_to_openai(&bytes, 0);
        let _ = error_to_openai(&bytes);
        let mut stream = StreamToOpenAi::new(0, true);
        let mut out = BytesMut::new();
        for event in SseSplitter::default().push(&bytes) {
            stream.event(&event, &mut out);
        }
    }
}

/// An endpoint that says so drops what it cannot honour instead of refusing it, and gives
/// requests without `max_tokens` its own default.
#[test]
fn an_endpoint_may_drop_what_it_cannot_honour_and_set_its_max_tokens() {
    let options = Translation {
        default_max_tokens: 1024,
        drop_unsupported: vec!["logprobs".into(), "seed".into(), "n".into()],
    };
    let request = json!({"model": "m", "logprobs": true, "seed": 3, "n": 2, "messages": [{"role": "user", "content": "hi"}]});
    let (body, _) = to_anthropic(request.to_string().as_bytes(), "claude-main", &options).unwrap();
    let anthropic: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(anthropic["max_tokens"], 1024);
    for dropped in ["logprobs", "seed", "n"] {
        assert!(anthropic.get(dropped).is_none(), "{dropped}");
    }
    // Not listed: still refused.
    let request =
        json!({"model": "m", "top_logprobs": 2, "messages": [{"role": "user", "content": "hi"}]});
    let err = to_anthropic(request.to_string().as_bytes(), "claude-main", &options).unwrap_err();
    assert!(
        err.message().contains("\"top_logprobs\""),
        "{}",
        err.message()
    );
}

#[test]
fn reasoning_effort_is_a_thinking_budget_under_the_client_s_limit() {
    let ask = |extra: Value| {
        let mut request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        to_anthropic(
            request.to_string().as_bytes(),
            "claude-main",
            &Translation::default(),
        )
        .map(|(body, _)| serde_json::from_slice::<Value>(&body).unwrap())
    };
    // No limit given: the endpoint's default beside the budget.
    let high = ask(json!({"reasoning_effort": "high"})).unwrap();
    assert_eq!(
        (high["thinking"].clone(), high["max_tokens"].clone()),
        (
            json!({"type": "enabled", "budget_tokens": 24576}),
            json!(4096 + 24576)
        )
    );
    // The client's limit counts the reasoning: the budget fits under it.
    let capped = ask(json!({"reasoning_effort": "medium", "max_completion_tokens": 3000})).unwrap();
    assert_eq!(
        (
            capped["thinking"]["budget_tokens"].clone(),
            capped["max_tokens"].clone()
        ),
        (json!(2999), json!(3000))
    );
    let none = ask(json!({"reasoning_effort": "none"})).unwrap();
    assert_eq!(none.get("thinking"), None);
    assert_eq!(none["max_tokens"], 4096);
    let err = ask(json!({"reasoning_effort": "low", "max_tokens": 500})).unwrap_err();
    assert!(
        err.message()
            .contains("\"reasoning_effort\" needs max_completion_tokens above 1024"),
        "{}",
        err.message()
    );
    let err = ask(json!({"reasoning_effort": "extreme"})).unwrap_err();
    assert!(
        err.message().contains("\"reasoning_effort\""),
        "{}",
        err.message()
    );
}

#[test]
fn claude_s_thinking_comes_back_as_reasoning_and_goes_back_signed() {
    let thinking =
        json!({"type": "thinking", "thinking": "Paris is in France.", "signature": "sig-1"});
    let message = json!({
        "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            thinking,
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 20, "output_tokens": 10}
    });
    let completion: Value =
        serde_json::from_slice(&message_to_openai(message.to_string().as_bytes(), 1).unwrap())
            .unwrap();
    let reply = &completion["choices"][0]["message"];
    assert_eq!(reply["reasoning_content"], "Paris is in France.");
    assert_eq!(reply["thinking_blocks"], json!([thinking]));
    // The SDKs' tool loop sends the message back as it came: Claude gets its block back first.
    let follow_up = json!({"model": "m", "reasoning_effort": "low", "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        reply,
        {"role": "tool", "tool_call_id": "toolu_2", "content": "18 C"}
    ]});
    let (anthropic, _) = anthropic_of(&follow_up);
    let blocks = &anthropic["messages"][1]["content"];
    assert_eq!(blocks[0], thinking);
    assert_eq!(blocks[1]["type"], "tool_use");
}

#[test]
fn a_thinking_stream_comes_back_as_reasoning_deltas() {
    let chunks = transcript(
        &[
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_3", "type": "message", "role": "assistant", "content": [], "model": "claude-x", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me see."}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Yes."}}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ],
        false,
    );
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(
        deltas,
        [
            &json!({"role": "assistant", "content": ""}),
            &json!({"reasoning_content": "Let me see."}),
            &json!({"content": "Yes."}),
            &json!({})
        ]
    );
}
