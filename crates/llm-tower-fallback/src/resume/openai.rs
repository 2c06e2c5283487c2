//! OpenAI chat completion streams: what a client was sent of one ([`Delivered`]), the request
//! that continues it ([`prefill`]), and the continuation's events as the client's stream
//! goes on with them ([`Splice`]).

use std::borrow::Cow;
use std::marker::PhantomData;

use bytes::Bytes;
use llm_tower_core::{SseEvent, write_sse_event};
use serde::de::{IgnoredAny, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// What a client has been sent of a `chat.completion.chunk` stream.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    /// The assistant's text so far.
    pub(crate) text: String,
    /// `id`, `model` and `created` of the first chunk: the continuation's chunks carry them.
    identity: Option<Identity>,
    /// The answer ended (a `finish_reason`, or `[DONE]`): nothing to continue.
    pub(crate) finished: bool,
    /// Something a prefill cannot carry on: tool calls, or more than one choice.
    pub(crate) not_text: bool,
}

/// A chunk as [`Delivered::saw`] reads it: the names of the completion (as `Names`: values
/// for the first chunk, skipped after it) and its choices.
#[derive(Deserialize)]
struct Chunk<'a, Names> {
    id: Option<Names>,
    model: Option<Names>,
    created: Option<Names>,
    #[serde(borrow)]
    choices: Vec<MapOnly<Choice<'a>>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow, default)]
    delta: Option<MapOnly<Delta<'a>>>,
    /// Present and not null.
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    /// Present, whatever its value (`null` included).
    #[serde(default, deserialize_with = "present")]
    tool_calls: bool,
    #[serde(default, deserialize_with = "present")]
    function_call: bool,
}

/// A struct read from a JSON object only: serde's derived structs also take an array (by
/// position), where the `Value` reading finds no fields.
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Object(PhantomData))
            .map(MapOnly)
    }
}

/// `true` for a field that is there, whatever it holds.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The fields that name a completion.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    id: Value,
    model: Value,
    created: Value,
}

impl Delivered {
    /// One event the client was sent.
    pub(crate) fn saw(&mut self, event: &SseEvent) {
        if event.data.trim() == "[DONE]" {
            self.finished = true;
            return;
        }
        // Read into borrowed structs, a few hundred instructions per event where a whole
        // `Value` costs about ten thousand; the first chunk's names are kept as values, later
        // ones skipped. What the structs cannot read (a field of another type, a key twice)
        // is read as a `Value` below, as before.
        let choices = if !event.data.trim_start().starts_with('{') {
            None
        } else if self.identity.is_none() {
            serde_json::from_str::<Chunk<'_, Value>>(&event.data)
                .ok()
                .map(|chunk| {
                    self.identity = Some(Identity {
                        id: chunk.id.unwrap_or(Value::Null),
                        model: chunk.model.unwrap_or(Value::Null),
                        created: chunk.created.unwrap_or(Value::Null),
                    });
                    chunk.choices
                })
        } else {
            serde_json::from_str::<Chunk<'_, IgnoredAny>>(&event.data)
                .ok()
                .map(|chunk| chunk.choices)
        };
        if let Some(choices) = choices {
            for MapOnly(choice) in choices {
                let delta = choice.delta.as_ref().map(|MapOnly(delta)| delta);
                self.saw_choice(
                    choice.index,
                    delta.is_some_and(|d| d.tool_calls || d.function_call),
                    delta.and_then(|d| d.content.as_deref()),
                    choice.finish_reason.is_some(),
                );
            }
            return;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        if self.identity.is_none() {
            self.identity = Some(Identity {
                id: chunk.get("id").cloned().unwrap_or(Value::Null),
                model: chunk.get("model").cloned().unwrap_or(Value::Null),
                created: chunk.get("created").cloned().unwrap_or(Value::Null),
            });
        }
        let Some(Value::Array(choices)) = chunk.get("choices") else {
            return;
        };
        for choice in choices {
            let delta = choice.get("delta");
            self.saw_choice(
                choice.get("index").and_then(Value::as_u64).unwrap_or(0),
                delta.and_then(|d| d.get("tool_calls")).is_some()
                    || delta.and_then(|d| d.get("function_call")).is_some(),
                delta.and_then(|d| d.get("content")).and_then(Value::as_str),
                choice.get("finish_reason").is_some_and(|r| !r.is_null()),
            );
        }
    }

    /// One choice of a chunk: its index, whether its delta has tool or function calls, its
    /// text, whether it has a finish reason.
    fn saw_choice(&mut self, index: u64, calls: bool, text: Option<&str>, finished: bool) {
        if index != 0 {
            self.not_text = true;
            return;
        }
        if calls {
            self.not_text = true;
        }
        if let Some(text) = text {
            self.text.push_str(text);
        }
        if finished {
            self.finished = true;
        }
    }

    /// Whether a prefill can carry the answer on: some text went out, nothing else did, and
    /// it is not over.
    pub(crate) fn continuable(&self) -> bool {
        !self.text.is_empty() && !self.finished && !self.not_text
    }

    /// The splice of a continuation into this stream (once its first chunk named it).
    pub(crate) fn splice(&self) -> Option<Splice> {
        self.identity.clone().map(|identity| Splice { identity })
    }
}

/// The request that continues `delivered` on another deployment: the client's request with
/// the assistant's text so far as the last message, calling the model `model`, with vLLM's
/// `continue_final_message` so that the text is continued rather than answered. `None` when
/// the request is not a JSON object with `messages`.
pub(crate) fn prefill(request: &[u8], delivered: &str, model: Option<&str>) -> Option<Bytes> {
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(request) else {
        return None;
    };
    let Some(Value::Array(messages)) = body.get_mut("messages") else {
        return None;
    };
    let mut last = Map::new();
    last.insert("role".into(), "assistant".into());
    last.insert("content".into(), delivered.into());
    messages.push(Value::Object(last));
    if let Some(model) = model {
        body.insert("model".into(), model.into());
    }
    body.insert("continue_final_message".into(), true.into());
    body.insert("add_generation_prompt".into(), false.into());
    // One choice: the one being continued.
    body.remove("n");
    serde_json::to_vec(&body).ok().map(Bytes::from)
}

/// Rewrites a continuation's events into the client's stream: its chunks take the first
/// answer's `id`, `model` and `created`, and the role chunk the client already had is left
/// out.
#[derive(Debug)]
pub(crate) struct Splice {
    identity: Identity,
}

impl Splice {
    /// The bytes the client gets for `event` (none for a chunk that says only the role).
    pub(crate) fn rewrite(&self, event: &SseEvent) -> Option<Bytes> {
        let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(&event.data) else {
            // `[DONE]`, comments, anything else: as it came.
            return Some(event.raw.clone());
        };
        chunk.insert("id".into(), self.identity.id.clone());
        chunk.insert("model".into(), self.identity.model.clone());
        chunk.insert("created".into(), self.identity.created.clone());
        if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
            for choice in choices.iter_mut() {
                if let Some(Value::Object(delta)) = choice.get_mut("delta") {
                    delta.remove("role");
                }
            }
            let says_nothing = choices.iter().all(|choice| {
                choice.get("finish_reason").is_none_or(Value::is_null)
                    && choice
                        .get("delta")
                        .and_then(Value::as_object)
                        .is_none_or(|delta| delta.values().all(|v| v.is_null() || v == ""))
            });
            if says_nothing && !choices.is_empty() && chunk.get("usage").is_none_or(Value::is_null)
            {
                return None;
            }
        }
        let mut out = Vec::new();
        write_sse_event(&mut out, None, &serde_json::to_vec(&chunk).ok()?);
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
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":100,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        "\n\n",
        r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":100,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"The answer"},"finish_reason":null}]}"#,
        "\n\n",
    );

    #[test]
    fn what_was_delivered_and_whether_it_can_go_on() {
        let mut delivered = Delivered::default();
        for event in events(FIRST) {
            delivered.saw(&event);
        }
        assert_eq!(delivered.text, "The answer");
        assert!(delivered.continuable());
        let mut tools = Delivered::default();
        for event in events(concat!(
            r#"data: {"id":"c","choices":[{"index":0,"delta":{"content":"x","tool_calls":[{"index":0}]},"finish_reason":null}]}"#,
            "\n\n"
        )) {
            tools.saw(&event);
        }
        assert!(!tools.continuable());
        let mut done = Delivered::default();
        for event in events(&format!("{FIRST}data: [DONE]\n\n")) {
            done.saw(&event);
        }
        assert!(!done.continuable());
    }

    #[test]
    fn chunks_after_the_first_are_read_as_a_whole_value_would_read_them() {
        let seen = |chunks: &[&str]| {
            let mut delivered = Delivered::default();
            for event in events(FIRST) {
                delivered.saw(&event);
            }
            for chunk in chunks {
                for event in events(&format!("data: {chunk}\n\n")) {
                    delivered.saw(&event);
                }
            }
            (delivered.text, delivered.not_text, delivered.finished)
        };
        let escaped =
            r#"{"choices":[{"index":0,"delta":{"content":" is \"42\""},"finish_reason":null}]}"#;
        assert_eq!(
            seen(&[escaped]),
            ("The answer is \"42\"".to_owned(), false, false)
        );
        // A tool call's key counts even when it holds `null`.
        let calls = r#"{"choices":[{"index":0,"delta":{"content":"!","tool_calls":null}}]}"#;
        assert_eq!(seen(&[calls]), ("The answer!".to_owned(), true, false));
        let other = r#"{"choices":[{"index":1,"delta":{"content":"other"}}]}"#;
        assert_eq!(seen(&[other]), ("The answer".to_owned(), true, false));
        // Not a string: what the structs cannot read, the `Value` reads (and skips).
        let number = r#"{"choices":[{"index":0,"delta":{"content":5}}]}"#;
        assert_eq!(seen(&[number]), ("The answer".to_owned(), false, false));
        let stop = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(seen(&[stop]), ("The answer".to_owned(), false, true));
        let twice = r#"{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}"#;
        assert_eq!(seen(&[twice]), ("The answerb".to_owned(), false, false));
        // An array where an object belongs has no fields for the `Value`, nor here.
        let array_choice = r#"{"choices":[[0,{"content":"x"},"stop"]]}"#;
        assert_eq!(
            seen(&[array_choice]),
            ("The answer".to_owned(), false, false)
        );
        let array_delta = r#"{"choices":[{"index":0,"delta":["x"]}]}"#;
        assert_eq!(
            seen(&[array_delta]),
            ("The answer".to_owned(), false, false)
        );
        // The one place the readings part: a field nobody reads that a `Value` cannot hold (a
        // number past `f64`, a lone surrogate). The whole chunk was dropped; its text counts
        // now, as the client was sent it.
        let huge = r#"{"created":1e400,"choices":[{"index":0,"delta":{"content":"!"}}]}"#;
        assert_eq!(seen(&[huge]), ("The answer!".to_owned(), false, false));
    }

    #[test]
    fn the_prefill_request_and_the_spliced_stream() {
        let request = br#"{"model":"gpt-4o","stream":true,"n":1,"messages":[{"role":"user","content":"Q?"}]}"#;
        let body: Value =
            serde_json::from_slice(&prefill(request, "The answer", Some("llama")).unwrap())
                .unwrap();
        assert_eq!(
            body["messages"][1],
            serde_json::json!({"role": "assistant", "content": "The answer"})
        );
        assert_eq!(
            (body["model"].as_str(), body["stream"].as_bool()),
            (Some("llama"), Some(true))
        );
        assert_eq!(body["continue_final_message"], true);
        assert!(body.get("n").is_none());
        assert!(prefill(b"[1]", "x", None).is_none());

        let mut delivered = Delivered::default();
        for event in events(FIRST) {
            delivered.saw(&event);
        }
        let splice = delivered.splice().unwrap();
        let continued = events(concat!(
            r#"data: {"id":"other","created":7,"model":"llama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            "\n\n",
            r#"data: {"id":"other","created":7,"model":"llama","choices":[{"index":0,"delta":{"role":"assistant","content":" is 42."},"finish_reason":"stop"}]}"#,
            "\n\n",
            "data: [DONE]\n\n",
        ));
        let out: Vec<Bytes> = continued.iter().filter_map(|e| splice.rewrite(e)).collect();
        assert_eq!(out.len(), 2, "the role chunk is left out");
        let chunk: Value = serde_json::from_slice(&out[0][6..]).unwrap();
        assert_eq!(
            (
                chunk["id"].as_str(),
                chunk["model"].as_str(),
                chunk["created"].as_u64()
            ),
            (Some("chatcmpl-1"), Some("gpt-4o"), Some(100))
        );
        assert_eq!(
            chunk["choices"][0]["delta"],
            serde_json::json!({"content": " is 42."})
        );
        assert_eq!(&out[1][..], b"data: [DONE]\n\n");
    }
}
