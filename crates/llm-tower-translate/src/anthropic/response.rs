//! An Anthropic messages answer (a message, or an error) as an OpenAI chat completion answer.

use serde_json::{Map, Value, json};

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
pub(crate) fn finish_reason(stop_reason: Option<&str>) -> Value {
    match stop_reason {
        Some("end_turn" | "stop_sequence") => "stop".into(),
        Some("max_tokens") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some("refusal") => "content_filter".into(),
        Some(other) => other.into(),
        None => Value::Null,
    }
}

/// OpenAI's `usage` for Anthropic's.
pub(crate) fn usage(usage: &Value) -> Value {
    let tokens = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
    let cached = tokens("cache_read_input_tokens");
    let prompt = tokens("input_tokens") + cached + tokens("cache_creation_input_tokens");
    let completion = tokens("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// The `chat.completion` for an Anthropic `message` (`created`: now, in seconds).
pub(crate) fn message_to_openai(message: &[u8], created: u64) -> Option<Vec<u8>> {
    let message: Value = serde_json::from_slice(message).ok()?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut calls = Vec::new();
    for block in message.get("content")?.as_array()? {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some(kind @ ("thinking" | "redacted_thinking")) => {
                if kind == "thinking" {
                    reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or_default());
                }
                thinking_blocks.push(block.clone());
            }
            Some("tool_use") => calls.push(json!({
                "id": block.get("id"),
                "type": "function",
                "function": {
                    "name": block.get("name"),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let mut reply = Map::new();
    reply.insert("role".into(), "assistant".into());
    reply.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            text.into()
        },
    );
    if !calls.is_empty() {
        reply.insert("tool_calls".into(), calls.into());
    }
    if !reasoning.is_empty() {
        reply.insert("reasoning_content".into(), reasoning.into());
    }
    if !thinking_blocks.is_empty() {
        // Signed, as they came: a client that sends this message back (as the SDKs' tool loops
        // do) gives Claude the blocks it wants before a tool result.
        reply.insert("thinking_blocks".into(), thinking_blocks.into());
    }
    let completion = json!({
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [{
            "index": 0,
            "message": reply,
            "finish_reason": finish_reason(message.get("stop_reason").and_then(Value::as_str)),
            "logprobs": null,
        }],
        "usage": usage(message.get("usage").unwrap_or(&Value::Null)),
    });
    serde_json::to_vec(&completion).ok()
}

/// OpenAI's error body for an Anthropic error body, the provider's message kept (`None`:
/// not Anthropic's error shape; it goes on as it came).
pub(crate) fn error_to_openai(body: &[u8]) -> Option<Vec<u8>> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let error = body.get("error")?;
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    let (openai_type, code) = match kind {
        "invalid_request_error" => ("invalid_request_error", Value::Null),
        "authentication_error" => ("invalid_request_error", "invalid_api_key".into()),
        "permission_error" => ("permission_error", Value::Null),
        "not_found_error" => ("invalid_request_error", "not_found".into()),
        "request_too_large" => ("invalid_request_error", "request_too_large".into()),
        "rate_limit_error" => ("rate_limit_error", "rate_limit_exceeded".into()),
        "overloaded_error" => ("server_error", "overloaded".into()),
        _ => ("server_error", Value::Null),
    };
    let out = json!({
        "error": {
            "message": error.get("message").and_then(Value::as_str).unwrap_or(kind),
            "type": openai_type,
            "param": null,
            "code": code,
        }
    });
    serde_json::to_vec(&out).ok()
}
