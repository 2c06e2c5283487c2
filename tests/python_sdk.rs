//! The official OpenAI Python SDK against the gateway, unchanged but for its base URL and
//! key. Optional: it runs when a Python with the `openai` package is found (`.ci/run`
//! installs one in a venv and names it in `LLM_TOWER_PYTHON`), and says why it skipped when
//! not.

mod common;

use std::process::Command;

use common::{only, serve_exactly};
use llm_tower::Secret;
use llm_tower_gateway::{ClientAuth, ClientKey, GatewayConfig};
use llm_tower_mock::MockProvider;

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

/// The Python to use, if one with the `openai` package is there. One named by
/// `LLM_TOWER_PYTHON` must work: CI installed it, and a broken one is a failure, not a skip.
fn python() -> Option<String> {
    let named = std::env::var("LLM_TOWER_PYTHON").ok();
    let python = named.clone().unwrap_or_else(|| "python3".to_owned());
    let found = Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found || named.is_none(),
        "LLM_TOWER_PYTHON={python} cannot import openai"
    );
    found.then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_unchanged() {
    let Some(python) = python() else {
        println!(
            "skipped: no Python with the `openai` package (set LLM_TOWER_PYTHON, or run .ci/run)"
        );
        return;
    };
    let mock = MockProvider::start().await.unwrap();
    let mut config = GatewayConfig::new(only(&mock));
    config.client_auth = Some(ClientAuth {
        keys: vec![ClientKey {
            name: "python".into(),
            key: Secret::new(CLIENT_KEY),
        }],
    });
    let gw = serve_exactly(config, None, std::future::pending()).await;
    let base_url = gw.url("/v1");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", SCRIPT, &base_url, CLIENT_KEY])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("reply: assistant"), "{stdout}");
    assert!(stdout.contains("chunks: "), "{stdout}");
    assert!(!stdout.contains("chunks: 0"), "{stdout}");
    assert!(stdout.contains("refused: 401"), "{stdout}");
    // What the SDK sent as its key never reached the upstream.
    for seen in mock.requests() {
        assert!(!format!("{:?}", seen.headers).contains(CLIENT_KEY));
    }
}
