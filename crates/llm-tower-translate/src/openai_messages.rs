//! Reading an OpenAI chat request's messages, the same for every target: the text of a
//! content, and turns joined where the target wants them to alternate.

use serde_json::{Value, json};

/// The text of a content that is a string or text parts (`None`: anything else).
pub(crate) fn text_of(content: Option<&Value>) -> Option<String> {
    match content? {
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Option<Vec<_>>>()
            .map(|texts| texts.concat()),
        _ => None,
    }
}

/// Appends `items` as a turn of `role` (its list under `key`: Anthropic's `content`, Gemini's
/// `parts`), joined to the last turn when it has the same role: both want turns to alternate,
/// and OpenAI's tool results are one message each.
pub(crate) fn push_turn(turns: &mut Vec<Value>, role: &str, key: &str, items: Vec<Value>) {
    if let Some(last) = turns.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(Value::Array(existing)) = last.get_mut(key)
    {
        existing.extend(items);
        return;
    }
    turns.push(json!({ "role": role, key: items }));
}
