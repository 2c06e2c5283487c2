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
    /// `data: [DONE]\n\n`.
    pub(crate) done: Bytes,
    /// `GET …/models` JSON.
    pub(crate) models: Bytes,
    /// 404 error JSON for unknown routes.
    pub(crate) not_found: Bytes,
    /// First SSE chunk (carries the assistant role), not last / last.
    first: [Bytes; 2],
    /// Later SSE chunks per piece, not last / last.
    later: [[Bytes; 2]; PIECES.len()],
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
        let chunk = |piece: &str, role: bool, last: bool| -> Bytes {
            let delta = if role {
                json!({ "role": "assistant", "content": piece })
            } else {
                json!({ "content": piece })
            };
            let value = json!({
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
            sse_event(&to_vec(&value))
        };
        let first = [chunk(PIECES[0], true, false), chunk(PIECES[0], true, true)];
        let later = PIECES.map(|p| [chunk(p, false, false), chunk(p, false, true)]);
        let mut assets = Assets {
            completion: Bytes::from(to_vec(&completion)),
            sse_default: Bytes::new(),
            done: Bytes::from_static(b"data: [DONE]\n\n"),
            models: Bytes::from(to_vec(&models)),
            not_found: Bytes::new(),
            first,
            later,
        };
        let mut sse = BytesMut::new();
        for i in 0..DEFAULT_SSE_CHUNKS {
            sse.extend_from_slice(&assets.chunk(i, DEFAULT_SSE_CHUNKS));
        }
        sse.extend_from_slice(&assets.done);
        assets.sse_default = sse.freeze();
        assets.not_found = Bytes::from(not_found_body());
        assets
    }

    /// SSE event for content chunk `index` of a stream of `total` chunks.
    pub(crate) fn chunk(&self, index: usize, total: usize) -> Bytes {
        let last = usize::from(index + 1 == total);
        if index == 0 {
            self.first[last].clone()
        } else {
            self.later[index % PIECES.len()][last].clone()
        }
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
