//! Anthropic messages streams: what a client was sent of one ([`Delivered`]), the request
//! that continues it ([`prefill`]), and the continuation's events as the client's stream
//! goes on with them ([`Splice`]).
//!
//! The stream's events, as Anthropic documents them: `message_start` (the message's id,
//! model and input usage), then per content block `content_block_start`,
//! `content_block_delta`s and `content_block_stop`, then `message_delta` (the stop reason and
//! output usage) and `message_stop`; `ping`s anywhere.

use bytes::Bytes;
use llm_tower_core::{SseEvent, write_sse_event};
use serde_json::{Map, Value};

/// What a client has been sent of a messages stream.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    /// The text of the first content block so far.
    pub(crate) text: String,
    /// The output tokens `message_start` reported: the continuation's are added to them.
    output_tokens: u64,
    /// A `message_start` went out.
    started: bool,
    /// The message ended (a stop reason, `message_stop`), or its text block did.
    finished: bool,
    /// Something a prefill cannot carry on: a block that is not text, a second block.
    not_text: bool,
}

impl Delivered {
    /// One event the client was sent.
    pub(crate) fn saw(&mut self, event: &SseEvent) {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match data.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.started = true;
                self.output_tokens = data
                    .pointer("/message/usage/output_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
            }
            Some("content_block_start") => {
                let text = data.pointer("/content_block/type").and_then(Value::as_str);
                if index != 0 || text != Some("text") {
                    self.not_text = true;
                }
            }
            Some("content_block_delta") => {
                match data.pointer("/delta/text").and_then(Value::as_str) {
                    Some(text) if index == 0 => self.text.push_str(text),
                    _ => self.not_text = true,
                }
            }
            Some("content_block_stop" | "message_stop") => self.finished = true,
            Some("message_delta")
                if data
                    .pointer("/delta/stop_reason")
                    .is_some_and(|r| !r.is_null()) =>
            {
                self.finished = true;
            }
            _ => {}
        }
    }

    /// Whether a prefill can carry the answer on: the message began, some text of its one
    /// text block went out, nothing else did, and it is not over.
    pub(crate) fn continuable(&self) -> bool {
        self.started && !self.text.is_empty() && !self.finished && !self.not_text
    }

    /// The splice of a continuation into this stream.
    pub(crate) fn splice(&self) -> Splice {
        Splice {
            output_tokens: self.output_tokens,
            // The prefill leaves trailing whitespace out (Anthropic refuses it), so the
            // continuation says it again: the client already has it.
            trim_start: self.text.ends_with(char::is_whitespace),
        }
    }
}

/// The request that continues `delivered` on an Anthropic deployment: the client's request
/// with the text so far as a last `assistant` message (Anthropic's prefill: the model goes on
/// from it), calling the model `model`. Trailing whitespace is left out of the prefill, which
/// Anthropic refuses. `None` when the request is not a JSON object with `messages`.
pub(crate) fn prefill(request: &[u8], delivered: &str, model: Option<&str>) -> Option<Bytes> {
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(request) else {
        return None;
    };
    let Some(Value::Array(messages)) = body.get_mut("messages") else {
        return None;
    };
    let mut last = Map::new();
    last.insert("role".into(), "assistant".into());
    last.insert("content".into(), delivered.trim_end().into());
    messages.push(Value::Object(last));
    if let Some(model) = model {
        body.insert("model".into(), model.into());
    }
    serde_json::to_vec(&body).ok().map(Bytes::from)
}

/// Rewrites a continuation's events into the client's stream: its `message_start` and the
/// start of its first text block are left out (the client has them), its output usage counts
/// what the first answer reported too.
#[derive(Debug)]
pub(crate) struct Splice {
    output_tokens: u64,
    trim_start: bool,
}

impl Splice {
    /// The bytes the client gets for `event` (none for one it already had).
    pub(crate) fn rewrite(&mut self, event: &SseEvent) -> Option<Bytes> {
        let Ok(mut data) = serde_json::from_str::<Value>(&event.data) else {
            return Some(event.raw.clone());
        };
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match data.get("type").and_then(Value::as_str) {
            Some("message_start") => return None,
            Some("content_block_start") if index == 0 => return None,
            Some("content_block_delta") if index == 0 && self.trim_start => {
                let Some(Value::String(text)) = data.pointer_mut("/delta/text") else {
                    return Some(event.raw.clone());
                };
                let trimmed = text.trim_start().to_owned();
                if trimmed.is_empty() {
                    return None;
                }
                *text = trimmed;
                self.trim_start = false;
            }
            Some("message_delta") => {
                if let Some(Value::Number(tokens)) = data.pointer_mut("/usage/output_tokens") {
                    let sum = tokens.as_u64().unwrap_or(0) + self.output_tokens;
                    *tokens = sum.into();
                }
            }
            _ => return Some(event.raw.clone()),
        }
        let mut out = Vec::with_capacity(event.raw.len());
        write_sse_event(
            &mut out,
            event.event.as_deref(),
            &serde_json::to_vec(&data).ok()?,
        );
        Some(out.into())
    }
}

#[cfg(test)]
mod tests {
    use llm_tower_core::SseSplitter;

    use super::*;

    fn events(text: &str) -> Vec<SseEvent> {
        SseSplitter::default().push(text.as_bytes())
    }

    const FIRST: &str = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-20241022","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":3}}}"#,
        "\n\nevent: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"The answer "}}"#,
        "\n\n",
    );

    #[test]
    fn what_was_delivered_the_prefill_and_the_splice() {
        let mut delivered = Delivered::default();
        for event in events(FIRST) {
            delivered.saw(&event);
        }
        assert_eq!(delivered.text, "The answer ");
        assert!(delivered.continuable());

        let request = br#"{"model":"claude","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Q?"}]}"#;
        let body: Value =
            serde_json::from_slice(&prefill(request, &delivered.text, Some("claude-b")).unwrap())
                .unwrap();
        assert_eq!(
            body["messages"][1],
            serde_json::json!({"role": "assistant", "content": "The answer"}),
            "no trailing whitespace"
        );
        assert_eq!(body["model"], "claude-b");

        let mut splice = delivered.splice();
        let continued = events(concat!(
            "event: message_start\n",
            r#"data: {"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","content":[],"model":"claude-b","usage":{"input_tokens":15,"output_tokens":1}}}"#,
            "\n\nevent: content_block_start\n",
            r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            "\n\nevent: content_block_delta\n",
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" is 42."}}"#,
            "\n\nevent: content_block_stop\n",
            r#"data: {"type":"content_block_stop","index":0}"#,
            "\n\nevent: message_delta\n",
            r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":4}}"#,
            "\n\nevent: message_stop\n",
            r#"data: {"type":"message_stop"}"#,
            "\n\n",
        ));
        let out: Vec<SseEvent> = continued
            .iter()
            .filter_map(|e| splice.rewrite(e))
            .flat_map(|bytes| SseSplitter::default().push(&bytes))
            .collect();
        let names: Vec<&str> = out.iter().filter_map(|e| e.event.as_deref()).collect();
        assert_eq!(
            names,
            [
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let delta: Value = serde_json::from_str(&out[0].data).unwrap();
        assert_eq!(
            delta["delta"]["text"], "is 42.",
            "the space the client had is not said twice"
        );
        let usage: Value = serde_json::from_str(&out[2].data).unwrap();
        assert_eq!(usage["usage"]["output_tokens"], 7);

        let mut tool = Delivered::default();
        for event in events(concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n",
            "event: content_block_start\n",
            r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
            "\n\n"
        )) {
            tool.saw(&event);
        }
        assert!(!tool.continuable());
    }
}
