//! An in-process scripted upstream for unit tests of Tower layers (feature `test-util`).
//!
//! [`MockProvider`](crate::MockProvider) is a real HTTP server; [`ScriptedUpstream`] is the
//! cheap alternative for testing layers on their own: a [`tower::Service`] over
//! `http::Request<`[`BufferedBody`]`>` that answers each call with the next [`Step`] of the
//! script of the endpoint the request was sent to (the [`Selected`] request extension), and
//! records every call as a [`Call`]. Its responses carry a [`SingleFrame`] body.
//!
//! Everything runs on Tokio's clock, so tests can use paused time
//! (`#[tokio::test(start_paused = true)]`) and stay deterministic.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use llm_tower_core::{BoxError, BufferedBody, CooldownHint, Selected};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use single_frame::SingleFrame;

use crate::lock;

mod single_frame;

/// The script key of requests without a [`Selected`] extension.
pub const DEFAULT_ENDPOINT: &str = "default";

/// The message of the error [`Step::Unrecognized`] fails with.
///
/// It is worded like a connect error on purpose: error classification must not read
/// messages, so no classifier may take it for one.
pub const UNRECOGNIZED_MESSAGE: &str = "error trying to connect: connection refused (Connect)";

/// What a [`ScriptedUpstream`] does with one call.
///
/// Every response body is a [`SingleFrame`] naming the endpoint and the status, such as
/// `primary:503`.
///
/// ```
/// use std::time::Duration;
/// use http::header::RETRY_AFTER;
/// use llm_tower_mock::scripted::Step;
///
/// let rate_limited = Step::header(429, RETRY_AFTER, "2");
/// assert!(matches!(rate_limited, Step::Header(429, ref name, ref value)
///     if name == RETRY_AFTER && value == "2"));
/// let slow = Step::delay(Duration::from_secs(1), Step::Status(200));
/// assert!(matches!(slow, Step::Delay(_, _)));
/// ```
#[derive(Clone, Debug)]
pub enum Step {
    /// Answer with this status code.
    Status(u16),
    /// Answer with this status code and one extra response header (value sent verbatim).
    Header(u16, HeaderName, String),
    /// Answer with this status code and a [`CooldownHint`] response extension, as the retry
    /// layer leaves for the balancer.
    Hint(u16, Duration),
    /// Fail with an I/O error of this kind (`ConnectionRefused` reads as a connect error,
    /// `ConnectionReset` as a closed connection).
    Fail(std::io::ErrorKind),
    /// Fail with an error of a type no classifier knows, with the message
    /// [`UNRECOGNIZED_MESSAGE`].
    Unrecognized,
    /// Wait this long, then do the inner step.
    Delay(Duration, Box<Step>),
    /// Answer `200` at once, with a body whose only frame comes after this long.
    SlowBody(Duration),
    /// Wait until the [`Notify`] is notified, then answer `200`.
    Gate(Arc<Notify>),
}

impl Step {
    /// [`Step::Header`] from any header name `http` accepts (a [`HeaderName`] constant such as
    /// `http::header::RETRY_AFTER`, or a `&str` such as `"retry-after-ms"`).
    ///
    /// # Panics
    ///
    /// Panics if `name` is not a valid header name.
    pub fn header<N>(status: u16, name: N, value: impl Into<String>) -> Step
    where
        N: TryInto<HeaderName>,
        N::Error: Debug,
    {
        let name = name
            .try_into()
            .expect("llm-tower-mock: invalid header name");
        Step::Header(status, name, value.into())
    }

    /// [`Step::Delay`]: wait `wait`, then do `then`.
    pub fn delay(wait: Duration, then: Step) -> Step {
        Step::Delay(wait, Box::new(then))
    }
}

/// One call a [`ScriptedUpstream`] received, recorded when the call was made.
///
/// ```
/// use llm_tower_mock::scripted::{Call, ScriptedUpstream};
///
/// let upstream = ScriptedUpstream::new();
/// let calls: Vec<Call> = upstream.calls();
/// assert!(calls.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct Call {
    /// The id of the [`Selected`] endpoint, or [`DEFAULT_ENDPOINT`].
    pub endpoint: String,
    /// When the call was made (Tokio's clock, so paused time applies).
    pub at: Instant,
    /// The request URI.
    pub uri: Uri,
    /// The request headers.
    pub headers: HeaderMap,
    /// The request body.
    pub body: Bytes,
}

/// A scripted fake upstream: a [`tower::Service`] that answers each request with the next
/// [`Step`] scripted for its endpoint and records every call.
///
/// Requests are told apart by the id of their [`Selected`] extension ([`DEFAULT_ENDPOINT`]
/// when it is absent). Each endpoint has a queue of one-shot steps
/// ([`script`](Self::script)) and a step used when the queue is empty
/// ([`set_default`](Self::set_default), by default [`Step::Status`]`(200)`). The step is
/// chosen and the call recorded when [`Service::call`](tower::Service::call) runs; the
/// response future then carries the step out.
///
/// Clones share the scripts and the call log, so a test keeps one clone and hands another
/// to the layer under test.
///
/// ```
/// use std::sync::Arc;
///
/// use bytes::Bytes;
/// use http::Request;
/// use http_body_util::BodyExt;
/// use llm_tower_core::{BufferedBody, Endpoint, Selected};
/// use llm_tower_mock::scripted::{ScriptedUpstream, Step};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let upstream = ScriptedUpstream::new();
/// upstream.script("primary", [Step::Status(503)]);
///
/// let primary = Arc::new(Endpoint::builder("primary", "https://primary.example/v1").build()?);
/// let request = || {
///     let mut request = Request::post("/chat/completions")
///         .body(BufferedBody::from(Bytes::from_static(b"{}")))?;
///     request.extensions_mut().insert(Selected(Arc::clone(&primary)));
///     Ok::<_, http::Error>(request)
/// };
/// let first = upstream.clone().oneshot(request()?).await?;
/// assert_eq!(first.status(), 503);
/// assert_eq!(first.into_body().collect().await?.to_bytes(), "primary:503");
/// // The script is used up: 200 from now on.
/// let second = upstream.clone().oneshot(request()?).await?;
/// assert_eq!(second.status(), 200);
///
/// assert_eq!(upstream.order(), ["primary", "primary"]);
/// assert_eq!(upstream.calls()[0].body, "{}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ScriptedUpstream {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    scripts: Mutex<HashMap<String, Script>>,
    calls: Mutex<Vec<Call>>,
}

#[derive(Debug, Default)]
struct Script {
    queue: VecDeque<Step>,
    default: Option<Step>,
}

impl ScriptedUpstream {
    /// An upstream that answers `200` for every endpoint.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues one-shot steps for `endpoint`, after those already queued.
    pub fn script(&self, endpoint: &str, steps: impl IntoIterator<Item = Step>) {
        lock(&self.shared.scripts)
            .entry(endpoint.to_owned())
            .or_default()
            .queue
            .extend(steps);
    }

    /// Sets the step `endpoint` answers with once its queue is empty.
    pub fn set_default(&self, endpoint: &str, step: Step) {
        lock(&self.shared.scripts)
            .entry(endpoint.to_owned())
            .or_default()
            .default = Some(step);
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// The endpoint of every call received so far, in order.
    pub fn order(&self) -> Vec<String> {
        lock(&self.shared.calls)
            .iter()
            .map(|call| call.endpoint.clone())
            .collect()
    }

    /// The number of calls `endpoint` received so far.
    pub fn count(&self, endpoint: &str) -> usize {
        lock(&self.shared.calls)
            .iter()
            .filter(|call| call.endpoint == endpoint)
            .count()
    }

    /// Forgets the calls received so far (the scripts are unchanged).
    pub fn clear(&self) {
        lock(&self.shared.calls).clear();
    }

    fn next_step(&self, endpoint: &str) -> Step {
        let mut scripts = lock(&self.shared.scripts);
        scripts
            .get_mut(endpoint)
            .and_then(|script| script.queue.pop_front().or_else(|| script.default.clone()))
            .unwrap_or(Step::Status(200))
    }
}

type CallFuture = Pin<Box<dyn Future<Output = Result<Response<SingleFrame>, BoxError>> + Send>>;

impl tower::Service<Request<BufferedBody>> for ScriptedUpstream {
    type Response = Response<SingleFrame>;
    type Error = BoxError;
    type Future = CallFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<BufferedBody>) -> CallFuture {
        let endpoint = Selected::of(request.extensions())
            .map_or_else(|| DEFAULT_ENDPOINT.to_owned(), |s| s.id().to_string());
        let step = self.next_step(&endpoint);
        lock(&self.shared.calls).push(Call {
            endpoint: endpoint.clone(),
            at: Instant::now(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
            body: request.body().to_bytes(),
        });
        Box::pin(run(step, endpoint))
    }
}

async fn run(mut step: Step, endpoint: String) -> Result<Response<SingleFrame>, BoxError> {
    while let Step::Delay(wait, then) = step {
        tokio::time::sleep(wait).await;
        step = *then;
    }
    let reply = |code: u16| {
        let status = StatusCode::from_u16(code)
            .unwrap_or_else(|_| panic!("llm-tower-mock: invalid HTTP status code {code}"));
        let mut response = Response::new(SingleFrame::new(format!("{endpoint}:{code}")));
        *response.status_mut() = status;
        response
    };
    match step {
        Step::Status(code) => Ok(reply(code)),
        Step::Header(code, name, value) => {
            let value = HeaderValue::try_from(value.as_str())
                .unwrap_or_else(|_| panic!("llm-tower-mock: invalid header value {value:?}"));
            let mut response = reply(code);
            response.headers_mut().append(name, value);
            Ok(response)
        }
        Step::Hint(code, hint) => {
            let mut response = reply(code);
            response.extensions_mut().insert(CooldownHint(hint));
            Ok(response)
        }
        Step::Fail(kind) => Err(std::io::Error::from(kind).into()),
        Step::Unrecognized => Err(UNRECOGNIZED_MESSAGE.into()),
        Step::SlowBody(wait) => Ok(reply(200).map(|body| body.after(wait))),
        Step::Gate(gate) => {
            gate.notified().await;
            Ok(reply(200))
        }
        Step::Delay(..) => unreachable!("delays are unwrapped above"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use http::Request;
    use http::header::RETRY_AFTER;
    use http_body::Body;
    use http_body_util::BodyExt;
    use llm_tower_core::{BufferedBody, CooldownHint, Endpoint, Selected};
    use tokio::sync::Notify;
    use tokio::time::Instant;
    use tower::ServiceExt;

    use super::{DEFAULT_ENDPOINT, ScriptedUpstream, SingleFrame, Step, UNRECOGNIZED_MESSAGE};

    fn to(endpoint: Option<&str>) -> Request<BufferedBody> {
        let mut request = Request::post("/chat/completions")
            .body(BufferedBody::from(Bytes::from_static(b"body")))
            .unwrap();
        if let Some(id) = endpoint {
            let endpoint = Endpoint::builder(id, format!("https://{id}.example/v1"))
                .build()
                .unwrap();
            request
                .extensions_mut()
                .insert(Selected(Arc::new(endpoint)));
        }
        request
    }

    #[tokio::test(start_paused = true)]
    async fn queue_then_default_then_200_per_endpoint() {
        let upstream = ScriptedUpstream::new();
        upstream.script("a", [Step::Status(503), Step::Status(429)]);
        upstream.set_default("a", Step::Status(500));
        upstream.script(DEFAULT_ENDPOINT, [Step::Status(404)]);
        let mut statuses = Vec::new();
        for target in [Some("a"), Some("b"), Some("a"), None, Some("a"), None] {
            let response = upstream.clone().oneshot(to(target)).await.unwrap();
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses, [503, 200, 429, 404, 500, 200]);
        assert_eq!(upstream.order(), ["a", "b", "a", "default", "a", "default"]);
        assert_eq!((upstream.count("a"), upstream.count("b")), (3, 1));
        let call = &upstream.calls()[0];
        assert_eq!(
            (call.uri.path(), &call.body[..]),
            ("/chat/completions", &b"body"[..])
        );
        upstream.clear();
        assert!(upstream.calls().is_empty());
        let response = upstream.clone().oneshot(to(Some("a"))).await.unwrap();
        assert_eq!(response.status(), 500, "clear keeps the scripts");
    }

    #[tokio::test(start_paused = true)]
    async fn every_step() {
        let gate = Arc::new(Notify::new());
        let upstream = ScriptedUpstream::new();
        upstream.script(
            "a",
            [
                Step::header(429, RETRY_AFTER, "7"),
                Step::Hint(503, Duration::from_secs(9)),
                Step::Fail(std::io::ErrorKind::ConnectionReset),
                Step::Unrecognized,
                Step::delay(Duration::from_secs(2), Step::Status(502)),
                Step::SlowBody(Duration::from_secs(3)),
                Step::Gate(Arc::clone(&gate)),
            ],
        );
        let call = || upstream.clone().oneshot(to(Some("a")));

        let response = call().await.unwrap();
        assert_eq!(response.headers()[RETRY_AFTER], "7");
        let response = call().await.unwrap();
        let hint = response.extensions().get::<CooldownHint>();
        assert_eq!(hint, Some(&CooldownHint(Duration::from_secs(9))));
        let err = call().await.unwrap_err();
        let io = err.downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        let err = call().await.unwrap_err();
        assert!(err.downcast_ref::<std::io::Error>().is_none());
        assert_eq!(err.to_string(), UNRECOGNIZED_MESSAGE);

        let started = Instant::now();
        assert_eq!(call().await.unwrap().status(), 502);
        assert_eq!(started.elapsed(), Duration::from_secs(2));

        let started = Instant::now();
        let response = call().await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO, "the head comes at once");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "a:200");
        assert_eq!(started.elapsed(), Duration::from_secs(3));

        let gated = tokio::spawn(call());
        tokio::task::yield_now().await;
        assert!(!gated.is_finished());
        gate.notify_one();
        assert_eq!(gated.await.unwrap().unwrap().status(), 200);
    }

    #[test]
    fn single_frame_hints_and_bytes() {
        let body = SingleFrame::new("abc");
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(3));
        assert_eq!(body.bytes(), b"abc");
        assert_eq!(body.into_bytes(), "abc");
        let empty = SingleFrame::new(Bytes::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}
