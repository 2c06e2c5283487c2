//! Golden fixtures for OpenAI chat ↔ Gemini `generateContent`, written from the two API
//! references: a request with every mapped field, the refusals, a response, an error, a stream
//! transcript; and a property: no input makes translation panic.

use bytes::BytesMut;
use llm_tower_core::{SseSplitter, Translation};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::request::to_gemini;
use super::response::{StreamToOpenAi, error_to_openai, response_to_openai};

#[test]
fn a_request_with_every_mapped_field() {
    let openai = json!({
        "model": "gemini-2.0-flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"png\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"answer\":\"an image\"}"}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look up", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": ["END"],
        "response_format": {"type": "json_object"},
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let (body, model, stream, usage_in_stream) = to_gemini(
        openai.to_string().as_bytes(),
        "gemini-main",
        &Translation::default(),
    )
    .unwrap();
    assert_eq!(
        (model.as_str(), stream, usage_in_stream),
        ("gemini-2.0-flash", true, true)
    );
    let gemini: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        gemini,
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]},
                {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": "png"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"answer": "an image"}}}]}
            ],
            "generationConfig": {"temperature": 0.5, "topP": 0.8, "maxOutputTokens": 100, "stopSequences": ["END"], "responseMimeType": "application/json"},
            "tools": [{"functionDeclarations": [{"name": "lookup", "description": "Look up", "parameters": {"type": "object"}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}}
        })
    );
    for (field, value) in [
        ("logprobs", json!(true)),
        ("n", json!(3)),
        ("seed", json!(1)),
    ] {
        let mut request = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]});
        request[field] = value;
        let err = to_gemini(
            request.to_string().as_bytes(),
            "gemini-main",
            &Translation::default(),
        )
        .unwrap_err();
        assert!(
            err.message().contains(&format!("\"{field}\""))
                && err.message().contains("gemini-main"),
            "{}",
            err.message()
        );
    }
    let by_url = json!({"model": "g", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]});
    let err = to_gemini(
        by_url.to_string().as_bytes(),
        "gemini-main",
        &Translation::default(),
    )
    .unwrap_err();
    assert!(
        err.message().contains("messages[0].content"),
        "{}",
        err.message()
    );
}

#[test]
fn a_response_and_an_error_come_back_as_openai_s() {
    let response = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Paris."}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 2, "totalTokenCount": 9},
        "modelVersion": "gemini-2.0-flash", "responseId": "resp-1"
    });
    let completion: Value =
        serde_json::from_slice(&response_to_openai(response.to_string().as_bytes(), 3).unwrap())
            .unwrap();
    assert_eq!(completion["id"], "resp-1");
    assert_eq!(completion["model"], "gemini-2.0-flash");
    assert_eq!(
        completion["choices"][0]["message"],
        json!({"role": "assistant", "content": "Paris."})
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        (
            completion["usage"]["prompt_tokens"].as_u64(),
            completion["usage"]["total_tokens"].as_u64()
        ),
        (Some(7), Some(9))
    );
    let error = br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
    let openai: Value = serde_json::from_slice(&error_to_openai(error).unwrap()).unwrap();
    assert_eq!(openai["error"]["type"], "rate_limit_error");
    assert_eq!(
        openai["error"]["message"],
        "Resource has been exhausted (e.g. check quota)."
    );
}

#[test]
fn a_stream_comes_back_as_chunks_with_one_done() {
    let events = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Par"}]}, "index": 0}], "modelVersion": "gemini-2.0-flash", "responseId": "r-2"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": "is"}}}]}, "index": 0}]}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "is."}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7}}),
    ];
    let mut translation = StreamToOpenAi::new(9, true);
    let mut out = BytesMut::new();
    for event in events {
        for sse in SseSplitter::default().push(format!("data: {event}\r\n\r\n").as_bytes()) {
            translation.event(&sse, &mut out);
        }
    }
    translation.end(&mut out);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n") && text.matches("[DONE]").count() == 1,
        "{text}"
    );
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let said: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(said, "Paris.");
    let call = &chunks[2]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(
        (
            call["function"]["name"].as_str(),
            call["function"]["arguments"].as_str()
        ),
        (Some("lookup"), Some("{\"q\":\"is\"}"))
    );
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
    assert!(chunks.iter().all(|c| c["id"] == "r-2" && c["created"] == 9));
}

proptest! {
    #[test]
    fn no_input_makes_translation_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), text in ".{0,64}") {
        let _ = to_gemini(&bytes, "d", &Translation::default());
        let request = format!(r#"{{"model":"m","messages":[{{"role":"tool","tool_call_id":{text:?},"content":{text:?}}}]}}"#);
        let _ = to_gemini(request.as_bytes(), "d", &Translation::default());
        let _ = response_to_openai(&bytes, 0);
        let _ = error_to_openai(&bytes);
        let mut stream = StreamToOpenAi::new(0, true);
        let mut out = BytesMut::new();
        for event in SseSplitter::default().push(&bytes) {
            stream.event(&event, &mut out);
        }
        stream.end(&mut out);
    }
}

fn gemini_of(request: &Value) -> Value {
    let (body, ..) = to_gemini(
        request.to_string().as_bytes(),
        "gemini-main",
        &Translation::default(),
    )
    .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn reasoning_effort_is_a_budget_on_gemini_2_and_a_level_after() {
    let config = |model: &str, effort: &str| {
        let request = json!({"model": model, "reasoning_effort": effort,
            "messages": [{"role": "user", "content": "hi"}]});
        gemini_of(&request)["generationConfig"]["thinkingConfig"].clone()
    };
    assert_eq!(
        config("gemini-2.5-flash", "medium"),
        json!({"thinkingBudget": 8192, "includeThoughts": true})
    );
    assert_eq!(
        config("gemini-2.5-flash", "none"),
        json!({"thinkingBudget": 0, "includeThoughts": false})
    );
    assert_eq!(
        config("gemini-3-pro-preview", "high"),
        json!({"thinkingLevel": "high", "includeThoughts": true})
    );
    assert_eq!(
        config("gemini-3-pro-preview", "none"),
        json!({"thinkingLevel": "minimal", "includeThoughts": false})
    );
}

#[test]
fn a_json_schema_is_gemini_s_response_json_schema() {
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let request = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "place", "strict": true, "schema": schema}}});
    let config = &gemini_of(&request)["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(config["responseJsonSchema"], schema);
}

#[test]
fn thoughts_come_back_as_reasoning_and_signatures_go_back_with_their_calls() {
    let response = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "The user wants weather.", "thought": true},
            {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2lnbmF0dXJl"}
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 5, "thoughtsTokenCount": 20, "totalTokenCount": 32},
        "modelVersion": "gemini-3-pro-preview", "responseId": "resp-3"
    });
    let completion: Value =
        serde_json::from_slice(&response_to_openai(response.to_string().as_bytes(), 3).unwrap())
            .unwrap();
    let message = &completion["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], "The user wants weather.");
    assert_eq!(message["content"], Value::Null, "no thought in the answer");
    // Reasoning counts in OpenAI's completion tokens, as it does in Gemini's total.
    assert_eq!(
        (
            completion["usage"]["completion_tokens"].as_u64(),
            completion["usage"]["total_tokens"].as_u64()
        ),
        (Some(25), Some(32))
    );
    let id = message["tool_calls"][0]["id"].as_str().unwrap().to_owned();
    let follow_up = json!({"model": "gemini-3-pro-preview", "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        message,
        {"role": "tool", "tool_call_id": id, "content": "{\"c\": 3}"}
    ]});
    let contents = &gemini_of(&follow_up)["contents"];
    assert_eq!(
        contents[1]["parts"][0],
        json!({"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2lnbmF0dXJl"})
    );
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"]["name"],
        "weather"
    );
}
