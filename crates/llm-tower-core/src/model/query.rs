//! The model a request names in its query (`?model=gpt-4o-realtime`): what a WebSocket
//! upgrade, which has no body, is routed by; and the query with another name in its place.

use std::fmt::Write as _;

use super::ModelName;
use crate::percent_decode;

/// The `model` parameter of `query` (percent-decoded); `None` when absent, empty, not UTF-8,
/// or ambiguous: given twice, or also under a name some server may read as `model`
/// (`%6Dodel`, `MODEL`, `model[]`). Which one an upstream would read is anyone's guess, so
/// none is taken (a route by model, or a key's allow-list, then refuses the request).
///
/// ```
/// use llm_tower_core::model_in_query;
///
/// assert_eq!(model_in_query("model=gpt-4o-realtime").as_deref(), Some("gpt-4o-realtime"));
/// assert_eq!(model_in_query("api-version=1&model=my%20model").as_deref(), Some("my model"));
/// for ambiguous in ["model=a&model=b", "model=a&MODEL=b", "model=a&%6Dodel=b", "model[]=a", "Model=a"] {
///     assert_eq!(model_in_query(ambiguous), None, "{ambiguous}");
/// }
/// assert_eq!(model_in_query("models=a&model=b").as_deref(), Some("b"));
/// ```
pub fn model_in_query(query: &str) -> Option<ModelName> {
    let mut found = None;
    for pair in query.split(['&', ';']) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_decode(&name.replace('+', " "));
        // `model`, whatever its case or escapes, and anything after it but letters and digits
        // (`model[]`, `model.x`): what a lenient server may take for it.
        let looks_like = decoded
            .get(..5)
            .is_some_and(|start| start.eq_ignore_ascii_case(b"model"))
            && !decoded[5..].iter().any(u8::is_ascii_alphanumeric);
        if !looks_like {
            continue;
        }
        if name != "model" || found.is_some() {
            return None;
        }
        found = Some(value);
    }
    let name = String::from_utf8(percent_decode(&found?.replace('+', " "))).ok()?;
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
