//! Answers of the OpenAI Responses API, as its reference shows them: a `response` object,
//! and a stream's events.

use serde_json::{Value, json};

/// The `response` object of the API reference, with its usage.
pub fn response(model: &str) -> Value {
    json!({
        "id": "resp_67ccd2bed1ec8190b14f964abc054267",
        "object": "response",
        "created_at": 1_741_476_542,
        "status": "completed",
        "model": model,
        "output": [{
            "type": "message",
            "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e6",
            "status": "completed",
            "role": "assistant",
            "content": [{ "type": "output_text", "text": "Hello there.", "annotations": [] }]
        }],
        "usage": {
            "input_tokens": 36,
            "input_tokens_details": { "cached_tokens": 0 },
            "output_tokens": 87,
            "output_tokens_details": { "reasoning_tokens": 0 },
            "total_tokens": 123
        }
    })
}

/// The first events of a streamed answer: `response.created` and one text delta.
pub fn first_events(model: &str) -> Vec<(Option<&'static str>, Value)> {
    let mut created = response(model);
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    created["usage"] = Value::Null;
    vec![
        (
            Some("response.created"),
            json!({ "type": "response.created", "sequence_number": 0, "response": created }),
        ),
        (
            Some("response.output_text.delta"),
            json!({ "type": "response.output_text.delta", "sequence_number": 1,
                    "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hello" }),
        ),
    ]
}

/// The last event of a streamed answer, with the whole response and its usage.
pub fn completed(model: &str) -> (Option<&'static str>, Value) {
    (
        Some("response.completed"),
        json!({ "type": "response.completed", "sequence_number": 2, "response": response(model) }),
    )
}
