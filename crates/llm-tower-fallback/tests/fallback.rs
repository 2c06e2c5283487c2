//! Balancer behaviour against scripted upstreams, on paused time.
#![allow(clippy::float_cmp)] // paused time makes cooldowns exact

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use llm_tower_core::{
    AttemptKind, Attempts, BoxError, BufferedBody, CooldownHint, CountBased, Endpoint, Error,
    ErrorKind, Outcome, RetryPolicy, Selected,
};
use llm_tower_fallback::{
    FallbackBuilder, FallbackLayer, HealthRegistry, ResponseBody, Status, Strategy,
    WhenAllUnhealthy,
};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[derive(Clone)]
enum Step {
    Status(u16),
    StatusWith(u16, &'static str, &'static str),
    Hint(u16, Duration),
    Refuse,
    /// Wait for the gate, then 200.
    Gate(Arc<Notify>),
}

#[derive(Clone, Debug)]
struct Call {
    endpoint: String,
    uri: Uri,
    host: Option<String>,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Upstream {
    scripts: Arc<Mutex<HashMap<String, VecDeque<Step>>>>,
    defaults: Arc<Mutex<HashMap<String, Step>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Upstream {
    fn script(&self, endpoint: &str, steps: impl IntoIterator<Item = Step>) {
        self.scripts
            .lock()
            .unwrap()
            .entry(endpoint.into())
            .or_default()
            .extend(steps);
    }
    fn set_default(&self, endpoint: &str, step: Step) {
        self.defaults.lock().unwrap().insert(endpoint.into(), step);
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn order(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.endpoint).collect()
    }
    fn count(&self, endpoint: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.endpoint == endpoint)
            .count()
    }
    fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }
}

impl Service<Request<BufferedBody>> for Upstream {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BufferedBody>) -> Self::Future {
        let endpoint = req
            .extensions()
            .get::<Selected>()
            .expect("Selected is set")
            .id()
            .to_string();
        let call = Call {
            endpoint: endpoint.clone(),
            uri: req.uri().clone(),
            host: req
                .headers()
                .get("host")
                .map(|h| h.to_str().unwrap().to_owned()),
            body: Bytes::copy_from_slice(req.body().bytes()),
        };
        self.calls.lock().unwrap().push(call);
        let step = self
            .scripts
            .lock()
            .unwrap()
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front)
            .or_else(|| self.defaults.lock().unwrap().get(&endpoint).cloned())
            .unwrap_or(Step::Status(200));
        Box::pin(async move {
            let reply = |code: u16| {
                Response::builder()
                    .status(code)
                    .header("x-from", endpoint.as_str())
                    .body(format!("{endpoint}:{code}"))
                    .unwrap()
            };
            match step {
                Step::Status(code) => Ok(reply(code)),
                Step::StatusWith(code, name, value) => {
                    let mut response = reply(code);
                    response.headers_mut().insert(name, value.parse().unwrap());
                    Ok(response)
                }
                Step::Hint(code, hint) => {
                    let mut response = reply(code);
                    response.extensions_mut().insert(CooldownHint(hint));
                    Ok(response)
                }
                Step::Refuse => {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
                }
                Step::Gate(gate) => {
                    gate.notified().await;
                    Ok(reply(200))
                }
            }
        })
    }
}

fn ep(id: &str) -> Endpoint {
    Endpoint::builder(id, format!("https://{id}.example/v1"))
        .build()
        .unwrap()
}

fn with(
    id: &str,
    f: impl FnOnce(llm_tower_core::EndpointBuilder) -> llm_tower_core::EndpointBuilder,
) -> Endpoint {
    f(Endpoint::builder(id, format!("https://{id}.example/v1")))
        .build()
        .unwrap()
}

struct Stack {
    upstream: Upstream,
    registry: HealthRegistry,
    service: llm_tower_fallback::Fallback<Upstream>,
}

impl Stack {
    fn new(endpoints: Vec<Endpoint>) -> Self {
        Self::with(endpoints, |b| b)
    }
    fn with(endpoints: Vec<Endpoint>, f: impl FnOnce(FallbackBuilder) -> FallbackBuilder) -> Self {
        let registry = HealthRegistry::new();
        let layer = f(FallbackLayer::builder(endpoints))
            .build(registry.clone())
            .unwrap();
        let upstream = Upstream::default();
        Self {
            service: layer.layer(upstream.clone()),
            upstream,
            registry,
        }
    }
    async fn send(&self) -> Result<Response<String>, BoxError> {
        self.send_request(
            Request::post("/chat/completions")
                .body(String::from("{\"q\":1}"))
                .unwrap(),
        )
        .await
    }
    async fn send_request(&self, request: Request<String>) -> Result<Response<String>, BoxError> {
        let response = self.service.clone().oneshot(request).await?;
        Ok(response.map(ResponseBody::into_inner))
    }
    async fn ok(&self) -> Response<String> {
        self.send().await.expect("a response")
    }
    fn status(&self, id: &str) -> Status {
        self.registry.get(id).unwrap().status
    }
}

fn error_of(err: &BoxError) -> &Error {
    err.downcast_ref::<Error>().expect("an llm-tower Error")
}

#[tokio::test(start_paused = true)]
async fn round_robin_distribution() {
    let stack = Stack::new(vec![ep("a"), ep("b"), ep("c")]);
    for _ in 0..30 {
        stack.ok().await;
    }
    let order = stack.upstream.order();
    assert_eq!(&order[..6], ["a", "b", "c", "a", "b", "c"]);
    for id in ["a", "b", "c"] {
        assert_eq!(stack.upstream.count(id), 10);
    }
}

#[tokio::test(start_paused = true)]
async fn weighted_distribution_is_smooth() {
    let stack = Stack::with(vec![with("a", |b| b.weight(3)), ep("b")], |b| {
        b.strategy(Strategy::Weighted)
    });
    for _ in 0..40 {
        stack.ok().await;
    }
    assert_eq!(stack.upstream.count("a"), 30);
    assert_eq!(stack.upstream.count("b"), 10);
    // Smooth: b appears once in every window of four.
    for window in stack.upstream.order().chunks(4) {
        assert_eq!(
            window.iter().filter(|id| *id == "b").count(),
            1,
            "{window:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn least_in_flight_avoids_the_busy_endpoint() {
    let stack = Stack::with(vec![ep("a"), ep("b")], |b| {
        b.strategy(Strategy::LeastInFlight)
    });
    let gate = Arc::new(Notify::new());
    stack.upstream.set_default("a", Step::Gate(gate.clone()));
    stack.upstream.set_default("b", Step::Gate(gate.clone()));
    // The first request parks on one endpoint; every later one must pick the other while
    // it has fewer requests in flight.
    let first = tokio::spawn({
        let svc = stack.service.clone();
        async move { svc.oneshot(Request::new(String::new())).await }
    });
    tokio::task::yield_now().await;
    let busy = stack.upstream.order()[0].clone();
    let second = tokio::spawn({
        let svc = stack.service.clone();
        async move { svc.oneshot(Request::new(String::new())).await }
    });
    tokio::task::yield_now().await;
    assert_ne!(stack.upstream.order()[1], busy);
    gate.notify_waiters();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_request_is_in_flight_until_its_body_ends() {
    let stack = Stack::new(vec![ep("a")]);
    let response = stack
        .service
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(
        stack.registry.get("a").unwrap().in_flight,
        1,
        "head received, body not read"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "a:200");
    assert_eq!(stack.registry.get("a").unwrap().in_flight, 0);
    // A body dropped unread ends the count too.
    drop(
        stack
            .service
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap(),
    );
    assert_eq!(stack.registry.get("a").unwrap().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn priority_tiers() {
    let stack = Stack::new(vec![
        with("backup", |b| b.priority(1)),
        ep("main"),
        with("last", |b| b.priority(2)),
    ]);
    for _ in 0..5 {
        stack.ok().await;
    }
    assert_eq!(stack.upstream.order(), vec!["main"; 5]);
    stack.upstream.clear();
    stack.upstream.script("main", [Step::Status(503)]);
    assert_eq!(stack.ok().await.body(), "backup:200");
    // main is cooling down: the next tier takes the traffic.
    stack.ok().await;
    assert_eq!(stack.upstream.order(), ["main", "backup", "backup"]);
}

#[tokio::test(start_paused = true)]
async fn fallback_order_wraps_around() {
    let stack = Stack::new(vec![ep("a"), ep("b"), ep("c")]);
    stack.ok().await; // a; the next request starts at b
    stack.upstream.clear();
    stack.upstream.script("b", [Step::Status(503)]);
    stack.upstream.script("c", [Step::Status(502)]);
    let response = stack.ok().await;
    assert_eq!(response.body(), "a:200");
    assert_eq!(stack.upstream.order(), ["b", "c", "a"]);
    let attempts = response.extensions().get::<Attempts>().unwrap().to_vec();
    let kinds: Vec<_> = attempts.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AttemptKind::First,
            AttemptKind::Fallback,
            AttemptKind::Fallback
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn fallback_false_stops_at_that_endpoint() {
    let stack = Stack::new(vec![with("a", |b| b.fallback(false)), ep("b")]);
    stack.upstream.script("a", [Step::Status(503)]);
    let response = stack.ok().await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.body(), "a:503");
    assert_eq!(stack.upstream.order(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn client_errors_return_at_once_and_leave_health_alone() {
    let stack = Stack::new(vec![ep("a"), ep("b")]);
    for code in [400, 404, 413, 422] {
        stack.upstream.set_default("a", Step::Status(code));
        stack.upstream.set_default("b", Step::Status(code));
        let response = stack.ok().await;
        assert_eq!(response.status().as_u16(), code);
        assert_eq!(stack.upstream.calls().len(), 1, "{code}: no fallback");
        assert_eq!(stack.status("a"), Status::Healthy);
        assert_eq!(stack.status("b"), Status::Healthy);
        assert_eq!(stack.registry.get("a").unwrap().consecutive_failures, 0);
        stack.upstream.clear();
    }
}

#[tokio::test(start_paused = true)]
async fn bad_credentials_fall_back_and_count() {
    let stack = Stack::new(vec![ep("a"), ep("b")]);
    stack.upstream.script("a", [Step::Status(401)]);
    let response = stack.ok().await;
    assert_eq!(response.body(), "b:200");
    assert_eq!(stack.status("a"), Status::Ejected);
    stack.upstream.script("b", [Step::Status(403)]);
    // b fails too and a is cooling: a is tried as the soonest to return.
    let response = stack.ok().await;
    assert_eq!(response.body(), "a:200");
}

#[tokio::test(start_paused = true)]
async fn ejection_after_threshold() {
    let stack = Stack::with(vec![ep("a"), with("b", |b| b.priority(1))], |b| {
        b.unhealthy_threshold(3)
    });
    stack.upstream.set_default("a", Step::Status(500));
    for expected in 1..=2 {
        stack.ok().await;
        let snap = stack.registry.get("a").unwrap();
        assert_eq!(
            (snap.status, snap.consecutive_failures),
            (Status::Healthy, expected)
        );
    }
    stack.ok().await;
    assert_eq!(stack.status("a"), Status::Ejected);
    assert_eq!(stack.upstream.count("a"), 3);
    stack.ok().await;
    assert_eq!(stack.upstream.count("a"), 3, "skipped while ejected");
    // A success resets the count.
    let stack = Stack::with(vec![ep("a"), with("b", |b| b.priority(1))], |b| {
        b.unhealthy_threshold(2)
    });
    stack.upstream.script(
        "a",
        [Step::Status(500), Step::Status(200), Step::Status(500)],
    );
    for _ in 0..3 {
        stack.ok().await;
    }
    assert_eq!(stack.status("a"), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn retry_after_cools_down_even_below_the_threshold() {
    let stack = Stack::with(vec![ep("a"), with("b", |b| b.priority(1))], |b| {
        b.unhealthy_threshold(3)
    });
    stack
        .upstream
        .script("a", [Step::StatusWith(429, "retry-after", "30")]);
    assert_eq!(stack.ok().await.body(), "b:200");
    let snap = stack.registry.get("a").unwrap();
    assert_eq!(snap.status, Status::Ejected);
    assert_eq!(snap.seconds_until_return, 30.0);
    assert_eq!(
        snap.ejections, 0,
        "a pause the upstream asked for, not an ejection"
    );
    stack.ok().await;
    assert_eq!(
        stack.upstream.count("a"),
        1,
        "skipped while the upstream asked for a pause"
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(stack.ok().await.body(), "a:200");
    assert_eq!(stack.status("a"), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn cooldown_from_health_check_interval_then_probe_and_recovery() {
    let stack = Stack::new(vec![
        with("a", |b| b.health_check_interval(Duration::from_secs(3))),
        with("b", |b| b.priority(1)),
    ]);
    stack.upstream.script("a", [Step::Status(503)]);
    stack.ok().await;
    tokio::time::advance(Duration::from_millis(2999)).await;
    stack.ok().await;
    assert_eq!(stack.upstream.count("a"), 1, "still cooling at 2.999 s");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(stack.status("a"), Status::HalfOpen);
    assert_eq!(stack.ok().await.body(), "a:200", "probe at 3 s");
    assert_eq!(stack.status("a"), Status::Healthy);
    let snap = stack.registry.get("a").unwrap();
    assert_eq!((snap.consecutive_failures, snap.ejections), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn cooldown_from_retry_after_and_hint() {
    let stack = Stack::new(vec![
        with("a", |b| b.health_check_interval(Duration::from_secs(3))),
        with("b", |b| b.priority(1)),
    ]);
    stack
        .upstream
        .script("a", [Step::StatusWith(429, "retry-after", "10")]);
    stack.ok().await;
    let snap = stack.registry.get("a").unwrap();
    assert_eq!(snap.seconds_until_return, 10.0);
    tokio::time::advance(Duration::from_secs(9)).await;
    stack.ok().await;
    assert_eq!(stack.upstream.count("a"), 1);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(stack.ok().await.body(), "a:200");
    // The retry layer's hint works the same; a shorter one than the interval does not shorten it.
    stack
        .upstream
        .script("a", [Step::Hint(503, Duration::from_secs(20))]);
    stack.ok().await;
    assert_eq!(stack.registry.get("a").unwrap().seconds_until_return, 20.0);
    tokio::time::advance(Duration::from_secs(20)).await;
    stack.ok().await;
    stack
        .upstream
        .script("a", [Step::Hint(503, Duration::from_secs(1))]);
    stack.ok().await;
    assert_eq!(stack.registry.get("a").unwrap().seconds_until_return, 3.0);
    // Hints are capped by max_cooldown (60 s).
    tokio::time::advance(Duration::from_secs(3)).await;
    stack
        .upstream
        .script("a", [Step::StatusWith(503, "retry-after", "86400")]);
    stack.ok().await;
    stack.ok().await;
    assert!(stack.registry.get("a").unwrap().seconds_until_return <= 60.0);
}

#[tokio::test(start_paused = true)]
async fn failed_probes_double_the_cooldown_up_to_the_cap() {
    let stack = Stack::with(
        vec![
            with("a", |b| b.health_check_interval(Duration::from_secs(1))),
            with("b", |b| b.priority(1)),
        ],
        |b| b.max_cooldown(Duration::from_secs(5)),
    );
    stack.upstream.set_default("a", Step::Status(503));
    let mut cooldowns = Vec::new();
    for _ in 0..5 {
        stack.ok().await; // ejects a (or fails its probe)
        let snap = stack.registry.get("a").unwrap();
        cooldowns.push(snap.seconds_until_return);
        tokio::time::advance(Duration::from_secs_f64(snap.seconds_until_return)).await;
    }
    assert_eq!(cooldowns, [1.0, 2.0, 4.0, 5.0, 5.0]);
    assert_eq!(stack.registry.get("a").unwrap().ejections, 5);
}

#[tokio::test(start_paused = true)]
async fn exactly_one_probe_among_concurrent_requests() {
    let stack = Stack::new(vec![ep("a"), with("b", |b| b.priority(1))]);
    stack.upstream.script("a", [Step::Status(503)]);
    stack.ok().await;
    tokio::time::advance(Duration::from_secs(5)).await;
    stack.upstream.clear();
    let gate = Arc::new(Notify::new());
    stack.upstream.script("a", [Step::Gate(gate.clone())]);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let svc = stack.service.clone();
            tokio::spawn(async move { svc.oneshot(Request::new(String::new())).await })
        })
        .collect();
    // Let all of them run until they park or finish.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(stack.upstream.count("a"), 1, "exactly one probe");
    assert!(stack.registry.get("a").unwrap().probe_in_flight);
    gate.notify_one();
    let mut bodies = Vec::new();
    for task in tasks {
        bodies.push(task.await.unwrap().unwrap().into_body().into_inner());
    }
    assert_eq!(bodies.iter().filter(|b| *b == "a:200").count(), 1);
    assert_eq!(bodies.iter().filter(|b| *b == "b:200").count(), 99);
    assert_eq!(stack.status("a"), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn cancelled_probe_releases_the_slot() {
    let stack = Stack::new(vec![ep("a"), with("b", |b| b.priority(1))]);
    stack.upstream.script(
        "a",
        [Step::Status(503), Step::Gate(Arc::new(Notify::new()))],
    );
    stack.ok().await;
    tokio::time::advance(Duration::from_secs(5)).await;
    // The probe hangs; its client goes away.
    let probe = stack.send();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), probe)
            .await
            .is_err()
    );
    assert_eq!(stack.upstream.count("a"), 2);
    assert!(!stack.registry.get("a").unwrap().probe_in_flight);
    assert_eq!(stack.registry.get("a").unwrap().in_flight, 0);
    // The next request probes again and restores a.
    assert_eq!(stack.ok().await.body(), "a:200");
    assert_eq!(stack.status("a"), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn when_all_unhealthy_try_soonest_and_fail() {
    for mode in [WhenAllUnhealthy::TrySoonest, WhenAllUnhealthy::Fail] {
        let stack = Stack::with(
            vec![
                with("a", |b| b.health_check_interval(Duration::from_secs(9))),
                with("b", |b| b.health_check_interval(Duration::from_secs(4))),
            ],
            |b| b.when_all_unhealthy(mode),
        );
        stack.upstream.script("a", [Step::Status(503)]);
        stack.upstream.script("b", [Step::Status(503)]);
        let response = stack.ok().await;
        assert_eq!(response.body(), "b:503", "last upstream response");
        assert_eq!(stack.status("a"), Status::Ejected);
        assert_eq!(stack.status("b"), Status::Ejected);
        stack.upstream.clear();
        tokio::time::advance(Duration::from_secs(1)).await;
        match mode {
            WhenAllUnhealthy::TrySoonest => {
                assert_eq!(stack.ok().await.body(), "b:200");
                assert_eq!(stack.upstream.order(), ["b"]);
            }
            WhenAllUnhealthy::Fail => {
                let err = stack.send().await.unwrap_err();
                let err = error_of(&err);
                assert_eq!(err.kind(), ErrorKind::NoEndpointAvailable);
                assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
                let response: Response<Bytes> = err.to_response();
                assert_eq!(response.headers()["retry-after"], "3");
                assert!(stack.upstream.calls().is_empty(), "nobody contacted");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn last_upstream_response_is_returned_intact() {
    let stack = Stack::new(vec![ep("a"), ep("b")]);
    stack
        .upstream
        .script("a", [Step::StatusWith(503, "x-detail", "overloaded")]);
    stack
        .upstream
        .script("b", [Step::StatusWith(502, "x-detail", "bad gateway")]);
    let response = stack.ok().await;
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-detail"], "bad gateway");
    assert_eq!(response.body(), "b:502");
    // A transport error after a response: the response is what the client gets.
    tokio::time::advance(Duration::from_secs(60)).await;
    stack
        .upstream
        .script("a", [Step::StatusWith(503, "x-detail", "overloaded")]);
    stack.upstream.script("b", [Step::Refuse]);
    let response = stack.ok().await;
    assert_eq!(response.headers()["x-detail"], "overloaded");
    assert_eq!(response.body(), "a:503");
    let outcomes: Vec<_> = response
        .extensions()
        .get::<Attempts>()
        .unwrap()
        .to_vec()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert!(
        outcomes.contains(&Outcome::Error(ErrorKind::Connect)),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)),
        "{outcomes:?}"
    );
    // Only transport errors: an error carrying the attempts.
    tokio::time::advance(Duration::from_secs(60)).await;
    stack.upstream.script("a", [Step::Refuse]);
    stack.upstream.script("b", [Step::Refuse]);
    let err = stack.send().await.unwrap_err();
    let err = error_of(&err);
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(err.attempts().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn attempts_across_retries_and_fallbacks() {
    let registry = HealthRegistry::new();
    let policy = RetryPolicy::CountBased(CountBased { times: 1 });
    let endpoints = vec![
        with("a", |b| b.retry_policy(policy.clone())),
        with("b", |b| b.retry_policy(policy.clone())),
    ];
    let layer = FallbackLayer::builder(endpoints).build(registry).unwrap();
    let upstream = Upstream::default();
    upstream.script("a", [Step::Status(503), Step::Status(503)]);
    let service = layer.layer(llm_tower_retry::RetryLayer::new().layer(upstream.clone()));
    let response = service
        .oneshot(Request::new(String::from("x")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let attempts = response.extensions().get::<Attempts>().unwrap().to_vec();
    let summary: Vec<_> = attempts
        .iter()
        .map(|a| (a.endpoint.to_string(), a.kind, a.outcome))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "a".into(),
                AttemptKind::First,
                Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)
            ),
            (
                "a".into(),
                AttemptKind::Retry,
                Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)
            ),
            (
                "b".into(),
                AttemptKind::Fallback,
                Outcome::Status(StatusCode::OK)
            ),
        ]
    );
    assert_eq!(upstream.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn absolute_form_uri_cannot_redirect_and_host_is_dropped() {
    let stack = Stack::new(vec![ep("a")]);
    for target in [
        "http://evil.example/chat/completions?x=1",
        "https://evil.example:8443/chat/completions?x=1",
    ] {
        let request = Request::post(target)
            .header("host", "evil.example")
            .body(String::new())
            .unwrap();
        stack.send_request(request).await.unwrap();
    }
    for call in stack.upstream.calls() {
        assert_eq!(call.uri, "https://a.example/v1/chat/completions?x=1");
        assert_eq!(call.host, None);
    }
}

#[tokio::test(start_paused = true)]
async fn body_cap_and_identical_replay() {
    let stack = Stack::with(vec![ep("a"), ep("b")], |b| b.max_body_bytes(10));
    stack.upstream.script("a", [Step::Status(503)]);
    let at_cap = Request::post("/x")
        .body(String::from("0123456789"))
        .unwrap();
    stack.send_request(at_cap).await.unwrap();
    let calls = stack.upstream.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.body == "0123456789"));
    stack.upstream.clear();
    let over = Request::post("/x")
        .body(String::from("0123456789!"))
        .unwrap();
    let err = stack.send_request(over).await.unwrap_err();
    assert_eq!(error_of(&err).kind(), ErrorKind::BodyTooLarge);
    assert_eq!(error_of(&err).status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(stack.upstream.calls().is_empty(), "nothing sent upstream");
}

#[tokio::test(start_paused = true)]
async fn builder_rejects_bad_input() {
    let err = FallbackLayer::builder(vec![ep("a"), ep("a")])
        .build(HealthRegistry::new())
        .unwrap_err();
    assert!(err.to_string().contains("duplicate id `a`"), "{err}");
    assert!(
        FallbackLayer::builder(Vec::new())
            .build(HealthRegistry::new())
            .is_err()
    );
    assert!(
        FallbackLayer::builder(vec![ep("a")])
            .unhealthy_threshold(0)
            .build(HealthRegistry::new())
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn registry_is_shared_between_stacks_and_serialises() {
    let registry = HealthRegistry::new();
    let upstream = Upstream::default();
    let first = FallbackLayer::builder(vec![ep("a"), ep("b")])
        .build(registry.clone())
        .unwrap()
        .layer(upstream.clone());
    let second = FallbackLayer::builder(vec![ep("a"), ep("b")])
        .build(registry.clone())
        .unwrap()
        .layer(upstream.clone());
    upstream.script("a", [Step::Status(503)]);
    first.oneshot(Request::new(String::new())).await.unwrap();
    // The second stack skips a too.
    for _ in 0..4 {
        second
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap();
    }
    assert_eq!(upstream.count("a"), 1);
    let json = serde_json::to_value(registry.snapshot()).unwrap();
    assert_eq!(json[0]["id"], "a");
    assert_eq!(json[0]["status"], "ejected");
    assert_eq!(json[0]["seconds_until_return"], 5.0);
    assert_eq!(json[1]["status"], "healthy");
}

/// Many tasks on several threads against a flapping endpoint: no deadlock, every request
/// answered exactly once, attempt lists consistent with what the upstream saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stress_flapping_endpoints() {
    let endpoints = vec![
        with("flappy", |b| {
            b.health_check_interval(Duration::from_millis(1))
        }),
        with("refusing", |b| {
            b.health_check_interval(Duration::from_millis(2))
        }),
        with("steady", |b| b.priority(1)),
    ];
    let registry = HealthRegistry::new();
    let layer = FallbackLayer::builder(endpoints)
        .build(registry.clone())
        .unwrap();
    let upstream = Upstream::default();
    upstream.set_default("refusing", Step::Refuse);
    let flips = [
        Step::Status(503),
        Step::Status(200),
        Step::Status(200),
        Step::Status(429),
        Step::Status(500),
    ];
    upstream.script("flappy", flips.iter().cycle().take(5000).cloned());
    let service = layer.layer(upstream.clone());
    let started = Instant::now();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                let mut attempts_seen = 0;
                for _ in 0..100 {
                    let response = service
                        .clone()
                        .oneshot(Request::new(String::from("s")))
                        .await
                        .unwrap();
                    let attempts = response.extensions().get::<Attempts>().unwrap().to_vec();
                    let last = attempts.last().unwrap();
                    assert_eq!(last.outcome, Outcome::Status(response.status()));
                    assert!(
                        response
                            .body()
                            .get_ref()
                            .starts_with(last.endpoint.as_str())
                    );
                    // Every endpoint at most once per request.
                    let mut ids: Vec<_> = attempts.iter().map(|a| a.endpoint.clone()).collect();
                    ids.sort();
                    ids.dedup();
                    assert_eq!(ids.len(), attempts.len());
                    attempts_seen += attempts.len();
                }
                attempts_seen
            })
        })
        .collect();
    let mut total_attempts = 0;
    for task in tasks {
        total_attempts += tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("no deadlock")
            .unwrap();
    }
    assert_eq!(
        total_attempts,
        upstream.calls().len(),
        "attempts match what upstreams recorded"
    );
    for snap in registry.snapshot() {
        assert_eq!(snap.in_flight, 0, "{snap:?}");
        assert!(!snap.probe_in_flight, "{snap:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}
