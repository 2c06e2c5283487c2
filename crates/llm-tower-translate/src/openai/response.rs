//! An OpenAI chat completion answer (a completion, or an error) as an Anthropic one.

use http::StatusCode;
use llm_tower_core::anthropic_error_type;
use serde_json::{Value, json};

use crate::reasoning::reasoning_text;

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub(crate) fn stop_reason(finish_reason: Option<&str>) -> Value {
    match finish_reason {
        Some("stop") => "end_turn".into(),
        Some("length") => "max_tokens".into(),
        Some("tool_calls" | "function_call") => "tool_use".into(),
        Some("content_filter") => "refusal".into(),
        Some(other) => other.into(),
        None => Value::Null,
    }
}

/// Anthropic's `usage` for OpenAI's.
pub(crate) fn usage(usage: &Value) -> Value {
    let tokens = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let cached = tokens("/prompt_tokens_details/cached_tokens");
    json!({
        "input_tokens": tokens("/prompt_tokens").saturating_sub(cached),
        "output_tokens": tokens("/completion_tokens"),
        "cache_read_input_tokens": cached,
    })
}

/// The Anthropic `message` for an OpenAI `chat.completion`.
pub(crate) fn completion_to_anthropic(completion: &[u8]) -> Option<Vec<u8>> {
    let completion: Value = serde_json::from_slice(completion).ok()?;
    let choice = completion.get("choices")?.get(0)?;
    let message = choice.get("message")?;
    let mut content = Vec::new();
    if let Some(reasoning) = reasoning_text(message) {
        // Unsigned: a thinking block Claude itself did not write.
        content.push(json!({"type": "thinking", "thinking": reasoning, "signature": ""}));
    }
    if let Some(text) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id"),
            "name": call.pointer("/function/name"),
            "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})),
        }));
    }
    let message = json!({
        "id": completion.get("id"),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage(completion.get("usage").unwrap_or(&Value::Null)),
    });
    serde_json::to_vec(&message).ok()
}

/// Anthropic's error body for an OpenAI error body of `status`, the provider's message kept
/// (`None`: not OpenAI's error shape; it goes on as it came).
pub(crate) fn error_to_anthropic(body: &[u8], status: StatusCode) -> Option<Vec<u8>> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let error = body.get("error")?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .unwrap_or("the upstream failed");
    let out = json!({"type": "error", "error": {"type": anthropic_error_type(status), "message": message}});
    serde_json::to_vec(&out).ok()
}
