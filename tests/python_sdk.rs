//! The official OpenAI and Anthropic Python SDKs against the gateway, unchanged but for their
//! base URL and key. Optional: they run when a Python with the `openai` and `anthropic`
//! packages is found (`.ci/run` installs one in a venv and names it in `LLM_TOWER_PYTHON`), and
//! say why they skipped when not.

mod common;

use std::process::Command;

use common::{continuing, endpoint, only, recording_raw_upstream, serve_exactly, the_rest};
use llm_tower::{Config, EndpointConfig, ModelsConfig, Secret};
use llm_tower_gateway::{ClientAuth, ClientKey, GatewayConfig};
use llm_tower_mock::{Behavior, MockProvider};

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

const TOOLS_ON_CLAUDE_SCRIPT: &str = r#"
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
tools = [{"type": "function", "function": {"name": "weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
image = "data:image/png;base64,iVBORw0KGgo="
messages = [{"role": "user", "content": [{"type": "text", "text": "Weather where this is?"},
                                         {"type": "image_url", "image_url": {"url": image}}]}]
first = client.chat.completions.create(model="claude-3-5-haiku", messages=messages, tools=tools)
call = first.choices[0].message.tool_calls[0]
print("called:", call.id, call.function.name, call.function.arguments, first.choices[0].finish_reason)
messages.append(first.choices[0].message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 C"})
client.chat.completions.create(model="claude-3-5-haiku", messages=messages, tools=tools)
print("answered")
"#;

/// Runs `script` with the base URL and key as arguments; its standard output, once it
/// succeeded.
async fn run(python: String, script: &'static str, base_url: String) -> String {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", script, &base_url, CLIENT_KEY])
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
        keys: vec![ClientKey {
            name: "python".into(),
            key: Secret::new(CLIENT_KEY),
        }],
    });
    config
}

const SKIPPED: &str = "skipped: no Python with the `openai` and `anthropic` packages (set LLM_TOWER_PYTHON, or run .ci/run)";

/// The Python to use, if one with the `openai` and `anthropic` packages is there. One named by
/// `LLM_TOWER_PYTHON` must work: CI installed it, and a broken one is a failure, not a skip.
fn python() -> Option<String> {
    let named = std::env::var("LLM_TOWER_PYTHON").ok();
    let python = named.clone().unwrap_or_else(|| "python3".to_owned());
    let found = Command::new(&python)
        .args(["-c", "import openai, anthropic"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found || named.is_none(),
        "LLM_TOWER_PYTHON={python} cannot import openai and anthropic"
    );
    found.then_some(python)
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

/// The official OpenAI SDK on an Anthropic deployment, a tool call's round trip and an image:
/// the SDK reads Claude's `tool_use` as a tool call, and its answer goes back to Claude as a
/// `tool_result` naming the same id, with the image sent as Anthropic's base64 source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_calls_tools_on_an_anthropic_deployment() {
    let Some(python) = python() else {
        println!("{SKIPPED}");
        return;
    };
    let message = serde_json::json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 30, "output_tokens": 12}
    })
    .to_string();
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{message}",
        message.len()
    );
    let (url, seen) =
        recording_raw_upstream(Box::leak(reply.into_bytes().into_boxed_slice())).await;
    let claude = EndpointConfig {
        provider: llm_tower::ProviderName::Anthropic,
        ..endpoint("claude", url, 0)
    };
    let gw = serve_exactly(
        behind_key(Config::with_endpoints(vec![claude])),
        None,
        std::future::pending(),
    )
    .await;
    let stdout = run(python, TOOLS_ON_CLAUDE_SCRIPT, gw.url("/v1")).await;
    assert_eq!(
        stdout,
        "called: toolu_01 weather {\"city\":\"Paris\"} tool_calls\nanswered\n"
    );
    let seen = seen.lock().unwrap().clone();
    let body = |i: usize| -> serde_json::Value {
        serde_json::from_str(seen[i].split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    let first = body(0);
    assert_eq!(
        first["messages"][0]["content"][1],
        serde_json::json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(first["tools"][0]["name"], "weather");
    let second = body(1);
    let turns = second["messages"].as_array().unwrap();
    assert_eq!(turns[1]["content"][0]["type"], "tool_use");
    assert_eq!(
        turns[2]["content"][0],
        serde_json::json!({"type": "tool_result", "tool_use_id": "toolu_01", "content": "18 C"})
    );
}
