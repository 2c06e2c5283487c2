//! The model a request names in its query (`?model=gpt-4o-realtime`): what a WebSocket
//! upgrade, which has no body, is routed by; and the query with another name in its place.

use std::fmt::Write as _;

use super::ModelName;
use crate::percent_decode;

/// The `model` parameter of `query` (percent-decoded); `None` when absent, empty, not UTF-8,
/// or given twice (which one an upstream reads is anyone's guess: none is taken).
///
/// ```
/// use llm_tower_core::model_in_query;
///
/// assert_eq!(model_in_query("model=gpt-4o-realtime").as_deref(), Some("gpt-4o-realtime"));
/// assert_eq!(model_in_query("api-version=1&model=my%20model").as_deref(), Some("my model"));
/// assert_eq!(model_in_query("model=a&model=b"), None);
/// assert_eq!(model_in_query("models=a"), None);
/// ```
pub fn model_in_query(query: &str) -> Option<ModelName> {
    let mut values = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("model="));
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let name = String::from_utf8(percent_decode(&value.replace('+', " "))).ok()?;
    (!name.is_empty()).then(|| name.into())
}

/// `query` with its `model` parameter's value `model` (percent-encoded where it must be).
///
/// ```
/// use llm_tower_core::with_query_model;
///
/// assert_eq!(with_query_model("api-version=1&model=fast", "gpt-4o-mini"), "api-version=1&model=gpt-4o-mini");
/// assert_eq!(with_query_model("model=fast", "a b/c"), "model=a%20b%2Fc");
/// ```
pub fn with_query_model(query: &str, model: &str) -> String {
    let mut out = String::with_capacity(query.len() + model.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        if pair.starts_with("model=") {
            out.push_str("model=");
            for byte in model.bytes() {
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    out.push(char::from(byte));
                } else {
                    let _ = write!(out, "%{byte:02X}");
                }
            }
        } else {
            out.push_str(pair);
        }
    }
    out
}
