//! Response bodies serialised once per mock and cloned (reference-counted) per request.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

/// The model name every reply carries.
pub(crate) const MODEL: &str = "mock-model";
/// The pieces of the reply text; SSE chunk `i` carries `PIECES[i % PIECES.len()]`.
const PIECES: [&str; 3] = ["Hello", " from", " llm-tower-mock."];
const DEFAULT_SSE_CHUNKS: usize = 3;

#[derive(Debug)]
pub(crate) struct Assets {
    /// `chat.completion` JSON.
    pub(crate) completion: Bytes,
    /// The whole default SSE reply (3 chunks and `[DONE]`).
    pub(crate) sse_default: Bytes,
    /// The same for a request that asked for usage (`stream_options.include_usage`): every
    /// chunk with `"usage": null`, and a usage chunk before `[DONE]`, as OpenAI streams.
    pub(crate) sse_default_usage: Bytes,
    /// `data: [DONE]\n\n`.
    pub(crate) done: Bytes,
    /// `GET …/models` JSON.
    pub(crate) models: Bytes,
    /// 404 error JSON for unknown routes.
    pub(crate) not_found: Bytes,
    /// First SSE chunk (carries the assistant role), not last / last; without and with
    /// `"usage": null`.
    first: [[Bytes; 2]; 2],
    /// Later SSE chunks per piece, not last / last; without and with `"usage": null`.
    later: [[[Bytes; 2]; PIECES.len()]; 2],
    created: u64,
}

impl Assets {
    pub(crate) fn new() -> Assets {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let content: String = PIECES.concat();
        let completion = json!({
            "id": "chatcmpl-llm-tower-mock",
            "object": "chat.completion",
            "created": created,
            "model": MODEL,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": content },
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": { "prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15 },
        });
        let models = json!({
            "object": "list",
            "data": [{
                "id": MODEL,
                "object": "model",
                "created": created,
                "owned_by": "llm-tower-mock",
            }],
        });
        let chunk = |piece: &str, role: bool, last: bool, usage: bool| -> Bytes {
            let delta = if role {
                json!({ "role": "assistant", "content": piece })
            } else {
                json!({ "content": piece })
            };
            let mut value = json!({
                "id": "chatcmpl-llm-tower-mock",
                "object": "chat.completion.chunk",
                "created": created,
                "model": MODEL,
                "choices": [{
                    "index": 0,
                    "delta": delta,
                    "logprobs": null,
                    "finish_reason": if last { Value::from("stop") } else { Value::Null },
                }],
            });
            if usage {
                value["usage"] = Value::Null;
            }
            sse_event(&to_vec(&value))
        };
        let first = [false, true]
            .map(|usage| [false, true].map(|last| chunk(PIECES[0], true, last, usage)));
        let later = [false, true]
            .map(|usage| PIECES.map(|p| [false, true].map(|last| chunk(p, false, last, usage))));
        let mut assets = Assets {
            completion: Bytes::from(to_vec(&completion)),
            sse_default: Bytes::new(),
            sse_default_usage: Bytes::new(),
            done: Bytes::from_static(b"data: [DONE]\n\n"),
            models: Bytes::from(to_vec(&models)),
            not_found: Bytes::new(),
            first,
            later,
            created,
        };
        for usage in [false, true] {
            let mut sse = BytesMut::new();
            for i in 0..DEFAULT_SSE_CHUNKS {
                sse.extend_from_slice(&assets.chunk(i, DEFAULT_SSE_CHUNKS, usage));
            }
            if usage {
                sse.extend_from_slice(&assets.usage_chunk(DEFAULT_SSE_CHUNKS));
            }
            sse.extend_from_slice(&assets.done);
            if usage {
                assets.sse_default_usage = sse.freeze();
            } else {
                assets.sse_default = sse.freeze();
            }
        }
        assets.not_found = Bytes::from(not_found_body());
        assets
    }

    /// SSE event for content chunk `index` of a stream of `total` chunks (`usage`: the
    /// request asked for usage).
    pub(crate) fn chunk(&self, index: usize, total: usize, usage: bool) -> Bytes {
        let last = usize::from(index + 1 == total);
        let usage = usize::from(usage);
        if index == 0 {
            self.first[usage][last].clone()
        } else {
            self.later[usage][index % PIECES.len()][last].clone()
        }
    }

    /// The usage chunk of a stream of `total` content chunks: 9 prompt tokens, as the JSON
    /// reply says, and 2 completion tokens a chunk (the default reply's 3 chunks: 6).
    pub(crate) fn usage_chunk(&self, total: usize) -> Bytes {
        let completion = 2 * total;
        let value = json!({
            "id": "chatcmpl-llm-tower-mock",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": MODEL,
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": completion, "total_tokens": 9 + completion},
        });
        sse_event(&to_vec(&value))
    }
}

fn to_vec(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn sse_event(json: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(json.len() + 8);
    buf.extend_from_slice(b"data: ");
    buf.extend_from_slice(json);
    buf.extend_from_slice(b"\n\n");
    buf.freeze()
}

fn not_found_body() -> Vec<u8> {
    let value = json!({
        "error": {
            "message": "Unknown request URL (mock): only POST …/chat/completions and GET …/models are served.",
            "type": "invalid_request_error",
            "param": null,
            "code": "unknown_url",
        }
    });
    to_vec(&value)
}
