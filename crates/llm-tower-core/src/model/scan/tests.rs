//! Tests of the body scan and the rewrite: hand-picked bodies, then properties against
//! serde_json.

use super::*;
use http_body_util::BodyExt;

fn named(body: &str) -> Option<String> {
    match find_model(body.as_bytes()) {
        ModelInBody::Named { name, span } => {
            // The span is the raw value between the quotes.
            let raw = &body[span.clone()];
            assert_eq!(&body[span.start - 1..span.start], "\"");
            assert_eq!(&body[span.end..=span.end], "\"");
            assert!(raw.contains('\\') || raw == &*name, "{raw} vs {name}");
            Some(name.to_string())
        }
        ModelInBody::Absent => None,
        ModelInBody::Duplicate => Some("<duplicate>".into()),
    }
}

#[test]
fn finds_the_top_level_model_only() {
    assert_eq!(named(r#"{"model":"a"}"#).as_deref(), Some("a"));
    assert_eq!(
        named(r#" {"messages":[{"model":"inner","content":"\"model\": \"x\"}"}],"model" : "b"} "#)
            .as_deref(),
        Some("b")
    );
    assert_eq!(
        named(r#"{"metadata":{"model":"inner"},"n":1,"stream":true,"x":null,"model":"c"}"#)
            .as_deref(),
        Some("c")
    );
    assert_eq!(
        named(r#"{"nested":[[{"a":["]"]}]],"model":"d"}"#).as_deref(),
        Some("d")
    );
    assert_eq!(named("{\n\t\"model\"\r\n:\n\"e\"\n}").as_deref(), Some("e"));
}

#[test]
fn escapes_are_decoded_in_keys_and_values() {
    assert_eq!(
        named(r#"{"mod\u0065l":"gpt-4o"}"#).as_deref(),
        Some("gpt-4o")
    );
    assert_eq!(
        named(r#"{"model":"gpt\u002d4o"}"#).as_deref(),
        Some("gpt-4o")
    );
    assert_eq!(named(r#"{"model":"a\"b\\"}"#).as_deref(), Some("a\"b\\"));
    assert_eq!(named(r#"{"model":"\ud83d\ude00"}"#).as_deref(), Some("😀"));
}

#[test]
fn no_usable_model_is_absent() {
    for body in [
        "",
        "[]",
        "null",
        "{}",
        "{ }",
        "not json",
        r#"{"messages":[]}"#,
        r#"{"model":null}"#,
        r#"{"model":4}"#,
        r#"{"model":{"name":"a"}}"#,
        r#"{"model":"\ud800"}"#, // a lone surrogate
        r#"{"model":"unterminated"#,
        r#"{"messages":[{"content":"model"}"#,
    ] {
        assert_eq!(find_model(body.as_bytes()), ModelInBody::Absent, "{body}");
    }
}

#[test]
fn a_second_model_key_is_refused() {
    for body in [
        r#"{"model":"a","model":"b"}"#,
        r#"{"model":"a","x":[1,2],"mod\u0065l":"b"}"#,
        r#"{"model":null,"model":"b"}"#,
    ] {
        assert_eq!(
            find_model(body.as_bytes()),
            ModelInBody::Duplicate,
            "{body}"
        );
    }
    // A second one inside a nested value is not a duplicate.
    assert_eq!(
        named(r#"{"model":"a","tools":[{"model":"b"}]}"#).as_deref(),
        Some("a")
    );
}

#[test]
fn a_malformed_body_names_no_model() {
    for body in [
        r#"{"model":"a","x":"#,
        r#"{"model":"a", /* "model":"b" */ "x":1}"#,
        r#"{"model":"a",}"#,
        // Broken inside the second value: what a parser makes of it is anyone's guess.
        r#"{"model":"a","model":"b}"#,
    ] {
        assert_eq!(find_model(body.as_bytes()), ModelInBody::Absent, "{body}");
    }
    // Broken past the second value: twice, whatever follows.
    assert_eq!(
        find_model(br#"{"model":"a","model":"b" x}"#),
        ModelInBody::Duplicate
    );
}

#[test]
fn other_keys_are_found_once_twice_or_not_at_all() {
    let body = br#"{"stream":true,"stream_options":{},"stream_options":{"include_usage":true}}"#;
    let (_, [stream, options, n]) = find_model_and(body, ["stream", "stream_options", "n"]);
    assert_eq!(stream.at().map(|at| &body[at]), Some(&b"true"[..]));
    assert_eq!(options, TopLevel::Repeated);
    assert_eq!(n, TopLevel::Absent);
    // The case the property test below found: a key's second value broken is no second one.
    let body = br#"{"stream_options": null,"model": 1,"stream_options": [null,{"x" } a":false}]}"#;
    let (_, [options]) = find_model_and(body, ["stream_options"]);
    assert_eq!(options, TopLevel::Absent);
}

#[test]
fn model_in_another_case_is_a_duplicate_beside_model() {
    for body in [
        r#"{"model":"small","MODEL":"big"}"#,
        r#"{"Model":"big","model":"small"}"#,
        r#"{"model":"small","MOD\u0045L":"big"}"#,
    ] {
        assert_eq!(
            find_model(body.as_bytes()),
            ModelInBody::Duplicate,
            "{body}"
        );
    }
    assert_eq!(find_model(br#"{"MODEL":"big"}"#), ModelInBody::Absent);
    assert_eq!(
        named(r#"{"models":["x"],"model":"a"}"#).as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn only_the_value_bytes_change() {
    let original = "{ \"temperature\": 0.5,\n  \"model\" :\t\"gpt-4o\" , \"messages\": [] }";
    let body = Bytes::from(original);
    let ModelInBody::Named { span, .. } = find_model(&body) else {
        panic!()
    };
    for name in [
        "gpt4o-prod",
        "x",
        "with \"quotes\" and \\ and \u{1}",
        "日本",
    ] {
        let rewritten = with_model(&body, span.clone(), name);
        let size = http_body::Body::size_hint(&rewritten).exact().unwrap();
        let bytes = rewritten.collect().await.unwrap().to_bytes();
        assert_eq!(size, bytes.len() as u64);
        let expected = original.replacen("\"gpt-4o\"", &serde_json::to_string(name).unwrap(), 1);
        assert_eq!(bytes, expected.as_bytes());
        let again = find_model(&bytes);
        let ModelInBody::Named { name: found, .. } = again else {
            panic!()
        };
        assert_eq!(&*found, name);
    }
}

#[test]
fn a_large_body_is_read_once() {
    // Half a MiB of content, the model last: found, with its span at the end.
    let content = "x".repeat(512 * 1024);
    let body = format!(r#"{{"messages":[{{"role":"user","content":"{content}"}}],"model":"m"}}"#);
    let ModelInBody::Named { name, span } = find_model(body.as_bytes()) else {
        panic!()
    };
    assert_eq!((&*name, span.end), ("m", body.len() - 2));
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};
    use std::fmt::Write as _;

    /// Any JSON value, strings with quotes, backslashes, brackets and non-ASCII in them.
    fn value() -> impl Strategy<Value = Value> {
        let text = "[a-z\"\\\\{}\\[\\]:, \u{1}é😀]{0,12}";
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            text.prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(text, inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// How often a scan for `key` alone meets it (`raw`: exactly; else in any case), walked
    /// with `for_each_member` rather than the scanner's own top-level walk: `None` when the
    /// body is malformed before the key's second place.
    enum Met {
        Never,
        Once(Range<usize>, bool),
        Twice,
    }

    fn met(body: &[u8], key: &str, raw: bool) -> Option<Met> {
        let mut met = Met::Never;
        let whole = for_each_member(body, |name, value| {
            let name = if name.contains(&b'\\') {
                serde_json::from_slice::<String>(&[b"\"", name, b"\""].concat()).ok()
            } else {
                std::str::from_utf8(name).ok().map(String::from)
            };
            let Some(name) = name else { return };
            let exact = name == key;
            if exact || (!raw && name.eq_ignore_ascii_case(key)) {
                met = match met {
                    Met::Never => Met::Once(value, exact),
                    _ => Met::Twice,
                };
            }
        });
        match met {
            Met::Twice => Some(Met::Twice),
            _ if whole.is_none() => None,
            met => Some(met),
        }
    }

    /// [`find_model`] as a scan for the model alone finds it.
    fn model_alone(body: &[u8]) -> ModelInBody {
        match met(body, "model", false) {
            Some(Met::Twice) => ModelInBody::Duplicate,
            Some(Met::Once(value, true)) if body[value.clone()].starts_with(b"\"") => {
                let span = value.start + 1..value.end - 1;
                match serde_json::from_slice::<String>(&body[value]) {
                    Ok(name) => ModelInBody::Named {
                        name: name.into(),
                        span,
                    },
                    Err(_) => ModelInBody::Absent,
                }
            }
            _ => ModelInBody::Absent,
        }
    }

    /// `key` as a scan for it alone finds it.
    fn value_alone(body: &[u8], key: &str) -> TopLevel {
        match met(body, key, true) {
            Some(Met::Once(value, _)) => TopLevel::At(value),
            Some(Met::Twice) => TopLevel::Repeated,
            Some(Met::Never) | None => TopLevel::Absent,
        }
    }

    proptest! {
        /// On valid JSON without duplicate keys, the scan agrees with a real parser, and a
        /// rewrite changes the value and nothing else.
        #[test]
        fn agrees_with_serde_json(
            mut object in prop::collection::btree_map("[a-z]{1,6}", value(), 0..5),
            model in prop::option::of(value()),
            pretty in any::<bool>(),
        ) {
            object.remove("model");
            let mut object: Map<String, Value> = object.into_iter().collect();
            if let Some(model) = model.clone() {
                object.insert("model".into(), model);
            }
            let json = Value::Object(object);
            let text = if pretty {
                serde_json::to_string_pretty(&json).unwrap()
            } else {
                serde_json::to_string(&json).unwrap()
            };
            let body = Bytes::from(text);
            match (find_model(&body), &json["model"]) {
                (ModelInBody::Named { name, span }, Value::String(expected)) => {
                    prop_assert_eq!(&*name, expected.as_str());
                    let rewritten = with_model(&body, span.clone(), "new \"name\"");
                    let bytes = rewritten.to_bytes();
                    prop_assert_eq!(rewritten.len(), bytes.len());
                    let mut reparsed: Value = serde_json::from_slice(&bytes).unwrap();
                    prop_assert_eq!(&reparsed["model"], "new \"name\"");
                    reparsed["model"] = Value::String(expected.clone());
                    prop_assert_eq!(reparsed, json);
                    prop_assert_eq!(&bytes[..span.start], &body[..span.start]);
                }
                (ModelInBody::Absent, expected) => prop_assert!(!expected.is_string()),
                (found, expected) => prop_assert!(false, "{found:?} for {expected:?}"),
            }
        }

        /// One pass for the model and other keys finds what a pass for each finds: top
        /// levels with keys repeated, in other cases and escaped, and cut or broken anywhere.
        #[test]
        fn one_pass_for_several_keys_finds_what_one_per_key_finds(
            members in prop::collection::vec((0usize..7, value()), 0..8),
            fault in prop::option::of((0usize..400, "[,:{}\"\\\\x]")),
        ) {
            const KEYS: [&str; 7] =
                ["model", "stream", "stream_options", "Model", "STREAM", "str\\u0065am", "n"];
            let mut text = String::from("{");
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                write!(text, "\"{}\": {value}", KEYS[*key]).unwrap();
            }
            text.push('}');
            if let Some((at, broken)) = fault {
                let at = (0..=at.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                text.replace_range(at..at, &broken);
            }
            let body = text.as_bytes();
            let (model, [stream, options]) = find_model_and(body, ["stream", "stream_options"]);
            prop_assert_eq!(&model, &find_model(body), "{}", text);
            prop_assert_eq!(model, model_alone(body), "{}", text);
            for (found, key) in [(stream, "stream"), (options, "stream_options")] {
                prop_assert_eq!(&found, &value_alone(body, key), "{} {}", text, key);
                prop_assert_eq!(found.at(), find_top_level(body, key), "{}", text);
            }
        }

        /// Any bytes at all: no panic, and a span found is inside the body.
        #[test]
        fn never_panics(body in prop::collection::vec(any::<u8>(), 0..256), prefix in "[{\" model:\\\\]{0,12}") {
            let mut bytes = prefix.into_bytes();
            bytes.extend(body);
            if let ModelInBody::Named { span, .. } = find_model(&bytes) {
                prop_assert!(span.start >= 1 && span.end < bytes.len());
            }
        }
    }
}

#[test]
fn a_string_ends_where_memchr_says_for_every_position() {
    // Every position of the first quote or backslash in and past the words read in a
    // register, with the bytes that could fool a zero-byte test (0x00, 0x01, 0x80, 0xff,
    // and the neighbours of `"` and `\`) before it, and a second match after it.
    for len in 0..80 {
        for target in [None, Some(b'"'), Some(b'\\')] {
            for filler in [
                b'a', 0x00, 0x01, 0x21, 0x23, 0x5b, 0x5d, 0x80, 0xa2, 0xdc, 0xff,
            ] {
                for first in 0..=len {
                    let mut bytes = vec![filler; len];
                    if let Some(target) = target
                        && first < len
                    {
                        bytes[first] = target;
                        if first + 3 < len {
                            bytes[first + 3] = b'"';
                        }
                    }
                    assert_eq!(
                        quote_or_backslash(&bytes),
                        memchr::memchr2(b'"', b'\\', &bytes),
                        "{bytes:?}"
                    );
                }
            }
        }
    }
}
