//! An OpenAI chat completion request as a Gemini `generateContent` request.

use std::collections::HashMap;

use llm_tower_core::{Error, Translation};

use crate::fields::{check_unsupported, refuser, request_object};
use crate::openai_messages::{push_turn, text_of};
use crate::reasoning::budget_of;

use super::response::signature_of;
use serde_json::{Map, Value, json};

/// OpenAI fields Gemini has nothing for here: a request that sets one is refused, naming it.
const UNSUPPORTED: [&str; 6] = [
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "audio",
    "prediction",
    "seed",
];

/// The Gemini request for `request` (an OpenAI chat completion request) on deployment
/// `deployment`: its body, the model it names (which goes in the URL), whether it asks for a
/// stream, and whether the client asked for usage in its stream.
pub(crate) fn to_gemini(
    request: &[u8],
    deployment: &str,
    options: &Translation,
) -> Result<(Vec<u8>, String, bool, bool), Error> {
    let refuse = refuser(deployment, "a Gemini endpoint");
    let mut openai = request_object(request)?;
    check_unsupported(&mut openai, &UNSUPPORTED, true, options, refuse)?;
    let Some(Value::String(model)) = openai.remove("model") else {
        return Err(refuse("model", "must name a model"));
    };
    // `stream` is not a body field for Gemini: its method says it.
    let stream = openai
        .remove("stream")
        .and_then(|s| s.as_bool())
        .unwrap_or(false);
    let usage_in_stream = openai
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(Value::Array(messages)) = openai.remove("messages") else {
        return Err(refuse("messages", "must be an array"));
    };
    let mut out = Map::new();
    let (system, contents) =
        contents_of(&messages).map_err(|field| refuse(&field, "cannot be translated"))?;
    if !system.is_empty() {
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system.join("\n\n")}]}),
        );
    }
    out.insert("contents".into(), contents.into());
    let mut config =
        generation_config(&mut openai).map_err(|field| refuse(field, "cannot be translated"))?;
    match openai.remove("reasoning_effort") {
        None | Some(Value::Null) => {}
        Some(effort) => {
            let thinking = effort
                .as_str()
                .and_then(|effort| thinking_config(effort, &model))
                .ok_or_else(|| refuse("reasoning_effort", "is not a level known"))?;
            config.insert("thinkingConfig".into(), thinking);
        }
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), config.into());
    }
    if let Some(Value::Array(tools)) = openai.remove("tools") {
        let declarations: Option<Vec<Value>> = tools.iter().map(declaration_of).collect();
        let declarations = declarations.ok_or_else(|| refuse("tools", "must be functions"))?;
        out.insert(
            "tools".into(),
            json!([{ "functionDeclarations": declarations }]),
        );
    }
    if let Some(choice) = openai.remove("tool_choice") {
        let calling = match &choice {
            Value::String(s) if s == "auto" => json!({"mode": "AUTO"}),
            Value::String(s) if s == "required" => json!({"mode": "ANY"}),
            Value::String(s) if s == "none" => json!({"mode": "NONE"}),
            Value::Object(_) => match choice.pointer("/function/name") {
                Some(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
                None => return Err(refuse("tool_choice", "cannot be translated")),
            },
            _ => return Err(refuse("tool_choice", "cannot be translated")),
        };
        out.insert(
            "toolConfig".into(),
            json!({ "functionCallingConfig": calling }),
        );
    }
    let body =
        serde_json::to_vec(&Value::Object(out)).map_err(|_| refuse("body", "cannot be written"))?;
    Ok((body, model, stream, usage_in_stream))
}

/// Gemini's `generationConfig` for the sampling, length, stop and format fields of `openai`;
/// `Err` names a field that cannot be translated.
fn generation_config(openai: &mut Map<String, Value>) -> Result<Map<String, Value>, &'static str> {
    let mut config = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("max_completion_tokens", "maxOutputTokens"),
        ("max_tokens", "maxOutputTokens"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(value) = openai.remove(from).filter(|v| !v.is_null()) {
            config.entry(to).or_insert(value);
        }
    }
    match openai.remove("stop") {
        Some(Value::String(stop)) => {
            config.insert("stopSequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            config.insert("stopSequences".into(), stops.into());
        }
        _ => {}
    }
    let format = openai.remove("response_format");
    match format
        .as_ref()
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), "application/json".into());
        }
        Some("json_schema") => {
            // Gemini takes a JSON Schema as is in `responseJsonSchema` (its `responseSchema` is
            // an OpenAPI subset that would need rewriting).
            let schema = format
                .as_ref()
                .and_then(|f| f.pointer("/json_schema/schema"))
                .ok_or("response_format")?;
            config.insert("responseMimeType".into(), "application/json".into());
            config.insert("responseJsonSchema".into(), schema.clone());
        }
        Some(_) => return Err("response_format"),
    }
    Ok(config)
}

/// Gemini's `thinkingConfig` for an OpenAI `reasoning_effort` on `model` (`None`: not a level).
/// Gemini 2.x takes a budget of tokens, later models a level (and refuse a budget); the thought
/// summaries are asked for, to come back as the answer's `reasoning_content`.
fn thinking_config(effort: &str, model: &str) -> Option<Value> {
    let budget = budget_of(effort)?;
    let model = model.strip_prefix("models/").unwrap_or(model);
    Some(if model.starts_with("gemini-2") {
        json!({"thinkingBudget": budget, "includeThoughts": budget > 0})
    } else {
        // Gemini 3 cannot stop thinking: `minimal` is its least.
        let level = if effort == "none" { "minimal" } else { effort };
        json!({"thinkingLevel": level, "includeThoughts": effort != "none"})
    })
}

/// The system instructions, and the conversation as Gemini contents; `Err` names a field
/// that cannot be translated.
fn contents_of(messages: &[Value]) -> Result<(Vec<String>, Vec<Value>), String> {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // A tool result names its call by id; Gemini names the function.
    let mut names: HashMap<&str, &Value> = HashMap::new();
    for (i, message) in messages.iter().enumerate() {
        let field = |what: &str| format!("messages[{i}].{what}");
        match message
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "system" | "developer" => {
                system.push(text_of(message.get("content")).ok_or_else(|| field("content"))?);
            }
            "user" => {
                let parts = parts_of(message.get("content")).ok_or_else(|| field("content"))?;
                push_turn(&mut contents, "user", "parts", parts);
            }
            "assistant" => {
                let mut parts = match message.get("content") {
                    None | Some(Value::Null) => Vec::new(),
                    content => parts_of(content).ok_or_else(|| field("content"))?,
                };
                for call in message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = call
                        .pointer("/function/name")
                        .ok_or_else(|| field("tool_calls"))?;
                    let id = call.get("id").and_then(Value::as_str);
                    if let Some(id) = id {
                        names.insert(id, name);
                    }
                    let arguments = call
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    let args: Value =
                        serde_json::from_str(arguments).map_err(|_| field("tool_calls"))?;
                    let mut part = json!({"functionCall": {"name": name, "args": args}});
                    if let Some(signature) = id.and_then(signature_of) {
                        part["thoughtSignature"] = signature.into();
                    }
                    parts.push(part);
                }
                push_turn(&mut contents, "model", "parts", parts);
            }
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = names.get(id).ok_or_else(|| field("tool_call_id"))?;
                let text = text_of(message.get("content")).ok_or_else(|| field("content"))?;
                let response = serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({ "content": text }));
                let part = json!({"functionResponse": {"name": name, "response": response}});
                push_turn(&mut contents, "user", "parts", vec![part]);
            }
            _ => return Err(field("role")),
        }
    }
    Ok((system, contents))
}

/// An OpenAI content as Gemini parts: text, and images given inline (`data:` URLs). An image
/// by URL is not one Gemini can fetch: refused.
fn parts_of(content: Option<&Value>) -> Option<Vec<Value>> {
    match content? {
        Value::String(text) => Some(vec![json!({"text": text})]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type")?.as_str()? {
                "text" => Some(json!({"text": part.get("text")?})),
                "image_url" => {
                    let url = part.pointer("/image_url/url")?.as_str()?;
                    let (mime_type, data) = url.strip_prefix("data:")?.split_once(";base64,")?;
                    Some(json!({"inlineData": {"mimeType": mime_type, "data": data}}))
                }
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn declaration_of(tool: &Value) -> Option<Value> {
    let function = tool.get("function")?;
    let mut out = Map::new();
    out.insert("name".into(), function.get("name")?.clone());
    for field in ["description", "parameters"] {
        if let Some(value) = function.get(field) {
            out.insert(field.into(), value.clone());
        }
    }
    Some(Value::Object(out))
}
