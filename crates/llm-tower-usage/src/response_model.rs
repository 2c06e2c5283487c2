//! The model an answer names (`"model"`; Gemini's `"modelVersion"`), for the attempt's span
//! (`gen_ai.response.model`): looked for only while a tracing backend listens, in each
//! chunk until found. The first such key is taken: providers put it before any content
//! (OpenAI's every chunk and answer, Anthropic's `message_start`), and a key inside text
//! cannot match, since a string's quotes are escaped.

use memchr::memmem;

/// The first `"model":"…"` or `"modelVersion":"…"` in `data`, when its value ends there
/// and has no escapes.
pub(crate) fn response_model(data: &[u8]) -> Option<&str> {
    [&b"\"model\":"[..], b"\"modelVersion\":"]
        .into_iter()
        .filter_map(|key| Some((memmem::find(data, key)?, key.len())))
        .min()
        .and_then(|(at, len)| {
            let value = crate::scan::skip_space(&data[at + len..]);
            let value = value.strip_prefix(b"\"")?;
            let end = memchr::memchr2(b'"', b'\\', value)?;
            (value[end] == b'"')
                .then(|| std::str::from_utf8(&value[..end]).ok())
                .flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::response_model;

    #[test]
    fn the_first_model_key_names_the_answers_model() {
        for (data, model) in [
            (
                &br#"data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[]}"#[..],
                Some("gpt-4o-2024-08-06"),
            ),
            (
                br#"{"type":"message_start","message":{"model": "claude-sonnet-4-5","content":[]}}"#,
                Some("claude-sonnet-4-5"),
            ),
            (
                br#"{"candidates":[{"content":{"role":"model"}}],"modelVersion":"gemini-2.5-flash"}"#,
                Some("gemini-2.5-flash"),
            ),
            // In text, a key's quotes are escaped: not a key.
            (br#"{"content":"say \"model\":\"x\""}"#, None),
            (br#"{"model":"cut-off"#, None),
            (br#"{"model":"esc\"aped"}"#, None),
            (br#"{"model":null}"#, None),
        ] {
            assert_eq!(response_model(data), model, "{}", String::from_utf8_lossy(data));
        }
    }
}
