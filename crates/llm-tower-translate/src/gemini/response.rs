//! A Gemini `generateContent` answer (a response, or an error) as an OpenAI chat completion
//! answer, and its stream, chunk by chunk.

use bytes::BytesMut;
use llm_tower_core::SseEvent;

use crate::events::write_json_event;
use serde_json::{Value, json};

/// OpenAI's `finish_reason` for a Gemini `finishReason`; `called` when the answer called a tool.
fn finish_reason(reason: Option<&str>, called: bool) -> Value {
    match reason {
        None => Value::Null,
        Some("STOP") if called => "tool_calls".into(),
        Some("MAX_TOKENS") => "length".into(),
        Some("SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII") => {
            "content_filter".into()
        }
        // STOP, and reasons OpenAI has no word for.
        Some(_) => "stop".into(),
    }
}

/// OpenAI's `usage` for Gemini's `usageMetadata`. OpenAI's completion tokens count the
/// reasoning; Gemini counts its thoughts apart from the candidates.
fn usage(metadata: &Value) -> Value {
    let tokens = |field: &str| metadata.get(field).and_then(Value::as_u64).unwrap_or(0);
    let prompt = tokens("promptTokenCount");
    let completion = tokens("candidatesTokenCount") + tokens("thoughtsTokenCount");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": tokens("cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": tokens("thoughtsTokenCount")},
    })
}

/// What joins a tool call's id and the thought signature Gemini gave its call. Gemini 3
/// refuses a conversation whose function calls come back without their signatures, and OpenAI
/// has no field for one; the client echoes the id, so the id carries it.
const SIGNATURE_MARK: &str = "__thought__";

/// The thought signature a tool call's id carries (see [`SIGNATURE_MARK`]).
pub(crate) fn signature_of(id: &str) -> Option<&str> {
    id.split_once(SIGNATURE_MARK)
        .map(|(_, signature)| signature)
}

/// A candidate's parts, read: its answer's text, its thought summaries' text, its tool calls.
#[derive(Default)]
struct Parts {
    text: String,
    reasoning: String,
    calls: Vec<Value>,
}

/// The parts of a candidate (`first_call`: the index of its first call in the answer).
fn parts_of(candidate: &Value, first_call: usize) -> Parts {
    let mut parts = Parts::default();
    for part in candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(piece) = part.get("text").and_then(Value::as_str) {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                parts.reasoning.push_str(piece);
            } else {
                parts.text.push_str(piece);
            }
        }
        if let Some(call) = part.get("functionCall") {
            let index = first_call + parts.calls.len();
            let mut id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{index}"), str::to_owned);
            if let Some(signature) = part.get("thoughtSignature").and_then(Value::as_str) {
                id = format!("{id}{SIGNATURE_MARK}{signature}");
            }
            parts.calls.push(json!({
                "index": index,
                "id": id,
                "type": "function",
                "function": {
                    "name": call.get("name"),
                    "arguments": call.get("args").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            }));
        }
    }
    parts
}

/// The `chat.completion` for a Gemini response (`created`: now, in seconds).
pub(crate) fn response_to_openai(response: &[u8], created: u64) -> Option<Vec<u8>> {
    let response: Value = serde_json::from_slice(response).ok()?;
    let candidate = response.get("candidates")?.get(0)?;
    let Parts {
        text,
        reasoning,
        mut calls,
    } = parts_of(candidate, 0);
    for call in &mut calls {
        if let Some(call) = call.as_object_mut() {
            call.remove("index");
        }
    }
    let reason = candidate.get("finishReason").and_then(Value::as_str);
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() }});
    if !calls.is_empty() {
        message["tool_calls"] = calls.clone().into();
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = reasoning.into();
    }
    let completion = json!({
        "id": response.get("responseId").cloned().unwrap_or_else(|| "gemini".into()),
        "object": "chat.completion",
        "created": created,
        "model": response.get("modelVersion"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reason, !calls.is_empty()), "logprobs": null}],
        "usage": usage(response.get("usageMetadata").unwrap_or(&Value::Null)),
    });
    serde_json::to_vec(&completion).ok()
}

/// OpenAI's error body for a Gemini error body, the provider's message kept (`None`: not
/// Gemini's error shape).
pub(crate) fn error_to_openai(body: &[u8]) -> Option<Vec<u8>> {
    let body: Value = serde_json::from_slice(body).ok()?;
    // Gemini's streams and some proxies wrap the error in a list.
    let error = body.get("error").or_else(|| body.get(0)?.get("error"))?;
    let status = error
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN");
    let kind = match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "NOT_FOUND" => "invalid_request_error",
        "PERMISSION_DENIED" | "UNAUTHENTICATED" => "authentication_error",
        "RESOURCE_EXHAUSTED" => "rate_limit_error",
        _ => "server_error",
    };
    let out = json!({"error": {
        "message": error.get("message").and_then(Value::as_str).unwrap_or(status),
        "type": kind, "param": null, "code": status.to_lowercase(),
    }});
    serde_json::to_vec(&out).ok()
}

/// A Gemini `streamGenerateContent?alt=sse` stream as OpenAI chunks. Gemini sends no `[DONE]`:
/// the end of the body is the end of the answer.
#[derive(Debug)]
pub(crate) struct StreamToOpenAi {
    id: Value,
    model: Value,
    created: u64,
    usage_in_stream: bool,
    started: bool,
    calls: usize,
    usage: Value,
}

impl StreamToOpenAi {
    pub(crate) fn new(created: u64, usage_in_stream: bool) -> Self {
        Self {
            id: Value::Null,
            model: Value::Null,
            created,
            usage_in_stream,
            started: false,
            calls: 0,
            usage: Value::Null,
        }
    }

    /// The client's chunks for one Gemini event (a partial response).
    pub(crate) fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
        let Ok(response) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        if response.get("error").is_some() {
            if let Some(error) = error_to_openai(event.data.as_bytes()) {
                write_json_event(
                    out,
                    None,
                    &serde_json::from_slice(&error).unwrap_or(Value::Null),
                );
            }
            return;
        }
        if !self.started {
            self.started = true;
            self.id = response
                .get("responseId")
                .cloned()
                .unwrap_or_else(|| "gemini".into());
            self.model = response.get("modelVersion").cloned().unwrap_or(Value::Null);
            self.chunk(
                out,
                &json!({"role": "assistant", "content": ""}),
                &Value::Null,
            );
        }
        if let Some(metadata) = response.get("usageMetadata") {
            self.usage = metadata.clone();
        }
        let Some(candidate) = response.get("candidates").and_then(|c| c.get(0)) else {
            return;
        };
        let Parts {
            text,
            reasoning,
            calls,
        } = parts_of(candidate, self.calls);
        self.calls += calls.len();
        if !reasoning.is_empty() {
            self.chunk(
                out,
                &json!({ "reasoning_content": reasoning }),
                &Value::Null,
            );
        }
        if !text.is_empty() {
            self.chunk(out, &json!({ "content": text }), &Value::Null);
        }
        if !calls.is_empty() {
            self.chunk(out, &json!({ "tool_calls": calls }), &Value::Null);
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.chunk(
                out,
                &json!({}),
                &finish_reason(Some(reason), self.calls > 0),
            );
        }
    }

    /// The body ended: the usage (when asked for), then `[DONE]`.
    pub(crate) fn end(&mut self, out: &mut BytesMut) {
        if !self.started {
            return;
        }
        if self.usage_in_stream {
            let chunk = json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage(&self.usage),
            });
            write_json_event(out, None, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn chunk(&self, out: &mut BytesMut, delta: &Value, finish_reason: &Value) {
        let chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}],
        });
        write_json_event(out, None, &chunk);
    }
}
