//! Fixtures per API, written from the providers' API references: answers and streams with and
//! without usage, cached and reasoning tokens; the stripped stream; the estimates; and
//! properties: however the bytes are cut into frames, the same usage and the same stream.

use bytes::BytesMut;
use llm_tower_core::Usage;
use proptest::prelude::*;

use super::Scanner;
use crate::format::Format;

fn read(format: Format, events: bool, frames: &[&[u8]]) -> Option<Usage> {
    let mut scanner = Scanner::new(format, events);
    for (i, frame) in frames.iter().enumerate() {
        scanner.push(frame, i + 1 == frames.len());
    }
    scanner.finish();
    scanner.usage(400, true)
}

/// An answer's usage, as reported.
fn exact(input: u64, output: u64, cached_input: u64, reasoning: u64) -> Usage {
    Usage {
        input,
        output,
        cached_input,
        reasoning,
        estimated: false,
    }
}

const OPENAI_COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"o4-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The \"usage\": {\"prompt_tokens\": 1} is text."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1200,"completion_tokens":300,"total_tokens":1500,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":256,"audio_tokens":0}}}"#;

const OPENAI_STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello, world\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n\
data: [DONE]\n\n";

/// [`OPENAI_STREAM`] as it is when its client did not ask for usage.
const OPENAI_STREAM_UNASKED: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello, world\"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";

const ANTHROPIC_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello! How can I help?\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

const GEMINI_STREAM: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Why\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" not?\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 3,\"totalTokenCount\": 51,\"cachedContentTokenCount\": 4,\"thoughtsTokenCount\": 40},\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n";

const RESPONSES_STREAM: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"usage\":null}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi there\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"usage\":{\"input_tokens\":36,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":87,\"output_tokens_details\":{\"reasoning_tokens\":64},\"total_tokens\":123}}}\n\n";

#[test]
fn every_api_s_answer_and_stream() {
    assert_eq!(
        read(Format::OpenAiChat, false, &[OPENAI_COMPLETION.as_bytes()]),
        Some(exact(1200, 300, 1024, 256)),
        "a usage in a message's text is text"
    );
    assert_eq!(
        read(Format::OpenAiChat, true, &[OPENAI_STREAM.as_bytes()]),
        Some(exact(12, 3, 0, 0))
    );
    let embeddings = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023,-0.0093]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    assert_eq!(
        read(Format::OpenAiChat, false, &[embeddings]),
        Some(exact(8, 0, 0, 0))
    );
    let message = br#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}],"model":"claude-sonnet-4-5","stop_reason":"end_turn","usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":500,"output_tokens":7}}"#;
    assert_eq!(
        read(Format::Anthropic, false, &[message]),
        Some(exact(510, 7, 500, 0))
    );
    assert_eq!(
        read(Format::Anthropic, true, &[ANTHROPIC_STREAM.as_bytes()]),
        Some(exact(2125, 15, 2000, 0))
    );
    let gemini = br#"{
  "candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "STOP"}],
  "usageMetadata": {
    "promptTokenCount": 5,
    "candidatesTokenCount": 2,
    "totalTokenCount": 27,
    "thoughtsTokenCount": 20
  }
}"#;
    assert_eq!(
        read(Format::Gemini, false, &[gemini]),
        Some(exact(5, 22, 0, 20))
    );
    assert_eq!(
        read(Format::Gemini, true, &[GEMINI_STREAM.as_bytes()]),
        Some(exact(8, 43, 4, 40))
    );
    let response = br#"{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":128},"output_tokens":52,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":380}}"#;
    assert_eq!(
        read(Format::Responses, false, &[response]),
        Some(exact(328, 52, 128, 0))
    );
    assert_eq!(
        read(Format::Responses, true, &[RESPONSES_STREAM.as_bytes()]),
        Some(exact(36, 87, 0, 64))
    );
}

#[test]
fn an_answer_without_usage_is_estimated_and_nothing_read_is_nothing() {
    // 12 characters of text: 3 tokens; the request's 400 bytes: 100.
    assert_eq!(
        read(
            Format::OpenAiChat,
            true,
            &[OPENAI_STREAM_UNASKED.as_bytes()]
        ),
        Some(Usage {
            input: 100,
            output: 3,
            estimated: true,
            ..Usage::default()
        })
    );
    // Broken off after the text: Anthropic said its input at the start.
    let cut = ANTHROPIC_STREAM.find("event: content_block_stop").unwrap();
    let mut scanner = Scanner::new(Format::Anthropic, true);
    scanner.push(&ANTHROPIC_STREAM.as_bytes()[..cut], false);
    scanner.finish();
    assert_eq!(
        scanner.usage(400, false),
        Some(Usage {
            input: 2125,
            output: 6, // "Hello! How can I help?": 22 characters
            cached_input: 2000,
            reasoning: 0,
            estimated: true
        })
    );
    assert_eq!(read(Format::OpenAiChat, true, &[]), None);
}

fn stripped(frames: &[&[u8]]) -> (String, Option<Usage>) {
    let mut scanner = Scanner::new(Format::OpenAiChat, true);
    let mut out = BytesMut::new();
    for frame in frames {
        scanner.push_stripped(frame, &mut out);
    }
    out.extend_from_slice(&scanner.finish());
    (
        String::from_utf8_lossy(&out).into_owned(),
        scanner.usage(0, true),
    )
}

#[test]
fn a_stream_asked_for_usage_is_the_stream_unasked_and_its_usage() {
    let (stream, usage) = stripped(&[OPENAI_STREAM.as_bytes()]);
    assert_eq!(stream, OPENAI_STREAM_UNASKED);
    assert_eq!(usage, Some(exact(12, 3, 0, 0)));
    // Spaces after colons, as Python servers write them; `usage` before the rest.
    let spaced = "data: {\"usage\": null, \"id\": \"c\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"Hi\"}}]}\n\ndata: {\"id\": \"c\", \"choices\": [ ], \"usage\": {\"prompt_tokens\": 4, \"completion_tokens\": 1}}\n\ndata: [DONE]\n\n";
    let (stream, usage) = stripped(&[spaced.as_bytes()]);
    assert_eq!(
        stream,
        "data: {\"id\": \"c\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"Hi\"}}]}\n\ndata: [DONE]\n\n"
    );
    assert_eq!(usage, Some(exact(4, 1, 0, 0)));
}

proptest! {
    #[test]
    fn frames_cut_anywhere_read_the_same(cuts in proptest::collection::vec(0usize..1000, 0..6)) {
        for (format, text, want) in [
            (Format::OpenAiChat, OPENAI_STREAM, Some(exact(12, 3, 0, 0))),
            (Format::Anthropic, ANTHROPIC_STREAM, Some(exact(2125, 15, 2000, 0))),
            (Format::Gemini, GEMINI_STREAM, Some(exact(8, 43, 4, 40))),
            (Format::Responses, RESPONSES_STREAM, Some(exact(36, 87, 0, 64))),
        ] {
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % bytes.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut frames = Vec::new();
            let mut start = 0;
            for cut in cuts {
                frames.push(&bytes[start..cut]);
                start = cut;
            }
            frames.push(&bytes[start..]);
            prop_assert_eq!(read(format, true, &frames), want);
            if format != Format::Anthropic {
                // A stream sent as JSON is read by its last usage object, which is whole but
                // for Anthropic's (its input came in the first).
                prop_assert_eq!(read(format, false, &frames), want, "a stream read as JSON");
            }
            if format == Format::OpenAiChat {
                let (stream, usage) = stripped(&frames);
                prop_assert_eq!(stream, OPENAI_STREAM_UNASKED);
                prop_assert_eq!(usage, want);
            }
        }
    }

    #[test]
    fn no_input_makes_reading_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for format in [Format::OpenAiChat, Format::Anthropic, Format::Gemini, Format::Responses] {
            let _ = read(format, true, &[&bytes]);
            let _ = read(format, false, &[&bytes]);
            let _ = stripped(&[&bytes]);
        }
    }
}

/// A usage object the model wrote (a tool call's arguments, before the provider's own) is not
/// read: only the last one of an event or answer is the provider's.
#[test]
fn a_usage_written_by_the_model_is_not_read() {
    let event = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"f\", \"args\": {\"usageMetadata\": {\"cachedContentTokenCount\": 1000000, \"thoughtsTokenCount\": 18446744073709551000}}}}]}, \"finishReason\": \"STOP\"}], \"usageMetadata\": {\"promptTokenCount\": 8, \"candidatesTokenCount\": 3}}\n\n";
    assert_eq!(
        read(Format::Gemini, true, &[event.as_bytes()]),
        Some(exact(8, 3, 0, 0))
    );
    let message = br#"{"content":[{"type":"tool_use","id":"t","name":"f","input":{"usage":{"input_tokens":1,"cache_read_input_tokens":999999}}}],"usage":{"input_tokens":10,"output_tokens":2}}"#;
    assert_eq!(
        read(Format::Anthropic, false, &[message]),
        Some(exact(10, 2, 0, 0))
    );
}

/// The usage is searched for in the answer's end first: one written far before the end is
/// found still, whichever way the search's first stretch cuts it, and a `"usage": null`
/// after it (or the model's own usage before it) changes nothing.
#[test]
fn a_usage_far_from_the_end_is_found() {
    let usage = r#""usage":{"input_tokens":7,"output_tokens":5}"#;
    for after in 0..super::TAIL + 64 {
        let answer = format!(
            r#"{{"output":[{{"arguments":{{"usage":{{"input_tokens":1}}}}}}],{usage},"metadata":{{"usage":null,"pad":"{}"}}}}"#,
            "x".repeat(after)
        );
        assert_eq!(
            read(Format::Responses, false, &[answer.as_bytes()]),
            Some(exact(7, 5, 0, 0)),
            "{after} bytes after"
        );
    }
    // Keys that overlap (malformed, sharing a quote): the later one is the usage.
    let overlapping = br#"{"usage"usage":{"input_tokens":7,"output_tokens":5}}"#;
    assert_eq!(
        read(Format::Responses, false, &[overlapping]),
        Some(exact(7, 5, 0, 0))
    );
}

/// An Anthropic stream that says it failed (an `error` event) and then closes cleanly broke
/// off: its output is estimated from its text, not taken from `message_start`'s placeholder.
#[test]
fn a_stream_without_its_last_event_is_estimated() {
    let cut = ANTHROPIC_STREAM.find("event: content_block_stop").unwrap();
    let failed = format!(
        "{}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n",
        &ANTHROPIC_STREAM[..cut]
    );
    let usage = read(Format::Anthropic, true, &[failed.as_bytes()]).unwrap();
    assert_eq!((usage.output, usage.estimated), (6, true));
}

/// An event longer than a line is kept whole (a `response.completed` carrying a generated
/// image) is still read for its usage, from its end.
#[test]
fn a_very_long_event_is_read_for_its_usage() {
    let image = "A".repeat(3 * 1024 * 1024);
    let event = format!(
        "event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"output\":[{{\"type\":\"image_generation_call\",\"result\":\"{image}\"}}],\"usage\":{{\"input_tokens\":50,\"output_tokens\":1600,\"total_tokens\":1650}}}}}}\n\n"
    );
    let frames: Vec<&[u8]> = event.as_bytes().chunks(64 * 1024).collect();
    assert_eq!(
        read(Format::Responses, true, &frames),
        Some(exact(50, 1600, 0, 0))
    );
}

/// An event read key by key, as it was before one search found them all: the usage (the
/// answer's way, whose search is its own), then the end marker, then each text key.
fn read_key_by_key(format: Format, data: &[u8]) -> Scanner {
    let mut scanner = Scanner::new(format, true);
    scanner.read_last_usage(data);
    let end_marker = memchr::memmem::find(data, format.end_marker().needle());
    if end_marker.is_some() {
        scanner.progress = super::Progress::LastEvent;
    }
    for key in format.text_keys() {
        for at in memchr::memmem::find_iter(data, key) {
            let chars = super::string_chars(&data[at + key.len()..]);
            scanner.text_chars = scanner.text_chars.saturating_add(chars);
        }
    }
    scanner
}

/// Pieces events are made of: every format's keys, JSON's punctuation, strings with escapes,
/// usage objects and values that are not.
const PIECES: &[&str] = &[
    "\"usage\"",
    "\"usageMetadata\"",
    ":",
    "{",
    "}",
    "[",
    "]",
    ",",
    " ",
    "null",
    "7",
    "\"content\":",
    "\"arguments\":",
    "\"reasoning_content\":",
    "\"delta\":",
    "\"text\":",
    "\"partial_json\":",
    "\"thinking\":",
    "[DONE]",
    "\"message_stop\"",
    "response.completed",
    "\"finishReason\"",
    "\"héllo\"",
    "\"a\\\"b\\u00e9\"",
    "\"",
    "\\",
    "{\"prompt_tokens\":3,\"completion_tokens\":4}",
    "{\"input_tokens\":5,\"output_tokens\":6}",
    "{\"promptTokenCount\":8,\"candidatesTokenCount\":9}",
    "usage",
    "content",
];

proptest! {
    /// One search for every key reads an event as a search per key did: the same usage, the
    /// same end, the same text counted, however the keys overlap, repeat or break the JSON.
    #[test]
    fn one_search_reads_an_event_as_one_search_per_key(
        picks in proptest::collection::vec(0..PIECES.len(), 0..40),
    ) {
        let data: String = picks.iter().map(|&i| PIECES[i]).collect();
        for format in [Format::OpenAiChat, Format::Anthropic, Format::Gemini, Format::Responses] {
            let mut scanner = Scanner::new(format, true);
            scanner.data(data.as_bytes());
            let oracle = read_key_by_key(format, data.as_bytes());
            prop_assert_eq!(scanner.fields, oracle.fields, "{:?} {}", format, data);
            prop_assert_eq!(scanner.progress, oracle.progress, "{:?} {}", format, data);
            prop_assert_eq!(scanner.text_chars, oracle.text_chars, "{:?} {}", format, data);
        }
    }
}

proptest! {
    /// Where the CPU has no Teddy, the automaton finds the same keys at the same places.
    #[test]
    fn the_fallback_searcher_finds_what_teddy_finds(
        picks in proptest::collection::vec(0..PIECES.len(), 0..40),
        from in 0usize..400,
    ) {
        let data: String = picks.iter().map(|&i| PIECES[i]).collect();
        let from = from.min(data.len());
        for format in [Format::OpenAiChat, Format::Anthropic, Format::Gemini, Format::Responses] {
            let automaton = crate::format::EventKeys::automaton(format);
            prop_assert_eq!(
                format.event_keys().find(data.as_bytes(), from),
                automaton.find(data.as_bytes(), from)
            );
        }
    }
}
