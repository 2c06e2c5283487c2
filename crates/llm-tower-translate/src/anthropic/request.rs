//! An OpenAI chat completion request as an Anthropic messages request.

use llm_tower_core::{Error, Translation};

use crate::fields::{cannot_honour, check_unsupported, refuser, request_object};
use crate::openai_messages::{push_turn, text_of};
use crate::reasoning::budget_of;
use serde_json::{Map, Value, json};

/// OpenAI fields Anthropic has nothing for: a request that sets one is refused, naming it,
/// rather than answered as if it had been honoured.
const UNSUPPORTED: [&str; 8] = [
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "audio",
    "prediction",
];

/// The Anthropic request for `request`, an OpenAI chat completion request, on deployment
/// `deployment` (named in errors; `options`: what its endpoint says of translated requests);
/// whether the client asked for usage in its stream.
pub(crate) fn to_anthropic(
    request: &[u8],
    deployment: &str,
    options: &Translation,
) -> Result<(Vec<u8>, bool), Error> {
    let refuse = refuser(deployment, "an Anthropic endpoint");
    let mut openai = request_object(request)?;
    check_unsupported(&mut openai, &UNSUPPORTED, true, options, refuse)?;
    if let Some(format) = openai.get("response_format")
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        cannot_honour(
            &mut openai,
            "response_format",
            "other than text is not supported",
            options,
            refuse,
        )?;
    }
    let usage_in_stream = openai
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let mut out = Map::new();
    if let Some(model) = openai.remove("model") {
        out.insert("model".into(), model);
    }
    let Some(Value::Array(messages)) = openai.remove("messages") else {
        return Err(refuse("messages", "must be an array"));
    };
    let (system, messages) =
        messages_to_anthropic(messages).map_err(|field| refuse(&field, "cannot be translated"))?;
    if !system.is_empty() {
        out.insert("system".into(), system.join("\n\n").into());
    }
    out.insert("messages".into(), messages.into());
    let max_tokens = openai
        .remove("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| openai.remove("max_tokens").filter(|v| !v.is_null()));
    let (thinking, max_tokens) = thinking_of(
        openai.remove("reasoning_effort").as_ref(),
        max_tokens,
        options.default_max_tokens,
        refuse,
    )?;
    out.insert("max_tokens".into(), max_tokens);
    if let Some(thinking) = thinking {
        out.insert("thinking".into(), thinking);
    }
    options_to_anthropic(&mut openai, &mut out)
        .map_err(|field| refuse(field, "cannot be translated"))?;
    let body =
        serde_json::to_vec(&Value::Object(out)).map_err(|_| refuse("body", "cannot be written"))?;
    Ok((body, usage_in_stream))
}

/// Anthropic's `thinking` for OpenAI's `reasoning_effort`, and the `max_tokens` to send. OpenAI's
/// limit counts the reasoning, as Anthropic's does, so the budget must fit under the client's
/// limit; with no limit given, the endpoint's default is what the answer gets beside it.
/// Anthropic wants a budget of at least 1 024 tokens.
fn thinking_of(
    effort: Option<&Value>,
    max_tokens: Option<Value>,
    default_max_tokens: u32,
    refuse: impl Fn(&str, &str) -> Error,
) -> Result<(Option<Value>, Value), Error> {
    let budget = match effort {
        None | Some(Value::Null) => 0,
        Some(Value::String(effort)) => {
            budget_of(effort).ok_or_else(|| refuse("reasoning_effort", "is not a level known"))?
        }
        Some(_) => return Err(refuse("reasoning_effort", "must be a string")),
    };
    let default = u64::from(default_max_tokens);
    if budget == 0 {
        return Ok((None, max_tokens.unwrap_or_else(|| default.into())));
    }
    let max = match max_tokens {
        None => default + budget,
        Some(max) => max
            .as_u64()
            .ok_or_else(|| refuse("max_tokens", "must be a whole number"))?,
    };
    let budget = budget.min(max.saturating_sub(1));
    if budget < 1024 {
        return Err(refuse(
            "reasoning_effort",
            "needs max_completion_tokens above 1024 (Anthropic's least thinking budget)",
        ));
    }
    let thinking = json!({"type": "enabled", "budget_tokens": budget});
    Ok((Some(thinking), max.into()))
}

/// The sampling, stop, user and tool options of `openai` into `out`; `Err` names a field that
/// cannot be translated.
fn options_to_anthropic(
    openai: &mut Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), &'static str> {
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stream", "stream"),
    ] {
        if let Some(value) = openai.remove(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), value);
        }
    }
    match openai.remove("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            out.insert("stop_sequences".into(), stops.into());
        }
        _ => {}
    }
    if let Some(Value::String(user)) = openai.remove("user") {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if let Some(Value::Array(tools)) = openai.remove("tools") {
        let tools: Option<Vec<Value>> = tools.iter().map(tool_to_anthropic).collect();
        out.insert("tools".into(), tools.ok_or("tools")?.into());
    }
    if let Some(choice) = openai.remove("tool_choice") {
        let choice = match &choice {
            Value::String(s) if s == "auto" => json!({"type": "auto"}),
            Value::String(s) if s == "required" => json!({"type": "any"}),
            Value::String(s) if s == "none" => json!({"type": "none"}),
            Value::Object(_) => match choice.pointer("/function/name") {
                Some(name) => json!({"type": "tool", "name": name}),
                None => return Err("tool_choice"),
            },
            _ => return Err("tool_choice"),
        };
        out.insert("tool_choice".into(), choice);
    }
    Ok(())
}

/// The system prompts, and the conversation as Anthropic messages; `Err` names a field that
/// cannot be translated.
fn messages_to_anthropic(messages: Vec<Value>) -> Result<(Vec<String>, Vec<Value>), String> {
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for (i, message) in messages.into_iter().enumerate() {
        let field = |what: &str| format!("messages[{i}].{what}");
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match role {
            "system" | "developer" => {
                system.push(text_of(message.get("content")).ok_or_else(|| field("content"))?);
            }
            "user" => {
                let content =
                    content_to_anthropic(message.get("content")).ok_or_else(|| field("content"))?;
                push_turn(&mut out, "user", "content", content);
            }
            "assistant" => {
                // The thinking blocks of an earlier answer (LiteLLM's `thinking_blocks`, which
                // the answer carried), signed: Anthropic wants them back before a tool use.
                let mut blocks: Vec<Value> = match message.get("thinking_blocks") {
                    Some(Value::Array(thinking)) => thinking.clone(),
                    _ => Vec::new(),
                };
                match message.get("content") {
                    None | Some(Value::Null) => {}
                    content => blocks
                        .extend(content_to_anthropic(content).ok_or_else(|| field("content"))?),
                }
                if let Some(Value::Array(calls)) = message.get("tool_calls") {
                    for call in calls {
                        let arguments = call
                            .pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .unwrap_or("{}");
                        let input: Value =
                            serde_json::from_str(arguments).map_err(|_| field("tool_calls"))?;
                        blocks.push(json!({
                            "type": "tool_use",
                            "id": call.get("id").cloned().unwrap_or(Value::Null),
                            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                            "input": input,
                        }));
                    }
                }
                push_turn(&mut out, "assistant", "content", blocks);
            }
            "tool" => {
                let result = json!({
                    "type": "tool_result",
                    "tool_use_id": message.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "content": text_of(message.get("content")).ok_or_else(|| field("content"))?,
                });
                push_turn(&mut out, "user", "content", vec![result]);
            }
            _ => return Err(field("role")),
        }
    }
    Ok((system, out))
}

/// An OpenAI content (a string, or text and image parts) as Anthropic content blocks.
fn content_to_anthropic(content: Option<&Value>) -> Option<Vec<Value>> {
    match content? {
        Value::String(text) => Some(vec![json!({"type": "text", "text": text})]),
        Value::Array(parts) => parts.iter().map(part_to_anthropic).collect(),
        _ => None,
    }
}

fn part_to_anthropic(part: &Value) -> Option<Value> {
    match part.get("type")?.as_str()? {
        "text" => Some(json!({"type": "text", "text": part.get("text")?})),
        "image_url" => {
            let url = part.pointer("/image_url/url")?.as_str()?;
            let source = match url.strip_prefix("data:") {
                Some(data) => {
                    let (media_type, data) = data.split_once(";base64,")?;
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                None => json!({"type": "url", "url": url}),
            };
            Some(json!({"type": "image", "source": source}))
        }
        _ => None,
    }
}

fn tool_to_anthropic(tool: &Value) -> Option<Value> {
    let function = tool.get("function")?;
    let mut out = Map::new();
    out.insert("name".into(), function.get("name")?.clone());
    if let Some(description) = function.get("description") {
        out.insert("description".into(), description.clone());
    }
    out.insert(
        "input_schema".into(),
        function
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    );
    Some(Value::Object(out))
}
