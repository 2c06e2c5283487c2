//! The official OpenAI and Anthropic Python SDKs against the gateway, unchanged but for their
//! base URL and key. Optional: they run when a Python with the `openai` and `anthropic`
//! packages is found (`.ci/run` installs one in a venv and names it in `LLM_TOWER_PYTHON`), and
//! say why they skipped when not.
//!
//! Longer than the 500 lines a file should keep to: each test's Python script sits here beside
//! the test that runs it, so that what the SDK did and what the test expects of it read
//! together.

mod common;

use std::process::Command;

use common::{
    SKIPPED, continuing, endpoint, json_reply, only, python, scripted_raw_upstream, serve_exactly,
    sse_reply, the_rest,
};
use llm_tower::{Config, EndpointConfig, ModelsConfig, Secret};
use llm_tower_gateway::{ClientAuth, ClientKey, GatewayConfig};
use llm_tower_mock::{Behavior, MockProvider};
use serde_json::json;

const CLIENT_KEY: &str = "gw-python-0123456789abcdef";

const SCRIPT: &str = r#"
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
reply = client.chat.completions.create(
    model="mock-model", messages=[{"role": "user", "content": "hi"}]
)
print("reply:", reply.choices[0].message.role)
chunks = client.chat.completions.create(
    model="mock-model", messages=[{"role": "user", "content": "hi"}], stream=True
)
print("chunks:", sum(1 for _ in chunks))
try:
    openai.OpenAI(base_url=sys.argv[1], api_key="not-a-key", max_retries=0).models.list()
except openai.AuthenticationError as err:
    print("refused:", err.status_code)
"#;

const MODELS_SCRIPT: &str = r#"
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
print("listed:", ",".join(model.id for model in client.models.list()))
print("retrieved:", client.models.retrieve("gpt-4o-mini").id)
reply = client.chat.completions.create(
    model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
)
print("reply:", reply.choices[0].message.role)
try:
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
except openai.NotFoundError as err:
    print("unknown:", err.status_code, err.code)
"#;

const CUT_STREAM_SCRIPT: &str = r#"
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
text = ""
try:
    for chunk in client.chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        text += chunk.choices[0].delta.content or ""
    print("finished:", repr(text))
except openai.APIError as err:
    print("raised:", type(err).__name__, repr(text), err.message)
"#;

const CONTINUED_STREAM_SCRIPT: &str = r#"
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
stream = client.chat.completions.create(
    model="mock-model", messages=[{"role": "user", "content": "hi"}], stream=True
)
print("text:", repr("".join(chunk.choices[0].delta.content or "" for chunk in stream)))
"#;

const ANTHROPIC_SCRIPT: &str = r#"
import sys
import anthropic

client = anthropic.Anthropic(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
ask = dict(model="mock-model", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
try:
    client.messages.create(**ask)
except anthropic.NotFoundError as err:
    print("not found:", err.status_code, err.body["error"]["type"])
message = client.messages.create(**ask)
print("message:", message.content[0].text, message.stop_reason)
with client.messages.stream(**ask) as stream:
    print("streamed:", "".join(stream.text_stream), stream.get_final_message().stop_reason)
"#;

/// The OpenAI SDK's chat on a deployment of another provider, model `sys.argv[3]`: a tool call
/// with reasoning and an image, its round trip, a stream with usage, and a refusal.
const OPENAI_ON_ANOTHER_PROVIDER_SCRIPT: &str = r#"
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
model = sys.argv[3]
tools = [{"type": "function", "function": {"name": "weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
image = "data:image/png;base64,iVBORw0KGgo="
messages = [{"role": "user", "content": [{"type": "text", "text": "Weather where this is?"},
                                         {"type": "image_url", "image_url": {"url": image}}]}]
first = client.chat.completions.create(model=model, messages=messages, tools=tools,
                                       reasoning_effort="low")
reply = first.choices[0].message
call = reply.tool_calls[0]
print("called:", call.function.name, call.function.arguments, first.choices[0].finish_reason,
      reply.reasoning_content)
messages.append(reply.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 C"})
answer = client.chat.completions.create(model=model, messages=messages, tools=tools)
print("answered:", answer.choices[0].message.content, answer.usage.completion_tokens)
text, usage = "", None
for chunk in client.chat.completions.create(model=model, messages=messages, stream=True,
                                            stream_options={"include_usage": True}):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage.completion_tokens
print("streamed:", text, usage)
try:
    client.chat.completions.create(model=model, messages=messages)
except openai.APIStatusError as err:
    print("refused:", err.status_code, type(err).__name__, err.body["message"])
"#;

const ANTHROPIC_TOOLS_SCRIPT: &str = r#"
import sys
import anthropic

client = anthropic.Anthropic(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
tools = [{"name": "weather", "description": "Weather of a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
messages = [{"role": "user", "content": [{"type": "text", "text": "Weather where this is?"},
                                         {"type": "image", "source": image}]}]
first = client.messages.create(model="gpt-4o", max_tokens=2048, messages=messages, tools=tools,
                               thinking={"type": "enabled", "budget_tokens": 1024})
use = next(b for b in first.content if b.type == "tool_use")
thought = next(b for b in first.content if b.type == "thinking")
print("called:", use.id, use.name, use.input, first.stop_reason, thought.thinking)
messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                              "content": "3 C"}]})
second = client.messages.create(model="gpt-4o", max_tokens=2048, messages=messages, tools=tools)
print("answered:", second.content[0].text, second.usage.output_tokens)
"#;

const USAGE_SCRIPT: &str = r#"
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
ask = dict(model="mock-model", messages=[{"role": "user", "content": "hi"}], stream=True)
chunks = list(client.chat.completions.create(**ask))
print("unasked:", len(chunks), sum(1 for c in chunks if c.usage is not None))
chunks = list(client.chat.completions.create(**ask, stream_options={"include_usage": True}))
usage = [c.usage for c in chunks if c.usage is not None]
print("asked:", len(chunks), len(usage), usage[0].prompt_tokens, usage[0].completion_tokens)
"#;

const LIMITS_SCRIPT: &str = r#"
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
ask = dict(model="mock-model", messages=[{"role": "user", "content": "hi"}])
raw = client.chat.completions.with_raw_response.create(**ask)
print("paced:", raw.headers["x-ratelimit-limit-requests"], raw.headers["x-ratelimit-remaining-requests"], raw.parse().choices[0].message.role)
try:
    client.chat.completions.create(**ask)
except openai.RateLimitError as err:
    print("limited:", err.status_code, err.code, err.response.headers["retry-after"])
"#;

const RESPONSES_SCRIPT: &str = r#"
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
reply = client.responses.create(model="gpt-4o", input="Say hello.")
print("text:", reply.output_text, reply.usage.input_tokens, reply.usage.output_tokens)
stream = client.responses.create(model="gpt-4o", input="Say hello.", stream=True)
print("events:", ",".join(event.type for event in stream))
"#;

/// Runs `script` with the base URL and key as arguments; its standard output, once it
/// succeeded.
async fn run(python: String, script: &'static str, base_url: String) -> String {
    run_with(python, script, base_url, &[]).await
}

/// [`run`], with `more` arguments after the key.
async fn run_with(python: String, script: &'static str, base_url: String, more: &[&str]) -> String {
    let more: Vec<String> = more.iter().map(|m| (*m).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", script, &base_url, CLIENT_KEY])
            .args(more)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// `config` behind the client key the scripts use.
fn behind_key(config: Config) -> GatewayConfig {
    let mut config = GatewayConfig::new(config);
    config.client_auth = Some(ClientAuth {
        default_limits: None,
        keys: vec![ClientKey {
            name: "python".into(),
            key: Secret::new(CLIENT_KEY),
            limits: None,
        }],
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_unchanged() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let mock = MockProvider::start().await.unwrap();
    let gw = serve_exactly(behind_key(only(&mock)), None, std::future::pending()).await;
    let stdout = run(python, SCRIPT, gw.url("/v1")).await;
    assert!(stdout.contains("reply: assistant"), "{stdout}");
    assert!(stdout.contains("chunks: "), "{stdout}");
    assert!(!stdout.contains("chunks: 0"), "{stdout}");
    assert!(stdout.contains("refused: 401"), "{stdout}");
    // What the SDK sent as its key never reached the upstream.
    for seen in mock.requests() {
        assert!(!format!("{:?}", seen.headers).contains(CLIENT_KEY));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_lists_and_uses_the_configured_models() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let mock = MockProvider::start().await.unwrap();
    let azure = EndpointConfig {
        models: Some(ModelsConfig(vec![
            ("gpt-4o".into(), "gpt4o-prod".into()),
            ("gpt-4o-mini".into(), "gpt-4o-mini".into()),
        ])),
        ..EndpointConfig::new("azure", mock.base_url())
    };
    let config = behind_key(Config::with_endpoints(vec![azure]));
    let gw = serve_exactly(config, None, std::future::pending()).await;
    let stdout = run(python, MODELS_SCRIPT, gw.url("/v1")).await;
    assert!(stdout.contains("listed: gpt-4o,gpt-4o-mini\n"), "{stdout}");
    assert!(stdout.contains("retrieved: gpt-4o-mini\n"), "{stdout}");
    assert!(stdout.contains("reply: assistant"), "{stdout}");
    assert!(stdout.contains("unknown: 404 model_not_found"), "{stdout}");
    let seen = mock.requests();
    assert_eq!(seen.len(), 1, "models were listed by the gateway itself");
    assert_eq!(seen[0].json().unwrap()["model"], "gpt4o-prod");
}

/// A stream cut after its first chunks, with nowhere to continue: the SDK raises, with the
/// gateway's word that the answer is incomplete, instead of returning the text so far as if
/// it were the whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_raises_on_a_cut_stream() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::ResetAfterChunks(2));
    let gw = serve_exactly(behind_key(only(&mock)), None, std::future::pending()).await;
    let stdout = run(python, CUT_STREAM_SCRIPT, gw.url("/v1")).await;
    assert!(
        stdout.starts_with("raised: APIError 'Hello from'"),
        "{stdout}"
    );
    assert!(stdout.contains("incomplete"), "{stdout}");
}

/// A stream cut after its first chunks and continued on a `continuation: prefill` deployment:
/// the SDK reads one whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_reads_a_continued_stream_whole() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    a.push(Behavior::ResetAfterChunks(2));
    b.push(the_rest());
    let config =
        Config::with_endpoints(vec![endpoint("a", a.base_url(), 0), continuing("b", &b, 1)]);
    let gw = serve_exactly(behind_key(config), None, std::future::pending()).await;
    let stdout = run(python, CONTINUED_STREAM_SCRIPT, gw.url("/v1")).await;
    assert_eq!(stdout, "text: 'Hello from llm-tower-mock.'\n");
}

/// The official Anthropic SDK against an OpenAI-compatible deployment: the gateway translates
/// both ways, and the SDK reads messages, streams and errors as Anthropic's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_python_sdk_works_on_an_openai_deployment() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::status(404));
    let gw = serve_exactly(behind_key(only(&mock)), None, std::future::pending()).await;
    let stdout = run(python, ANTHROPIC_SCRIPT, gw.url("")).await;
    assert!(
        stdout.contains("not found: 404 not_found_error\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("message: Hello from llm-tower-mock. end_turn\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("streamed: Hello from llm-tower-mock. end_turn\n"),
        "{stdout}"
    );
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.uri.path() == "/v1/chat/completions")
    );
}

/// What a request an upstream was sent says: its request line, and its body as JSON.
fn request_of(seen: &str) -> (String, serde_json::Value) {
    let (head, body) = seen.split_once("\r\n\r\n").unwrap();
    let line = head.lines().next().unwrap().to_owned();
    (line, serde_json::from_str(body).unwrap())
}

/// The official OpenAI SDK on a deployment of `provider` (model `model`) answering `replies` in
/// turn: what the script printed, and the requests the deployment was sent.
async fn openai_sdk_on(
    python: String,
    provider: llm_tower::ProviderName,
    model: &str,
    replies: Vec<Vec<u8>>,
) -> (String, Vec<(String, serde_json::Value)>) {
    let (url, seen) = scripted_raw_upstream(replies).await;
    let deployment = EndpointConfig {
        provider,
        ..endpoint("other", url, 0)
    };
    let gw = serve_exactly(
        behind_key(Config::with_endpoints(vec![deployment])),
        None,
        std::future::pending(),
    )
    .await;
    let stdout = run_with(
        python,
        OPENAI_ON_ANOTHER_PROVIDER_SCRIPT,
        gw.url("/v1"),
        &[model],
    )
    .await;
    let seen = seen.lock().unwrap().iter().map(|r| request_of(r)).collect();
    (stdout, seen)
}

/// The official OpenAI SDK on an Anthropic deployment: Claude's thinking and `tool_use` read
/// as reasoning and a tool call, whose answer goes back as a `tool_result` with the same id
/// after Claude's signed thinking block; the image as a base64 source; a stream with usage;
/// Claude's rate-limit error as OpenAI's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_calls_tools_on_an_anthropic_deployment() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let thinking =
        json!({"type": "thinking", "thinking": "Paris, by the look of it.", "signature": "sig-1"});
    let message = |content: serde_json::Value, stop: &str, output: u64| {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": 30, "output_tokens": output}})
    };
    let replies = vec![
        json_reply(
            200,
            &message(
                json!([thinking, {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Paris"}}]),
                "tool_use",
                12,
            ),
        ),
        json_reply(
            200,
            &message(
                json!([{"type": "text", "text": "18 C in Paris."}]),
                "end_turn",
                6,
            ),
        ),
        sse_reply(&[
            (
                Some("message_start"),
                json!({"type": "message_start", "message": message(json!([]), "end_turn", 1)}),
            ),
            (
                Some("content_block_start"),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "18 C"}}),
            ),
            (
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " in Paris."}}),
            ),
            (
                Some("content_block_stop"),
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                Some("message_delta"),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 6}}),
            ),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ]),
        json_reply(
            429,
            &json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}}),
        ),
    ];
    let (stdout, seen) = openai_sdk_on(
        python,
        llm_tower::ProviderName::Anthropic,
        "claude-3-5-haiku",
        replies,
    )
    .await;
    assert_eq!(
        stdout,
        "called: weather {\"city\":\"Paris\"} tool_calls Paris, by the look of it.\n\
         answered: 18 C in Paris. 6\n\
         streamed: 18 C in Paris. 6\n\
         refused: 429 RateLimitError Number of request tokens has exceeded your per-minute rate limit\n"
    );
    let (line, first) = &seen[0];
    assert!(line.starts_with("POST /v1/messages "), "{line}");
    assert_eq!(
        first["messages"][0]["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(first["tools"][0]["name"], "weather");
    assert_eq!(
        first["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    let turns = seen[1].1["messages"].as_array().unwrap().clone();
    assert_eq!(turns[1]["content"][0], thinking, "signed, as it came");
    assert_eq!(turns[1]["content"][1]["type"], "tool_use");
    assert_eq!(
        turns[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_01", "content": "18 C"})
    );
    assert_eq!(seen[2].1["stream"], true);
}

/// The official OpenAI SDK on a Gemini deployment: the same conversation, Gemini's thought
/// summary read as reasoning, its call's thought signature carried back, the stream from
/// `streamGenerateContent?alt=sse`, Gemini's quota error as OpenAI's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_calls_tools_on_a_gemini_deployment() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let response = |parts: serde_json::Value, output: u64| {
        json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": output, "totalTokenCount": 30 + output},
            "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"})
    };
    let call = json!({"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"});
    let replies = vec![
        json_reply(
            200,
            &response(
                json!([{"text": "Paris, by the look of it.", "thought": true}, call]),
                12,
            ),
        ),
        json_reply(200, &response(json!([{"text": "18 C in Paris."}]), 6)),
        sse_reply(&[
            (
                None,
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "18 C"}]}, "index": 0}], "modelVersion": "gemini-2.5-flash", "responseId": "resp-2"}),
            ),
            (None, response(json!([{"text": " in Paris."}]), 6)),
        ]),
        json_reply(
            429,
            &json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}),
        ),
    ];
    let (stdout, seen) = openai_sdk_on(
        python,
        llm_tower::ProviderName::Gemini,
        "gemini-2.5-flash",
        replies,
    )
    .await;
    assert_eq!(
        stdout,
        "called: weather {\"city\":\"Paris\"} tool_calls Paris, by the look of it.\n\
         answered: 18 C in Paris. 6\n\
         streamed: 18 C in Paris. 6\n\
         refused: 429 RateLimitError Resource has been exhausted (e.g. check quota).\n"
    );
    let (line, first) = &seen[0];
    assert!(
        line.starts_with("POST /v1/models/gemini-2.5-flash:generateContent "),
        "{line}"
    );
    assert_eq!(
        first["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        first["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    let turns = seen[1].1["contents"].as_array().unwrap().clone();
    assert_eq!(
        turns[1]["parts"][0], call,
        "the signature back with its call"
    );
    assert_eq!(
        turns[2]["parts"][0]["functionResponse"],
        json!({"name": "weather", "response": {"content": "18 C"}})
    );
    assert!(
        seen[2]
            .0
            .starts_with("POST /v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse "),
        "{}",
        seen[2].0
    );
}

/// The official Anthropic SDK on an OpenAI-compatible deployment with tools, an image and
/// thinking: the server's tool call and reasoning read as `tool_use` and `thinking` blocks,
/// the image sent as a data URL, the budget as a `reasoning_effort`, the tool result back
/// under its call's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_python_sdk_calls_tools_on_an_openai_deployment() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let completion = |message: serde_json::Value, finish: &str| {
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37}})
    };
    let replies = vec![
        json_reply(
            200,
            &completion(
                json!({"role": "assistant", "content": null, "reasoning_content": "Oslo, it seems.",
                    "tool_calls": [{"id": "call_7", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]}),
                "tool_calls",
            ),
        ),
        json_reply(
            200,
            &completion(
                json!({"role": "assistant", "content": "3 C in Oslo."}),
                "stop",
            ),
        ),
    ];
    let (url, seen) = scripted_raw_upstream(replies).await;
    let gw = serve_exactly(
        behind_key(Config::with_endpoints(vec![endpoint("gpt", url, 0)])),
        None,
        std::future::pending(),
    )
    .await;
    let stdout = run(python, ANTHROPIC_TOOLS_SCRIPT, gw.url("")).await;
    assert_eq!(
        stdout,
        "called: call_7 weather {'city': 'Oslo'} tool_use Oslo, it seems.\nanswered: 3 C in Oslo. 7\n"
    );
    let seen: Vec<_> = seen.lock().unwrap().iter().map(|r| request_of(r)).collect();
    let first = &seen[0].1;
    assert_eq!(
        first["messages"][0]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
    );
    assert_eq!(first["reasoning_effort"], "low");
    assert_eq!(first["tools"][0]["function"]["name"], "weather");
    let turns = seen[1].1["messages"].as_array().unwrap().clone();
    assert_eq!(turns[1]["tool_calls"][0]["id"], "call_7");
    assert_eq!(
        turns[2],
        json!({"role": "tool", "tool_call_id": "call_7", "content": "3 C"})
    );
}

/// The official Anthropic SDK on a Gemini deployment (translated through OpenAI's shape): an
/// error, a message and a stream read as Anthropic's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_python_sdk_works_on_a_gemini_deployment() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let text = |text: &str, finish: Option<&str>| {
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish, "index": 0}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8},
            "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"})
    };
    let replies = vec![
        json_reply(
            404,
            &json!({"error": {"code": 404, "message": "models/mock-model is not found", "status": "NOT_FOUND"}}),
        ),
        json_reply(200, &text("Hello from llm-tower-mock.", Some("STOP"))),
        sse_reply(&[
            (None, text("Hello from ", None)),
            (None, text("llm-tower-mock.", Some("STOP"))),
        ]),
    ];
    let (url, seen) = scripted_raw_upstream(replies).await;
    let gemini = EndpointConfig {
        provider: llm_tower::ProviderName::Gemini,
        ..endpoint("gemini", url, 0)
    };
    let gw = serve_exactly(
        behind_key(Config::with_endpoints(vec![gemini])),
        None,
        std::future::pending(),
    )
    .await;
    let stdout = run(python, ANTHROPIC_SCRIPT, gw.url("")).await;
    assert_eq!(
        stdout,
        "not found: 404 not_found_error\n\
         message: Hello from llm-tower-mock. end_turn\n\
         streamed: Hello from llm-tower-mock. end_turn\n"
    );
    let seen: Vec<_> = seen.lock().unwrap().iter().map(|r| request_of(r)).collect();
    assert!(
        seen[1]
            .0
            .starts_with("POST /v1/models/mock-model:generateContent "),
        "{}",
        seen[1].0
    );
    assert_eq!(
        seen[1].1["generationConfig"]["maxOutputTokens"], 64,
        "{:?}",
        seen[1].1
    );
    assert!(seen[2].0.contains(":streamGenerateContent?alt=sse "));
}

/// The official OpenAI SDK streaming through a gateway that counts tokens: without
/// `include_usage` it sees no usage chunk (the gateway asked for one, and took it out), with
/// it exactly one; the metrics count the upstream's tokens of both.
#[tokio::test]
async fn the_openai_python_sdk_sees_usage_only_when_it_asks() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let (handle, _guard) = common::local_recorder();
    let mock = MockProvider::start().await.unwrap();
    let gw = serve_exactly(
        behind_key(only(&mock)),
        Some(handle.clone()),
        std::future::pending(),
    )
    .await;
    let stdout = run(python, USAGE_SCRIPT, gw.url("/v1")).await;
    assert_eq!(stdout, "unasked: 3 0\nasked: 4 1 9 6\n");
    let metrics = handle.render();
    for (kind, count) in [("input", 18), ("output", 12)] {
        let line = format!(
            r#"llm_tower_tokens_total{{client="python",model="mock-model",deployment="only",kind="{kind}"}} {count}"#
        );
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
}

/// The official OpenAI SDK against a key held to one request a minute: the rate-limit headers
/// on the answer it can read, then `RateLimitError` with OpenAI's code and a `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_reads_the_key_s_limits() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let mock = MockProvider::start().await.unwrap();
    let mut config = behind_key(only(&mock));
    config.client_auth.as_mut().unwrap().keys[0].limits = Some(llm_tower::limits::Limits {
        rpm: Some(1),
        ..llm_tower::limits::Limits::default()
    });
    let gw = serve_exactly(config, None, std::future::pending()).await;
    let stdout = run(python, LIMITS_SCRIPT, gw.url("/v1")).await;
    // A minute less the moments between the two requests, rounded up.
    let wait = stdout
        .strip_prefix("paced: 1 0 assistant\nlimited: 429 rate_limit_exceeded ")
        .and_then(|rest| rest.trim_end().parse::<u64>().ok());
    assert!(matches!(wait, Some(59 | 60)), "{stdout}");
}

/// The official OpenAI SDK's Responses API through the gateway, streamed and not: its
/// `output_text` and usage read, every event of the stream parsed, the tokens counted.
#[tokio::test]
async fn the_openai_python_sdk_uses_the_responses_api() {
    use common::responses::{completed, first_events, response};
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let (handle, _guard) = common::local_recorder();
    let mut events = first_events("gpt-4o-2024-08-06");
    events.push(completed("gpt-4o-2024-08-06"));
    let (url, seen) = scripted_raw_upstream(vec![
        common::json_reply(200, &response("gpt-4o-2024-08-06")),
        sse_reply(&events),
    ])
    .await;
    let config = Config::with_endpoints(vec![endpoint("openai", url, 0)]);
    let gw = serve_exactly(
        behind_key(config),
        Some(handle.clone()),
        std::future::pending(),
    )
    .await;
    let stdout = run(python, RESPONSES_SCRIPT, gw.url("/v1")).await;
    assert_eq!(
        stdout,
        "text: Hello there. 36 87\n\
         events: response.created,response.output_text.delta,response.completed\n"
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|r| r.starts_with("POST /v1/responses "))
    );
    let metrics = handle.render();
    for (kind, count) in [("input", 72), ("output", 174)] {
        let line = format!(
            r#"llm_tower_tokens_total{{client="python",model="gpt-4o",deployment="openai",kind="{kind}"}} {count}"#
        );
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
}
