//! The `llm-tower-gateway` binary as an operator runs it: `--check`, `--version`, and the
//! built-in demo served on a free loopback port.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_llm-tower-gateway");

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("llm-tower-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_a_good_file_and_names_the_field_of_a_bad_one() {
    let good = temp_file(
        "good.yaml",
        "listen: 127.0.0.1:0\nendpoints:\n  - id: a\n    base_url: http://127.0.0.1:9/v1\n",
    );
    let output = Command::new(BIN)
        .args(["--config", good.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    let bad = temp_file(
        "bad.toml",
        "[[endpoints]]\nid = \"a\"\nbase_url = \"http://h\"\nweight = 0\n",
    );
    let output = Command::new(BIN)
        .args(["--check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("endpoint `a`: weight"), "{stderr}");

    // Every v1 file keeps working.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway.yaml");
    let output = Command::new(BIN)
        .args(["--check", "--config", example])
        .env("OPENAI_API_KEY", "sk-check")
        .env("AZURE_OPENAI_API_KEY", "check")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn version_help_and_bad_arguments() {
    let output = Command::new(BIN).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("llm-tower-gateway {}", env!("CARGO_PKG_VERSION"))
    );
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("--check"));
    let output = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// Kills the child when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn without_a_config_it_serves_the_demo() {
    let child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let mut lines = BufReader::new(running.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("llm-tower gateway listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    let printed: Vec<String> = lines.by_ref().take(6).map(Result::unwrap).collect();
    assert!(
        printed.iter().any(|l| l.contains("curl -s http://")),
        "{printed:?}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use http_body_util::BodyExt;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let request = http::Request::post(format!("{url}/chat/completions"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#,
            )))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-llm-tower-endpoint"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["object"], "chat.completion");
    });
}
