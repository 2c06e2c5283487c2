//! Shared helpers for the black-box tests: a gateway router served in-process on loopback.
#![allow(dead_code, unreachable_pub)] // each test file uses a different part

pub mod browser;
pub mod responses;
pub mod websocket;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use llm_tower::{Config, CountBased, EndpointConfig, ModelsConfig, RetryPolicy, Secret};
use llm_tower_gateway::{self as gateway, ClientAuth, ClientKey, GatewayConfig};
use llm_tower_mock::MockProvider;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const CHAT: &str = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#;

pub struct Gateway {
    pub addr: SocketAddr,
    /// The admin listener, when the configuration has `admin_listen`.
    pub admin: Option<SocketAddr>,
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// An endpoint with a key `sk-upstream-<id>`, one immediate retry and no per-try or stream
/// idle timeout (paused-time tests must not have timers that fire while a socket is read:
/// the paused clock jumps to the next timer whenever the runtime waits for I/O).
pub fn endpoint(id: &str, base_url: String, priority: u32) -> EndpointConfig {
    EndpointConfig {
        priority,
        api_key: Some(Secret::new(format!("sk-upstream-{id}"))),
        timeout: None,
        stream_idle_timeout: None,
        retry_policy: RetryPolicy::CountBased(CountBased { times: 1 }),
        ..EndpointConfig::new(id, base_url)
    }
}

/// A configuration with the single endpoint `only` in front of `mock`.
pub fn only(mock: &MockProvider) -> Config {
    Config::with_endpoints(vec![endpoint("only", mock.base_url(), 0)])
}

/// `only(mock)` behind client authentication with the keys of `team-a`
/// (`gw-team-a-0123456789abcdef`) and `team-b` (`gw-team-b-0123456789abcdef`).
pub fn with_keys(mock: &MockProvider) -> GatewayConfig {
    let mut config = GatewayConfig::new(only(mock));
    config.client_auth = Some(ClientAuth {
        default_limits: None,
        keys: vec![
            ClientKey {
                name: "team-a".into(),
                key: Secret::new("gw-team-a-0123456789abcdef"),
                limits: None,
            },
            ClientKey {
                name: "team-b".into(),
                key: Secret::new("gw-team-b-0123456789abcdef"),
                limits: None,
            },
        ],
    });
    config
}

/// A base URL of an upstream that answers every request with `reply` (raw bytes, anything
/// but well-formed HTTP if need be), then closes the connection.
pub async fn raw_upstream(reply: &'static [u8]) -> String {
    recording_raw_upstream(reply).await.0
}

/// [`raw_upstream`], and what it was sent: each request, whole.
pub async fn recording_raw_upstream(reply: &'static [u8]) -> (String, Arc<Mutex<Vec<String>>>) {
    scripted_raw_upstream(vec![reply.to_vec()]).await
}

/// An upstream that answers its n-th connection with `replies[n]` (the last one again once
/// they run out), then closes it; and what it was sent: each request, whole.
pub async fn scripted_raw_upstream(replies: Vec<Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let replies: Arc<[Vec<u8>]> = replies.into();
    tokio::spawn(async move {
        let mut served = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = record.clone();
            let reply = replies.clone();
            let turn = served.min(reply.len() - 1);
            served += 1;
            tokio::spawn(async move {
                let request = read_request(&mut socket).await;
                record.lock().unwrap().push(request);
                let _ = socket.write_all(&reply[turn]).await;
            });
        }
    });
    (format!("http://{addr}/v1"), seen)
}

/// One HTTP/1.1 request off `socket`: its head, and as much body as its `content-length` says.
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut request = Vec::new();
    let mut buf = vec![0u8; 16384];
    while let Ok(read @ 1..) = socket.read(&mut buf).await {
        request.extend_from_slice(&buf[..read]);
        let text = String::from_utf8_lossy(&request);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&request).into_owned()
}

/// A raw HTTP/1.1 answer of `status` with a JSON `body`, closing its connection.
pub fn json_reply(status: u16, body: &serde_json::Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A raw HTTP/1.1 `200` event stream of `events` (each `(event name, data)`; no name: none),
/// closing its connection at its end.
pub fn sse_reply(events: &[(Option<&str>, serde_json::Value)]) -> Vec<u8> {
    let mut reply =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n".to_vec();
    for (name, data) in events {
        if let Some(name) = name {
            writeln!(reply, "event: {name}").unwrap();
        }
        write!(reply, "data: {data}\n\n").unwrap();
    }
    reply
}

/// A base URL of an upstream that takes connections and never answers: the kernel accepts
/// them into the listener's backlog, nobody reads. Keep the listener alive meanwhile.
pub fn blackhole() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    (listener, url)
}

/// A base URL whose port refuses connections (bound, then released).
pub fn refusing_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/v1", listener.local_addr().unwrap())
}

pub async fn start(config: Config) -> Gateway {
    start_mounted(config, "/v1").await
}

pub async fn start_mounted(config: Config, mount: &str) -> Gateway {
    let mut config = GatewayConfig::new(config);
    config.mount = mount.to_owned();
    serve(config, None, std::future::pending()).await
}

/// Serves the gateway router for `config` on a free loopback port until `shutdown`.
pub async fn serve(
    mut config: GatewayConfig,
    metrics: Option<PrometheusHandle>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Gateway {
    // Like the endpoints' timeouts, the front door's timers are off: on paused time the clock
    // jumps to the next timer whenever the runtime waits for a socket. The front door's own
    // tests (front_door.rs) run on real time with short timeouts instead.
    config.server.header_read_timeout = None;
    config.server.body_read_timeout = None;
    config.server.idle_timeout = None;
    config.server.send_timeout = None;
    serve_exactly(config, metrics, shutdown).await
}

/// Serves `config` as it is (its server settings included) on free loopback ports: the main
/// listener, and the admin listener when `admin_listen` is set.
pub async fn serve_exactly(
    config: GatewayConfig,
    metrics: Option<PrometheusHandle>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Gateway {
    serve_routes(config, metrics, shutdown, |routes| routes).await
}

/// Like [`serve_exactly`], but serves the main listener's axum router alone, without the
/// server's direct path to the stack: what someone mounting the router elsewhere gets.
pub async fn serve_router_only(config: GatewayConfig) -> Gateway {
    serve_routes(config, None, std::future::pending(), |routes| {
        routes.into_router().into()
    })
    .await
}

async fn serve_routes(
    mut config: GatewayConfig,
    metrics: Option<PrometheusHandle>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    main: impl FnOnce(gateway::Routes) -> gateway::Routes,
) -> Gateway {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.listen = loopback;
    let app = gateway::router(&config, metrics).unwrap();
    let routes = main(app.main);
    let listener = tokio::net::TcpListener::bind(loopback).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = match app.admin {
        Some(router) => {
            let listener = tokio::net::TcpListener::bind(loopback).await.unwrap();
            let admin = listener.local_addr().unwrap();
            let settings = config.server;
            tokio::spawn(async move {
                gateway::serve(listener, router, &settings, std::future::pending()).await
            });
            Some(admin)
        }
        None => None,
    };
    Gateway {
        addr,
        admin,
        client: Client::builder(TokioExecutor::new()).build_http(),
        server: tokio::spawn(async move {
            gateway::serve(listener, routes, &config.server, shutdown).await
        }),
    }
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn chat(&self, body: &str) -> Request<Full<Bytes>> {
        Request::post(self.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    pub async fn post(&self, body: &str) -> Response<Incoming> {
        self.send(self.chat(body)).await
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> Response<Incoming> {
        self.client.request(request).await.unwrap()
    }

    pub async fn json(&self, path: &str) -> Value {
        serde_json::from_str(&self.text(path).await).unwrap()
    }

    pub async fn text(&self, path: &str) -> String {
        let response = self
            .client
            .get(self.url(path).parse().unwrap())
            .await
            .unwrap();
        String::from_utf8(body(response).await.to_vec()).unwrap()
    }

    pub async fn upstream(&self, id: &str) -> Value {
        let all = self.json("/upstreams").await;
        all["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()
            .clone()
    }

    /// Sends raw bytes on a new connection and reads until the server closes it.
    pub async fn raw(&self, request: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }
}

pub async fn body(response: Response<Incoming>) -> Bytes {
    response.into_body().collect().await.unwrap().to_bytes()
}

pub fn header<'a>(response: &'a Response<Incoming>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map_or("", |v| v.to_str().unwrap())
}

/// The response as a client could see it: head (with `Debug`) and body.
pub async fn everything(response: Response<Incoming>) -> String {
    let head = format!("{response:?}");
    head + &String::from_utf8_lossy(&body(response).await)
}

pub async fn error_json(response: Response<Incoming>) -> Value {
    serde_json::from_slice(&body(response).await).unwrap()
}

/// `endpoint(id)` in front of `mock`, serving `models` (`(name, upstream name)`).
pub fn serving(
    id: &str,
    mock: &MockProvider,
    priority: u32,
    models: &[(&str, &str)],
) -> EndpointConfig {
    EndpointConfig {
        models: Some(ModelsConfig(
            models
                .iter()
                .map(|(name, upstream)| ((*name).to_owned(), (*upstream).to_owned()))
                .collect(),
        )),
        ..endpoint(id, mock.base_url(), priority)
    }
}

pub fn chat(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

/// The `model` each request a mock received asked for (`-` for none).
pub fn models_seen(mock: &MockProvider) -> Vec<String> {
    mock.requests()
        .iter()
        .map(|r| {
            r.json().unwrap()["model"]
                .as_str()
                .unwrap_or("-")
                .to_owned()
        })
        .collect()
}

/// A `MakeWriter` that keeps everything written to it.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Keeps this thread's log lines at `level` and above while the guard lives (the tests'
    /// servers run on the test's thread).
    pub fn install(level: tracing::Level) -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The rest of the mock's answer ("Hello from llm-tower-mock."), as an OpenAI-compatible
/// server streams it when asked to continue "Hello from": its own id, model and role chunk.
pub fn the_rest() -> llm_tower_mock::Behavior {
    let chunk = |delta: &str, finish: &str| {
        format!(
            r#"data: {{"id":"chatcmpl-other","object":"chat.completion.chunk","created":5,"model":"other-name","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
        ) + "\n\n"
    };
    let body = chunk(r#"{"role":"assistant","content":""}"#, "null")
        + &chunk(r#"{"content":" llm-tower-mock."}"#, r#""stop""#)
        + "data: [DONE]\n\n";
    llm_tower_mock::Behavior::Status {
        status: 200,
        retry_after: None,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: Some(body),
    }
}

/// `endpoint(id)` in front of `mock`, declaring `continuation: prefill`.
pub fn continuing(id: &str, mock: &MockProvider, priority: u32) -> llm_tower::EndpointConfig {
    llm_tower::EndpointConfig {
        continuation: Some(llm_tower::Continuation::Prefill),
        ..endpoint(id, mock.base_url(), priority)
    }
}

/// Reads a response body to its end or its failure: the bytes that came, and whether it failed.
pub async fn read_to_failure(response: http::Response<hyper::body::Incoming>) -> (String, bool) {
    use http_body_util::BodyExt;
    let mut body = response.into_body();
    let mut text = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(frame)) => text.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
            Some(Err(_)) => return (String::from_utf8(text).unwrap(), true),
            None => return (String::from_utf8(text).unwrap(), false),
        }
    }
}

/// A metrics recorder for the calling test's runtime (current-thread: the gateway's tasks run
/// on it, so a local recorder sees them), and its handle; it records until the guard drops.
pub fn local_recorder() -> (
    metrics_exporter_prometheus::PrometheusHandle,
    metrics::LocalRecorderGuard<'static>,
) {
    let recorder = Box::leak(Box::new(
        llm_tower_gateway::prometheus_builder().build_recorder(),
    ));
    let handle = recorder.handle();
    (handle, metrics::set_default_local_recorder(recorder))
}

pub const SKIPPED: &str = "skipped: no Python with the `openai[realtime]` and `anthropic` packages (set LLM_TOWER_PYTHON, or run .ci/run)";

/// The Python to use, if one with the `openai` (and its Realtime client's `websockets`) and
/// `anthropic` packages is there. One named by
/// `LLM_TOWER_PYTHON` must work: CI installed it, and a broken one is a failure, not a skip.
pub fn python() -> Option<String> {
    let named = std::env::var("LLM_TOWER_PYTHON").ok();
    let python = named.clone().unwrap_or_else(|| "python3".to_owned());
    let found = std::process::Command::new(&python)
        .args(["-c", "import openai, anthropic, websockets"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found || named.is_none(),
        "LLM_TOWER_PYTHON={python} cannot import openai, anthropic and websockets"
    );
    found.then_some(python)
}
