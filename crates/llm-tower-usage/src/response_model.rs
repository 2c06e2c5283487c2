//! The model an answer names, for the attempt's span (`gen_ai.response.model`): looked for
//! only while a tracing backend listens, in each chunk until found. Only the provider's own
//! key counts — `model` or `modelVersion` (Gemini) at the top of a JSON object, or `model`
//! in the top-level `message` of Anthropic's `message_start` — never one deeper down, where
//! a tool call's arguments (model-written JSON) could name anything. Text inside strings is
//! skipped, escapes and all. A chunk is read on its own: the key comes in the first event.

/// The model `data` names at the top of one of its JSON objects (an SSE chunk holds
/// several), when its value is a string without escapes that ends there.
pub(crate) fn response_model(data: &[u8]) -> Option<&str> {
    let mut depth = 0usize;
    // The key last read at depth 1, for Anthropic's `message.model`.
    let mut top_key: &[u8] = b"";
    let mut at = 0;
    while at < data.len() {
        match data[at] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' if depth > 0 => {
                let (text, end) = string(data, at)?;
                at = end;
                let rest = crate::scan::skip_space(&data[at..]);
                if rest.first() != Some(&b':') {
                    continue;
                }
                let named = match depth {
                    1 => text == b"model" || text == b"modelVersion",
                    2 => text == b"model" && top_key == b"message",
                    _ => false,
                };
                if depth == 1 {
                    top_key = text;
                }
                if named {
                    let value = crate::scan::skip_space(&rest[1..]);
                    let start = data.len() - value.len();
                    let (model, _) = string(data, start)?;
                    let escaped = model.contains(&b'\\');
                    return (!escaped).then(|| std::str::from_utf8(model).ok())?;
                }
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// The raw text of the string opening at `data[at]` (a quote), and where it ends (past
/// its closing quote); `None` when it does not end in `data`, or `data[at]` is no quote.
fn string(data: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if data.get(at) != Some(&b'"') {
        return None;
    }
    let mut end = at + 1;
    loop {
        match *data.get(end)? {
            b'"' => return Some((&data[at + 1..end], end + 1)),
            b'\\' => end += 2,
            _ => end += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::response_model;

    #[test]
    fn only_the_providers_own_model_key_names_the_answers_model() {
        for (data, model) in [
            (
                &br#"data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[]}"#[..],
                Some("gpt-4o-2024-08-06"),
            ),
            (
                b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\": \"claude-sonnet-4-5\",\"content\":[]}}\n\n",
                Some("claude-sonnet-4-5"),
            ),
            (
                br#"{"candidates":[{"content":{"role":"model"}}],"modelVersion":"gemini-2.5-flash"}"#,
                Some("gemini-2.5-flash"),
            ),
            // A tool call's arguments come first, and name a model of their own.
            (
                br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"model":"written-by-the-model"}}}]}}],"modelVersion":"gemini-2.5-pro"}"#,
                Some("gemini-2.5-pro"),
            ),
            (
                br#"{"choices":[{"message":{"tool_calls":[{"function":{"arguments":{"model":"x"}}}]}}]}"#,
                None,
            ),
            // In text, a key's quotes are escaped: not a key.
            (br#"{"content":"say \"model\":\"x\""}"#, None),
            (br#"{"content":"a \\" ,"model":"after-an-escaped-backslash"}"#, Some("after-an-escaped-backslash")),
            (br#"{"model":"cut-off"#, None),
            (br#"{"model":"esc\"aped"}"#, None),
            (br#"{"model":null}"#, None),
            (br#"{"message":{"model":"not-anthropic's","x":1}}"#, Some("not-anthropic's")),
        ] {
            assert_eq!(response_model(data), model, "{}", String::from_utf8_lossy(data));
        }
    }
}
