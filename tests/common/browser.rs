//! A real headless Chromium, driven through chromedriver (WebDriver), for the tests that
//! need a browser's own behaviour (the operator's page, what a web page may do). Starting it
//! fails, saying why, without `chromium` and `chromedriver`: the tests then skip.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

fn find(env: &str, names: &[&str]) -> Option<String> {
    if let Ok(path) = std::env::var(env) {
        return Some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .map(|found| found.to_string_lossy().into_owned())
}

impl Browser {
    pub async fn start() -> Result<Self, String> {
        let chromium = find(
            "LLM_TOWER_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .ok_or(
            "no chromium on PATH (apt-get install chromium, or name it in LLM_TOWER_CHROMIUM)",
        )?;
        let chromedriver = find("LLM_TOWER_CHROMEDRIVER", &["chromedriver"])
            .ok_or("no chromedriver on PATH (apt-get install chromium-driver, or name it in LLM_TOWER_CHROMEDRIVER)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("chromedriver did not start: {e}"))?;
        // It says when it listens; the rest of its output is read and dropped.
        let stdout = driver.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let ready = lines
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.contains("started successfully"));
            std::thread::spawn(move || lines.for_each(drop));
            ready
        });
        if !tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .is_ok_and(|r| r.unwrap_or(false))
        {
            let _ = driver.kill();
            return Err("chromedriver did not say it started".into());
        }
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client,
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--no-first-run", "--disable-extensions"]
            }
        }}});
        let session = browser.call("POST", "/session", capabilities).await?;
        session["sessionId"]
            .as_str()
            .ok_or(format!("no session: {session}"))?
            .clone_into(&mut browser.session);
        Ok(browser)
    }

    pub async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let answer: Value =
            serde_json::from_slice(&body_of(response).await).map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("WebDriver {method} {path}: {status} {answer}"));
        }
        Ok(answer["value"].clone())
    }

    pub async fn open(&self, url: &str) {
        let path = format!("/session/{}/url", self.session);
        self.call("POST", &path, json!({ "url": url }))
            .await
            .unwrap();
    }

    /// Runs `script` in the page; what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        let path = format!("/session/{}/execute/sync", self.session);
        self.call("POST", &path, json!({ "script": script, "args": [] }))
            .await
            .unwrap()
    }
}

async fn body_of(response: http::Response<hyper::body::Incoming>) -> Bytes {
    use http_body_util::BodyExt;
    response.into_body().collect().await.unwrap().to_bytes()
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session is ended first, which quits its browser: killing the driver alone
        // leaves Chromium's processes running, orphaned. A drop cannot await, so this one
        // request is plain blocking HTTP.
        if !self.session.is_empty() {
            let _ = quit(&self.base, &self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/{session}` on the driver at `base`, waiting for its answer (at most 10 s).
fn quit(base: &str, session: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(())
}
