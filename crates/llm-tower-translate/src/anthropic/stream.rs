//! An Anthropic messages stream as an OpenAI `chat.completion.chunk` stream, event by event.

use bytes::BytesMut;
use llm_tower_core::{SseEvent, write_sse_event};
use serde_json::{Value, json};

use crate::events::write_json_event;

use super::response::{error_to_openai, finish_reason, usage};

/// The state of one stream's translation.
#[derive(Debug)]
pub(crate) struct StreamToOpenAi {
    id: Value,
    model: Value,
    created: u64,
    /// Anthropic's input usage from `message_start`, for the usage chunk.
    start_usage: Value,
    /// The client asked for usage in the stream (`stream_options.include_usage`).
    usage_in_stream: bool,
    /// The index of each tool call by its content block's index.
    tool_calls: Vec<(u64, usize)>,
}

impl StreamToOpenAi {
    pub(crate) fn new(created: u64, usage_in_stream: bool) -> Self {
        Self {
            id: Value::Null,
            model: Value::Null,
            created,
            start_usage: Value::Null,
            usage_in_stream,
            tool_calls: Vec::new(),
        }
    }

    /// The client's bytes for one Anthropic event (none for `ping` and block boundaries).
    pub(crate) fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        match data.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let message = data.get("message").unwrap_or(&Value::Null);
                self.id = message.get("id").cloned().unwrap_or(Value::Null);
                self.model = message.get("model").cloned().unwrap_or(Value::Null);
                self.start_usage = message.get("usage").cloned().unwrap_or(Value::Null);
                self.chunk(
                    out,
                    &json!({"role": "assistant", "content": ""}),
                    &Value::Null,
                );
            }
            Some("content_block_start") => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let index = self.tool_calls.len();
                    let block_index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                    self.tool_calls.push((block_index, index));
                    let call = json!([{
                        "index": index,
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": ""},
                    }]);
                    self.chunk(out, &json!({ "tool_calls": call }), &Value::Null);
                }
            }
            Some("content_block_delta") => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").cloned().unwrap_or(Value::Null);
                        self.chunk(out, &json!({ "content": text }), &Value::Null);
                    }
                    Some("thinking_delta") => {
                        let text = delta.get("thinking").cloned().unwrap_or(Value::Null);
                        self.chunk(out, &json!({ "reasoning_content": text }), &Value::Null);
                    }
                    Some("input_json_delta") => {
                        let block = data.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let Some(&(_, index)) = self.tool_calls.iter().find(|(b, _)| *b == block)
                        else {
                            return;
                        };
                        let call = json!([{
                            "index": index,
                            "function": {"arguments": delta.get("partial_json")},
                        }]);
                        self.chunk(out, &json!({ "tool_calls": call }), &Value::Null);
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                let reason = data.pointer("/delta/stop_reason").and_then(Value::as_str);
                self.chunk(out, &json!({}), &finish_reason(reason));
                if self.usage_in_stream {
                    let mut total = self.start_usage.clone();
                    if let (Some(total), Some(Value::Object(more))) =
                        (total.as_object_mut(), data.get("usage"))
                    {
                        total.extend(more.clone());
                    }
                    let chunk = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": usage(&total),
                    });
                    write_json_event(out, None, &chunk);
                }
            }
            Some("message_stop") => out.extend_from_slice(b"data: [DONE]\n\n"),
            Some("error") => {
                if let Some(error) = error_to_openai(event.data.as_bytes()) {
                    write_sse_event(out, None, &error);
                }
            }
            _ => {}
        }
    }

    fn chunk(&self, out: &mut BytesMut, delta: &Value, finish_reason: &Value) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}],
        });
        write_json_event(out, None, &chunk);
    }
}
