//! An OpenAI `chat.completion.chunk` stream as an Anthropic messages stream, chunk by chunk.

use bytes::BytesMut;
use http::StatusCode;
use llm_tower_core::SseEvent;
use serde_json::{Value, json};

use crate::events::write_json_event;
use crate::reasoning::reasoning_text;

use super::response::{error_to_anthropic, stop_reason, usage};

/// What an Anthropic content block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    /// The tool call of this index in OpenAI's deltas.
    Call(u64),
}

/// The state of one stream's translation.
#[derive(Debug, Default)]
pub(crate) struct StreamToAnthropic {
    started: bool,
    /// The index of the next content block.
    next_block: u64,
    /// The open content block: its index, and what it holds.
    open: Option<(u64, Block)>,
    /// OpenAI's `finish_reason`, said when the stream ends.
    finish_reason: Option<String>,
    /// OpenAI's usage (the chunk after the last choice's, with `include_usage`).
    usage: Value,
}

impl StreamToAnthropic {
    /// The client's events for one OpenAI event.
    pub(crate) fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
        if event.data.trim() == "[DONE]" {
            self.end(out);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        if chunk.get("error").is_some() {
            if let Some(error) = error_to_anthropic(event.data.as_bytes(), StatusCode::BAD_GATEWAY)
            {
                write_json_event(
                    out,
                    Some("error"),
                    &serde_json::from_slice(&error).unwrap_or(Value::Null),
                );
            }
            return;
        }
        if !self.started {
            self.started = true;
            let message = json!({
                "id": chunk.get("id"), "type": "message", "role": "assistant", "content": [],
                "model": chunk.get("model"), "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            });
            write_json_event(
                out,
                Some("message_start"),
                &json!({"type": "message_start", "message": message}),
            );
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = usage.clone();
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(reasoning) = reasoning_text(delta) {
            let block = json!({"type": "thinking", "thinking": "", "signature": ""});
            let index = self.open_block(out, Block::Thinking, &block);
            let delta = json!({"type": "thinking_delta", "thinking": reasoning});
            write_json_event(
                out,
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let index = self.open_block(out, Block::Text, &json!({"type": "text", "text": ""}));
            let delta = json!({"type": "text_delta", "text": text});
            write_json_event(
                out,
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let call_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let block = json!({
                "type": "tool_use", "id": call.get("id"),
                "name": call.pointer("/function/name"), "input": {},
            });
            let index = self.open_block(out, Block::Call(call_index), &block);
            if let Some(arguments) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                let delta = json!({"type": "input_json_delta", "partial_json": arguments});
                write_json_event(
                    out,
                    Some("content_block_delta"),
                    &json!({"type": "content_block_delta", "index": index, "delta": delta}),
                );
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
            self.close_block(out);
        }
    }

    /// The block for `kind`, opened (the one before closed) unless it is the open one; `block`
    /// is how it starts. Returns its index.
    fn open_block(&mut self, out: &mut BytesMut, kind: Block, block: &Value) -> u64 {
        if let Some((index, open)) = self.open
            && open == kind
        {
            return index;
        }
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, kind));
        write_json_event(
            out,
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            write_json_event(
                out,
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// `[DONE]`: the stop reason and usage, then the end of the message.
    fn end(&mut self, out: &mut BytesMut) {
        self.close_block(out);
        let delta = json!({"stop_reason": stop_reason(self.finish_reason.as_deref()), "stop_sequence": null});
        let output = usage(&self.usage)["output_tokens"].clone();
        write_json_event(
            out,
            Some("message_delta"),
            &json!({"type": "message_delta", "delta": delta, "usage": {"output_tokens": output}}),
        );
        write_json_event(out, Some("message_stop"), &json!({"type": "message_stop"}));
    }
}
