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

/// `query` with its parameter `name` set to `value` (percent-encoded where it must be): in
/// place where it is, else added at the end.
///
/// ```
/// use llm_tower_core::with_query_param;
///
/// assert_eq!(with_query_param("api-version=1&model=fast", "model", "gpt-4o-mini"), "api-version=1&model=gpt-4o-mini");
/// assert_eq!(with_query_param("model=fast", "model", "a b/c&d"), "model=a%20b%2Fc%26d");
/// assert_eq!(with_query_param("model=m", "deployment", "m"), "model=m&deployment=m");
/// ```
pub fn with_query_param(query: &str, name: &str, value: &str) -> String {
    let mut out = String::with_capacity(query.len() + name.len() + value.len() + 2);
    let mut set = false;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        if !out.is_empty() {
            out.push('&');
        }
        match pair
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
        {
            Some(_) if !set => {
                push_param(&mut out, name, value);
                set = true;
            }
            // A second one is dropped: the value is ours.
            Some(_) => {
                out.pop();
            }
            None => out.push_str(pair),
        }
    }
    if !set {
        if !out.is_empty() {
            out.push('&');
        }
        push_param(&mut out, name, value);
    }
    out
}

/// `name=value`, the value percent-encoded but for unreserved characters (RFC 3986).
fn push_param(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push('=');
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}
