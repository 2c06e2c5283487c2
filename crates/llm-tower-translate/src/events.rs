//! Writing the translated stream: one JSON document as one server-sent event.

use bytes::BytesMut;
use llm_tower_core::write_sse_event;
use serde_json::Value;

/// Appends `value` to `out` as one event, named `event` when the client's API names them.
pub(crate) fn write_json_event(out: &mut BytesMut, event: Option<&str>, value: &Value) {
    write_sse_event(out, event, &serde_json::to_vec(value).unwrap_or_default());
}
