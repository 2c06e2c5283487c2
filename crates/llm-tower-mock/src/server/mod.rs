//! The server: the public handle, its builder, the accept loop and per-connection tasks.
//! What one request gets is in `handle.rs`.

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri, Version};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::assets::Assets;
use crate::behavior::{Behavior, Plan};
use crate::body::stopped;
use crate::lock;
use handle::handle;

mod handle;

/// How long [`MockProvider::shutdown`] lets a connection finish its current exchange.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
const REQUEST_INDEX: HeaderName = HeaderName::from_static("x-mock-request-index");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// One request received by the mock, as recorded (see [`MockBuilder::record`]).
///
/// ```
/// use llm_tower_mock::MockProvider;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mock = MockProvider::start().await.unwrap();
/// assert!(mock.requests().is_empty());
/// // After traffic: mock.requests()[0].header("authorization"), .json(), .uri, .body
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// Request target as received (path and query, e.g. `/v1/chat/completions`).
    pub uri: Uri,
    /// The HTTP version it came in (`HTTP/2.0` from a client speaking h2c).
    pub version: Version,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The value of header `name` (case-insensitive), if present and valid visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The body parsed as JSON, if it is valid JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Where the next request's behaviour comes from.
#[derive(Debug)]
struct Script {
    queue: VecDeque<Arc<Plan>>,
    fallback: Fallback,
}

#[derive(Debug)]
enum Fallback {
    One(Arc<Plan>),
    Cycle { plans: Vec<Arc<Plan>>, next: usize },
}

impl Script {
    fn next(&mut self) -> Arc<Plan> {
        if let Some(plan) = self.queue.pop_front() {
            return plan;
        }
        match &mut self.fallback {
            Fallback::One(plan) => Arc::clone(plan),
            Fallback::Cycle { plans, next } => {
                let plan = Arc::clone(&plans[*next]);
                *next = (*next + 1) % plans.len();
                plan
            }
        }
    }
}

/// State shared by the handle and the server tasks.
#[derive(Debug)]
struct Shared {
    assets: Arc<Assets>,
    record: bool,
    count: AtomicUsize,
    recorded: Mutex<Vec<RecordedRequest>>,
    script: Mutex<Script>,
    shutdown: watch::Receiver<bool>,
}

/// A running fake LLM provider (an OpenAI-compatible HTTP/1.1 server on loopback).
///
/// Dropping it shuts the server down: the listener is closed and every connection task is
/// aborted. [`MockProvider::shutdown`] does the same but waits until everything has stopped.
///
/// ```
/// use llm_tower_mock::{Behavior, MockProvider};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mock = MockProvider::start().await.unwrap();
/// mock.set_default(Behavior::status(503));
/// assert!(mock.base_url().ends_with("/v1"));
/// mock.shutdown().await;
/// # }
/// ```
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockProvider")
            .field("addr", &self.addr)
            .field("record", &self.shared.record)
            .field("request_count", &self.request_count())
            .finish_non_exhaustive()
    }
}

impl MockProvider {
    /// Starts a mock on `127.0.0.1` with an ephemeral port, recording requests, answering
    /// [`Behavior::Reply`] by default.
    pub async fn start() -> std::io::Result<MockProvider> {
        MockProvider::builder().start().await
    }

    /// A builder for a mock with non-default settings.
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }

    /// The address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a one-shot behaviour: the next chat completion request not yet served consumes
    /// it (FIFO). `GET …/models` and unknown routes do not consume the script.
    ///
    /// # Panics
    ///
    /// Panics if a [`Behavior::Status`] has an invalid status code, header name or value.
    pub fn push(&self, behavior: Behavior) {
        let plan = Arc::new(Plan::compile(behavior, &self.shared.assets));
        lock(&self.shared.script).queue.push_back(plan);
    }

    /// Queues many one-shot behaviours, in order (see [`MockProvider::push`]).
    ///
    /// # Panics
    ///
    /// As [`MockProvider::push`].
    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        let plans: Vec<Arc<Plan>> = behaviors
            .into_iter()
            .map(|b| Arc::new(Plan::compile(b, &self.shared.assets)))
            .collect();
        lock(&self.shared.script).queue.extend(plans);
    }

    /// Sets the behaviour used when the one-shot queue is empty (initially
    /// [`Behavior::Reply`]). Replaces any cycle set with [`MockProvider::set_cycle`].
    ///
    /// # Panics
    ///
    /// As [`MockProvider::push`].
    pub fn set_default(&self, behavior: Behavior) {
        let plan = Arc::new(Plan::compile(behavior, &self.shared.assets));
        lock(&self.shared.script).fallback = Fallback::One(plan);
    }

    /// Makes the default a repeating cycle: the `k`-th request served by the default from now
    /// on (0-based) uses `behaviors[k % behaviors.len()]`. One-shot behaviours still take
    /// precedence and do not advance the cycle. An empty `behaviors` resets the default to
    /// [`Behavior::Reply`].
    ///
    /// # Panics
    ///
    /// As [`MockProvider::push`].
    pub fn set_cycle(&self, behaviors: Vec<Behavior>) {
        let fallback = if behaviors.is_empty() {
            Fallback::One(Arc::new(Plan::Reply))
        } else {
            Fallback::Cycle {
                plans: behaviors
                    .into_iter()
                    .map(|b| Arc::new(Plan::compile(b, &self.shared.assets)))
                    .collect(),
                next: 0,
            }
        };
        lock(&self.shared.script).fallback = fallback;
    }

    /// A snapshot of every request recorded so far, in arrival order (empty when recording
    /// is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.recorded).clone()
    }

    /// The number of requests received (on every route), counted even when recording is off.
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Forgets the recorded requests and resets the request count (the script is unchanged).
    pub fn clear(&self) {
        let mut recorded = lock(&self.shared.recorded);
        recorded.clear();
        self.shared.count.store(0, Ordering::SeqCst);
    }

    /// Stops the server and waits until it has stopped: the listener is closed, idle
    /// connections are closed, responses being written finish (within a one-second grace
    /// period), and stalled, delayed or paced responses are aborted at once.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            // Dropping the accept loop also drops its `JoinSet`, aborting every connection.
            task.abort();
        }
    }
}

/// Configures and starts a [`MockProvider`].
///
/// ```
/// use llm_tower_mock::{Behavior, MockProvider};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mock = MockProvider::builder()
///     .record(false)
///     .default_behavior(Behavior::status(500))
///     .start()
///     .await
///     .unwrap();
/// assert_eq!(mock.request_count(), 0);
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a MockBuilder does nothing until `start` is awaited"]
pub struct MockBuilder {
    record: bool,
    bind: SocketAddr,
    default_behavior: Behavior,
}

impl Default for MockBuilder {
    fn default() -> Self {
        MockBuilder {
            record: true,
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            default_behavior: Behavior::Reply,
        }
    }
}

impl MockBuilder {
    /// Whether to record each request's method, URI, headers and body (default on). Turn it
    /// off for benchmarks; [`MockProvider::request_count`] still counts.
    pub fn record(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// The address to bind (default `127.0.0.1:0`, an ephemeral port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The behaviour used when the one-shot queue is empty (default [`Behavior::Reply`]).
    pub fn default_behavior(mut self, b: Behavior) -> Self {
        self.default_behavior = b;
        self
    }

    /// Binds and starts serving on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Panics if the default behaviour is an invalid [`Behavior::Status`] (see
    /// [`MockProvider::push`]).
    pub async fn start(self) -> std::io::Result<MockProvider> {
        let listener = TcpListener::bind(self.bind).await?;
        let addr = listener.local_addr()?;
        let assets = Arc::new(Assets::new());
        let fallback = Fallback::One(Arc::new(Plan::compile(self.default_behavior, &assets)));
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            assets,
            record: self.record,
            count: AtomicUsize::new(0),
            recorded: Mutex::new(Vec::new()),
            script: Mutex::new(Script {
                queue: VecDeque::new(),
                fallback,
            }),
            shutdown,
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(MockProvider {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // Typically running out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut shutdown = shared.shutdown.clone();
    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
    // HTTP/1.1, and HTTP/2 with prior knowledge (h2c) for clients that speak it.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true).header_read_timeout(None);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = stopped(&mut shutdown) => {}
    }
    // Idle connections close at once and responses being written finish; stalled and delayed
    // responses abort themselves. The grace period only bounds clients that stall mid-request.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
}
