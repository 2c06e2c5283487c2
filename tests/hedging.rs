//! Hedged requests, over loopback against mock providers: an attempt whose first byte is
//! late (`hedge.after`) is sent to the next deployment as well, the first to answer wins and
//! the other is given up (`hedge_lost`, nothing against its health); the hedge budget holds;
//! nothing is hedged once bytes were sent.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use llm_tower::{
    AttemptKind, Attempts, Config, CountBased, EndpointConfig, ErrorKind, Hedge, Outcome,
    RetryPolicy, Upstream,
};
use llm_tower_mock::{Behavior, MockProvider};
use tokio::time::Instant;
use tower::ServiceExt;

/// `a` (tried first, hedging after `after` with at most `max_percent`) and `b`.
fn stack(
    a: &MockProvider,
    b: &MockProvider,
    after: Duration,
    max_percent: u32,
) -> llm_tower::UpstreamService {
    let endpoint = |id: &str, url: String, priority: u32| EndpointConfig {
        priority,
        timeout: None,
        stream_idle_timeout: None,
        retry_policy: RetryPolicy::CountBased(CountBased { times: 0 }),
        ..EndpointConfig::new(id, url)
    };
    let config = Config::with_endpoints(vec![
        EndpointConfig {
            hedge: Some(Hedge { after, max_percent }),
            ..endpoint("a", a.base_url(), 0)
        },
        endpoint("b", b.base_url(), 1),
    ]);
    Upstream::from_config(&config).unwrap().build().unwrap()
}

fn chat(stream: bool) -> Request<Full<Bytes>> {
    let body = format!(r#"{{"model":"mock-model","stream":{stream},"messages":[]}}"#);
    Request::post("/chat/completions")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// The kinds and outcomes of a response's attempts, by deployment.
fn attempts(response: &http::Response<impl Sized>) -> Vec<(String, AttemptKind, Outcome)> {
    Attempts::of(response.extensions())
        .unwrap()
        .to_vec()
        .into_iter()
        .map(|a| (a.endpoint.to_string(), a.kind, a.outcome))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_late_first_byte_is_hedged_and_the_first_answer_wins() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    a.push(Behavior::delay(Duration::from_secs(20), Behavior::Reply));
    b.push(Behavior::delay(Duration::from_millis(50), Behavior::Reply));
    let service = stack(&a, &b, Duration::from_secs(1), 100);
    let started = Instant::now();
    let response = service.clone().oneshot(chat(false)).await.unwrap();
    let first_byte = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        first_byte >= Duration::from_secs(1) && first_byte <= Duration::from_millis(1200),
        "{first_byte:?}"
    );
    let ok = Outcome::Status(StatusCode::OK);
    let lost = Outcome::Error(ErrorKind::HedgeLost);
    assert_eq!(
        attempts(&response),
        [
            ("b".into(), AttemptKind::Hedge, ok),
            ("a".into(), AttemptKind::First, lost)
        ]
    );
    response.into_body().collect().await.unwrap();
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    // The loser is not held against: A takes the next request (and answers at once).
    let response = service.oneshot(chat(false)).await.unwrap();
    assert_eq!(attempts(&response)[0].0, "a");
    assert_eq!(a.request_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_hedged_once_bytes_were_sent() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    // The first chunk at once, the next ones 5 s apart: late bytes, but not a late first.
    a.push(Behavior::Stream {
        chunks: 3,
        interval: Duration::from_secs(5),
    });
    let service = stack(&a, &b, Duration::from_secs(1), 100);
    let response = service.clone().oneshot(chat(true)).await.unwrap();
    let kinds = attempts(&response);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"data: [DONE]\n\n"));
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    assert_eq!(b.request_count(), 0);
    // The same stream with its first chunk late is hedged.
    a.push(Behavior::delay(
        Duration::from_secs(3),
        Behavior::Stream {
            chunks: 3,
            interval: Duration::from_secs(5),
        },
    ));
    let response = service.clone().oneshot(chat(true)).await.unwrap();
    assert_eq!(attempts(&response).len(), 2);
    response.into_body().collect().await.unwrap();
    assert_eq!(b.request_count(), 1);
    // Nor is a request that is not a generation: sending it twice would do it twice.
    a.push(Behavior::delay(Duration::from_secs(3), Behavior::Reply));
    let upload = Request::post("/files")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(upload).await.unwrap();
    assert_eq!(attempts(&response).len(), 1);
    assert_eq!(b.request_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_error_while_the_hedge_is_out_is_the_answer_at_once() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let service = stack(&a, &b, Duration::from_secs(1), 100);
    a.push(Behavior::delay(
        Duration::from_secs(2),
        Behavior::status(400),
    ));
    b.push(Behavior::delay(Duration::from_secs(10), Behavior::Reply));
    let started = Instant::now();
    let response = service.clone().oneshot(chat(false)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not waiting for the hedge"
    );
    assert_eq!(
        attempts(&response),
        [
            (
                "a".into(),
                AttemptKind::First,
                Outcome::Status(StatusCode::BAD_REQUEST)
            ),
            (
                "b".into(),
                AttemptKind::Hedge,
                Outcome::Error(ErrorKind::HedgeLost)
            ),
        ]
    );
    response.into_body().collect().await.unwrap();
    // The client's error is not held against A.
    let response = service.oneshot(chat(false)).await.unwrap();
    assert_eq!(attempts(&response)[0].0, "a");
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_hedges_at_their_share_of_requests() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    // One request in ten is slow.
    let mut cycle = vec![Behavior::Reply; 9];
    cycle.push(Behavior::delay(Duration::from_secs(3), Behavior::Reply));
    a.set_cycle(cycle);
    let service = stack(&a, &b, Duration::from_secs(1), 5);
    let mut hedged = 0;
    for _ in 0..1000 {
        let response = service.clone().oneshot(chat(false)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        hedged += usize::from(attempts(&response).len() > 1);
        response.into_body().collect().await.unwrap();
    }
    eprintln!("{hedged} of 1000 requests hedged (100 slow)");
    assert_eq!(b.request_count(), hedged, "B only ever got hedges");
    assert!(hedged > 0, "some were");
    assert!(hedged <= 1000 * 5 / 100, "at most 5 %: {hedged}");
}

#[tokio::test(start_paused = true)]
async fn a_share_above_half_is_a_share_and_not_all() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    // Every request slow, 60 % may be hedged: 60 %, not every one (a share rounded to one in
    // a whole number of requests would allow all).
    a.set_default(Behavior::delay(Duration::from_secs(2), Behavior::Reply));
    let service = stack(&a, &b, Duration::from_secs(1), 60);
    let mut hedged = 0;
    for _ in 0..100 {
        let response = service.clone().oneshot(chat(false)).await.unwrap();
        hedged += usize::from(attempts(&response).len() > 1);
        response.into_body().collect().await.unwrap();
    }
    // Hedged requests are quicker, so fewer of them fit the ten seconds the share is over.
    assert!((30..=60).contains(&hedged), "{hedged} of 100");
}

#[tokio::test(start_paused = true)]
async fn a_failure_of_either_while_the_other_is_out_waits_for_the_other() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let service = stack(&a, &b, Duration::from_secs(1), 100);
    let ok = Outcome::Status(StatusCode::OK);
    let unavailable = Outcome::Status(StatusCode::SERVICE_UNAVAILABLE);
    // A is late, then fails while the hedge is out: the hedge's answer is the answer, and
    // A's failure counts against it.
    a.push(Behavior::delay(
        Duration::from_secs(2),
        Behavior::status(503),
    ));
    b.push(Behavior::delay(Duration::from_secs(3), Behavior::Reply));
    let response = service.clone().oneshot(chat(false)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        attempts(&response),
        [
            ("a".into(), AttemptKind::First, unavailable),
            ("b".into(), AttemptKind::Hedge, ok)
        ]
    );
    response.into_body().collect().await.unwrap();
    let response = service.clone().oneshot(chat(false)).await.unwrap();
    assert_eq!(attempts(&response)[0].0, "b", "A is cooling down");
    response.into_body().collect().await.unwrap();

    // After A's cooldown, its probe (never hedged: its answer decides A's health) restores
    // it. Then the hedge fails first, and A's late answer is the answer.
    tokio::time::advance(Duration::from_secs(10)).await;
    let response = service.clone().oneshot(chat(false)).await.unwrap();
    assert_eq!(attempts(&response), [("a".into(), AttemptKind::First, ok)]);
    response.into_body().collect().await.unwrap();
    a.push(Behavior::delay(Duration::from_secs(3), Behavior::Reply));
    b.push(Behavior::delay(
        Duration::from_millis(500),
        Behavior::status(503),
    ));
    let response = service.oneshot(chat(false)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        attempts(&response),
        [
            ("b".into(), AttemptKind::Hedge, unavailable),
            ("a".into(), AttemptKind::First, ok)
        ]
    );
}

/// Through the gateway, configured from YAML: the hedge answers, and `/metrics` counts it
/// sent and won on B, and A's attempt given up.
#[tokio::test(start_paused = true)]
async fn the_gateway_hedges_from_its_file_and_counts_hedges() {
    let recorder = llm_tower_gateway::prometheus_builder().build_recorder();
    let handle = recorder.handle();
    // A current-thread runtime runs every task on this thread, so a local recorder sees all.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    a.push(Behavior::delay(Duration::from_secs(20), Behavior::Reply));
    let file = std::env::temp_dir().join(format!("hedging-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        format!(
            "endpoints:\n\
             \x20 - {{ id: a, base_url: '{}', priority: 0, hedge: {{ after: 1s, max_percent: 100 }} }}\n\
             \x20 - {{ id: b, base_url: '{}', priority: 1 }}\n",
            a.base_url(),
            b.base_url()
        ),
    )
    .unwrap();
    let mut config = llm_tower_gateway::GatewayConfig::from_path(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    for endpoint in &mut config.upstream.endpoints {
        endpoint.timeout = None;
        endpoint.stream_idle_timeout = None;
    }
    let gw = common::serve(config, Some(handle), std::future::pending()).await;
    let response = gw.send(gw.chat(&common::chat("mock-model"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(common::header(&response, "x-llm-tower-endpoint"), "b");
    common::body(response).await;
    let text = gw.text("/metrics").await;
    for line in [
        r#"llm_tower_hedges_total{endpoint="b"} 1"#,
        r#"llm_tower_hedges_won_total{endpoint="b"} 1"#,
        r#"llm_tower_attempts_total{endpoint="a",outcome="hedge_lost"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
