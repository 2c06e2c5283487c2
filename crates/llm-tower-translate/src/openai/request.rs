//! An Anthropic messages request as an OpenAI chat completion request.

use llm_tower_core::{Error, Translation};

use crate::fields::{check_unsupported, refuser, request_object};
use crate::reasoning::effort_of;
use serde_json::{Map, Value, json};

/// Anthropic fields OpenAI-compatible servers have nothing for: refused by name.
const UNSUPPORTED: [&str; 1] = ["top_k"];

/// The OpenAI request for `request`, an Anthropic messages request, on deployment
/// `deployment` (named in errors).
pub(crate) fn to_openai(
    request: &[u8],
    deployment: &str,
    options: &Translation,
) -> Result<Vec<u8>, Error> {
    let refuse = refuser(deployment, "an OpenAI-compatible endpoint");
    let mut anthropic = request_object(request)?;
    check_unsupported(&mut anthropic, &UNSUPPORTED, false, options, refuse)?;
    let mut out = Map::new();
    if let Some(model) = anthropic.remove("model") {
        out.insert("model".into(), model);
    }
    let mut messages = Vec::new();
    match anthropic.remove("system") {
        None | Some(Value::Null) => {}
        Some(system) => {
            let text = text_of(&system).ok_or_else(|| refuse("system", "cannot be translated"))?;
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let Some(Value::Array(turns)) = anthropic.remove("messages") else {
        return Err(refuse("messages", "must be an array"));
    };
    for (i, turn) in turns.iter().enumerate() {
        turn_to_openai(turn, &mut messages)
            .ok_or_else(|| refuse(&format!("messages[{i}]"), "cannot be translated"))?;
    }
    out.insert("messages".into(), messages.into());
    for field in ["max_tokens", "temperature", "top_p", "stream"] {
        if let Some(value) = anthropic.remove(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), value);
        }
    }
    if out.get("stream") == Some(&Value::Bool(true)) {
        // Usage comes last in an OpenAI stream, and only when asked for: the Anthropic
        // stream's `message_delta` reports it.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    match anthropic.remove("thinking") {
        None | Some(Value::Null) => {}
        Some(thinking) => match thinking.get("type").and_then(Value::as_str) {
            Some("enabled") => {
                let budget = thinking.get("budget_tokens").and_then(Value::as_u64);
                let budget = budget.ok_or_else(|| refuse("thinking", "needs budget_tokens"))?;
                out.insert("reasoning_effort".into(), effort_of(budget).into());
            }
            Some("disabled") => {}
            _ => return Err(refuse("thinking", "cannot be translated")),
        },
    }
    if let Some(stops) = anthropic.remove("stop_sequences").filter(|v| !v.is_null()) {
        out.insert("stop".into(), stops);
    }
    if let Some(user) = anthropic
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .cloned()
    {
        out.insert("user".into(), user);
    }
    if let Some(Value::Array(tools)) = anthropic.remove("tools") {
        let tools: Option<Vec<Value>> = tools.iter().map(tool_to_openai).collect();
        out.insert(
            "tools".into(),
            tools
                .ok_or_else(|| refuse("tools", "cannot be translated"))?
                .into(),
        );
    }
    if let Some(choice) = anthropic.remove("tool_choice") {
        let choice = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice.get("name")}}),
            _ => return Err(refuse("tool_choice", "cannot be translated")),
        };
        out.insert("tool_choice".into(), choice);
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|_| refuse("body", "cannot be written"))
}

/// One Anthropic turn as OpenAI messages: tool results become `tool` messages (before the
/// rest of the turn), tool uses the assistant's `tool_calls`.
fn turn_to_openai(turn: &Value, messages: &mut Vec<Value>) -> Option<()> {
    let role = turn.get("role")?.as_str()?;
    let blocks = match turn.get("content")? {
        Value::String(text) => {
            messages.push(json!({"role": role, "content": text}));
            return Some(());
        }
        Value::Array(blocks) => blocks,
        _ => return None,
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type")?.as_str()? {
            "text" => parts.push(json!({"type": "text", "text": block.get("text")?})),
            "image" => {
                let source = block.get("source")?;
                let url = match source.get("type")?.as_str()? {
                    "base64" => format!(
                        "data:{};base64,{}",
                        source.get("media_type")?.as_str()?,
                        source.get("data")?.as_str()?
                    ),
                    "url" => source.get("url")?.as_str()?.to_owned(),
                    _ => return None,
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            "tool_use" => calls.push(json!({
                "id": block.get("id")?,
                "type": "function",
                "function": {"name": block.get("name")?, "arguments": block.get("input")?.to_string()},
            })),
            // Signed for Claude alone: an OpenAI-compatible server has no place for them.
            "thinking" | "redacted_thinking" => {}
            "tool_result" => messages.push(json!({
                "role": "tool",
                "tool_call_id": block.get("tool_use_id")?,
                "content": block.get("content").map_or(Some(String::new()), text_of)?,
            })),
            _ => return None,
        }
    }
    if parts.is_empty() && calls.is_empty() {
        return Some(());
    }
    let mut message = Map::new();
    message.insert("role".into(), role.into());
    // A turn of text alone is a string, as most servers expect.
    let content = match parts.as_slice() {
        [] => Value::Null,
        [only] if only.get("type").and_then(Value::as_str) == Some("text") => only["text"].clone(),
        _ => parts.into(),
    };
    message.insert("content".into(), content);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), calls.into());
    }
    messages.push(Value::Object(message));
    Some(())
}

/// The text of a string, or of text blocks.
fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Option<Vec<_>>>()
            .map(|texts| texts.join("\n\n")),
        _ => None,
    }
}

fn tool_to_openai(tool: &Value) -> Option<Value> {
    let mut function = Map::new();
    function.insert("name".into(), tool.get("name")?.clone());
    if let Some(description) = tool.get("description") {
        function.insert("description".into(), description.clone());
    }
    if let Some(schema) = tool.get("input_schema") {
        function.insert("parameters".into(), schema.clone());
    }
    Some(json!({"type": "function", "function": function}))
}
