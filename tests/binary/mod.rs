//! Helpers of the tests that run the `llm-tower-gateway` binary: start it on a file, read
//! its output, signal it, and talk to it.
#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_llm-tower-gateway");

pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("llm-tower-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The output of a running binary, line by line, as it comes.
pub type Log = Box<dyn Iterator<Item = std::io::Result<String>> + Send>;

/// Starts `command` (the binary, or a shell that execs it), waits for its "listening on" line
/// and returns it running, its base URL, and the rest of its output (the log) as it comes,
/// with what it logged before listening (a warning at start) first.
pub fn launch(mut command: Command) -> (Running, String, Log) {
    let child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let mut lines = BufReader::new(running.0.stdout.take().unwrap()).lines();
    let mut before = Vec::new();
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("exited before listening, after: {before:?}"))
            .unwrap();
        match line.strip_prefix("llm-tower gateway listening on ") {
            Some(url) => break url.to_owned(),
            None => before.push(Ok(line)),
        }
    };
    (running, url, Box::new(before.into_iter().chain(lines)))
}

/// Kills the child when the test ends, however it ends.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on `config` (YAML text) and returns it with its base URL.
pub fn start_binary(config: &str) -> (Running, String) {
    let path = temp_file(
        &format!(
            "gw-{}.yaml",
            std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .unwrap()
                .as_nanos()
        ),
        config,
    );
    let mut command = Command::new(BIN);
    command.args(["--config", path.to_str().unwrap()]);
    let (running, url, lines) = launch(command);
    // Keep reading, as a terminal would, until the process exits.
    std::thread::spawn(move || lines.for_each(drop));
    (running, url)
}

pub fn terminate(running: &Running) {
    let status = Command::new("kill")
        .args(["-TERM", &running.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the process to exit, at most `limit`; its exit code.
pub fn wait_exit(running: &mut Running, limit: std::time::Duration) -> Option<i32> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = running.0.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

pub fn post(url: &str, body: &'static str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::post(format!("{url}/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )))
        .unwrap()
}

pub fn client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}
