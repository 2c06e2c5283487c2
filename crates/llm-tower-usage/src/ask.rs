//! Asking an OpenAI-format stream for its usage. OpenAI reports a stream's usage only when
//! asked (`stream_options.include_usage`); a client that did not ask is asked for, and the
//! extra chunk taken out of its stream again ([`strip`](crate::strip)).

use std::sync::LazyLock;

use bytes::Bytes;
use llm_tower_core::{BufferedBody, TopLevel};
use memchr::memmem::Finder;
use serde_json::{Map, Value};

static STREAM: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"stream\""));

/// What is inserted in a request that sets no `stream_options`.
const ASK: &[u8] = br#""stream_options":{"include_usage":true},"#;

/// Whether `body` might say it streams: most requests do not, and a search for the key is
/// cheaper than reading their top level for it (a key written with escapes is missed: its
/// stream is not asked, and its usage is estimated).
pub(crate) fn might_stream(body: &[u8]) -> bool {
    STREAM.find(body).is_some()
}

/// `body`, an OpenAI request whose top-level `stream` and `stream_options` are `stream` and
/// `options` (core's `find_model_and`), asking for its stream's usage; `None` when it does not
/// stream, asks already, or cannot be read (it goes as it came).
pub(crate) fn asking_for_usage(
    body: &Bytes,
    stream: TopLevel,
    options: TopLevel,
) -> Option<BufferedBody> {
    if &body[stream.at()?] != b"true" {
        return None;
    }
    let options = match options {
        TopLevel::At(options) => options,
        // Which one the provider reads is its parser's choice: the client may have asked in
        // it. Nothing is added, so nothing is taken out of the stream the client gets.
        TopLevel::Repeated => return None,
        TopLevel::Absent => {
            // Right after the opening brace; the client's bytes otherwise untouched. The
            // object has a member (`stream`): the comma is right.
            let open = body.iter().position(|b| *b == b'{')?;
            return Some(BufferedBody::spliced([
                body.slice(..=open),
                Bytes::from_static(ASK),
                body.slice(open + 1..),
            ]));
        }
    };
    // The client set other options: they are rewritten with it.
    let mut value = match serde_json::from_slice::<Value>(&body[options.clone()]).ok()? {
        Value::Object(value) => value,
        Value::Null => Map::new(),
        _ => return None,
    };
    if value.get("include_usage") == Some(&Value::Bool(true)) {
        return None;
    }
    value.insert("include_usage".into(), Value::Bool(true));
    let written = serde_json::to_vec(&value).ok()?;
    Some(BufferedBody::spliced([
        body.slice(..options.start),
        Bytes::from(written),
        body.slice(options.end..),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(body: &str) -> Option<String> {
        let (_, [stream, options]) =
            llm_tower_core::find_model_and(body.as_bytes(), ["stream", "stream_options"]);
        asking_for_usage(&Bytes::copy_from_slice(body.as_bytes()), stream, options)
            .map(|body| String::from_utf8(body.to_bytes().to_vec()).unwrap())
    }

    #[test]
    fn a_stream_that_did_not_ask_is_asked_and_nothing_else_changes() {
        assert_eq!(
            asked(r#"{"model":"m","stream":true,"messages":[]}"#).as_deref(),
            Some(
                r#"{"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[]}"#
            )
        );
        assert_eq!(
            asked(r#"{"stream": true, "stream_options": {"include_obfuscation": false}}"#)
                .as_deref(),
            Some(
                r#"{"stream": true, "stream_options": {"include_obfuscation":false,"include_usage":true}}"#
            )
        );
        for unchanged in [
            r#"{"model":"m","messages":[]}"#,
            r#"{"model":"m","stream":false}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"metadata":{"stream":true}}"#,
            r#"{"stream":true,"stream":true}"#,
            // Either could be the one the provider reads, and the client asked in one.
            r#"{"stream":true,"stream_options":{"include_usage":true},"stream_options":{}}"#,
            r#"{"stream":true,"stream_options":{},"stream_options":{"include_usage":true}}"#,
            "not json",
        ] {
            assert_eq!(asked(unchanged), None, "{unchanged}");
        }
    }
}
