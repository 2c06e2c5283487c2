//! Retry behaviour against a scripted inner service, on paused time.
//!
//! Over 500 lines on purpose: the retry layer's whole contract (what is retried, waits,
//! budget, per-try timeouts, read-ahead) in one place, on one scripted upstream.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use llm_tower_core::{
    AttemptKind, Attempts, BoxError, BufferedBody, CooldownHint, CountBased, Endpoint, ErrorKind,
    ExponentialBackoff, Outcome, RetryOn, RetryPolicy, RetryReason, Selected,
};
use llm_tower_mock::scripted::{DEFAULT_ENDPOINT, ScriptedUpstream, SingleFrame, Step};
use llm_tower_retry::{RetryBudget, RetryLayer};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");

/// An upstream answering the endpoint `ep` with `steps`, then 200.
fn scripted(steps: impl IntoIterator<Item = Step>) -> ScriptedUpstream {
    let upstream = ScriptedUpstream::new();
    upstream.script("ep", steps);
    upstream
}

fn call_times(upstream: &ScriptedUpstream) -> Vec<Instant> {
    upstream.calls().iter().map(|call| call.at).collect()
}

fn endpoint(policy: RetryPolicy) -> Endpoint {
    Endpoint::builder("ep", "http://127.0.0.1:9")
        .retry_policy(policy)
        .build()
        .unwrap()
}

fn count(times: u32) -> RetryPolicy {
    RetryPolicy::CountBased(CountBased { times })
}

fn request(endpoint: &Endpoint, log: &Attempts) -> Request<BufferedBody> {
    let mut req = Request::post("/v1/chat/completions")
        .body(BufferedBody::from(Bytes::from_static(
            br#"{"model":"m","messages":[]}"#,
        )))
        .unwrap();
    req.extensions_mut()
        .insert(Selected(Arc::new(endpoint.clone())));
    req.extensions_mut().insert(log.clone());
    req
}

async fn send(
    layer: &RetryLayer,
    upstream: &ScriptedUpstream,
    endpoint: &Endpoint,
) -> (
    Result<Response<llm_tower_retry::ResponseBody<SingleFrame>>, BoxError>,
    Attempts,
) {
    let log = Attempts::new();
    let result = layer
        .layer(upstream.clone())
        .oneshot(request(endpoint, &log))
        .await;
    (result, log)
}

#[tokio::test(start_paused = true)]
async fn retryable_statuses_are_retried_until_times() {
    for code in [408, 429, 500, 502, 503, 504, 529] {
        let upstream = scripted([
            Step::Status(code),
            Step::Status(code),
            Step::Status(code),
            Step::Status(200),
        ]);
        let (result, log) = send(&RetryLayer::new(), &upstream, &endpoint(count(2))).await;
        assert_eq!(
            upstream.calls().len(),
            3,
            "{code}: times 2 means three attempts"
        );
        assert_eq!(
            result.unwrap().status().as_u16(),
            code,
            "{code}: last response returned"
        );
        assert_eq!(log.len(), 3);
    }
}

#[tokio::test(start_paused = true)]
async fn non_retryable_statuses_are_not() {
    for code in [200, 201, 400, 401, 403, 404, 413, 422, 501] {
        let upstream = scripted([Step::Status(code)]);
        let (result, _) = send(&RetryLayer::new(), &upstream, &endpoint(count(3))).await;
        assert_eq!(upstream.calls().len(), 1, "{code}");
        assert_eq!(result.unwrap().status().as_u16(), code);
    }
}

#[tokio::test(start_paused = true)]
async fn connect_errors_and_resets_are_retried() {
    let upstream = scripted([
        Step::Fail(std::io::ErrorKind::ConnectionRefused),
        Step::Fail(std::io::ErrorKind::ConnectionReset),
        Step::Status(200),
    ]);
    let (result, log) = send(&RetryLayer::new(), &upstream, &endpoint(count(2))).await;
    assert_eq!(result.unwrap().status(), StatusCode::OK);
    let outcomes: Vec<_> = log.to_vec().iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Error(ErrorKind::Connect),
            Outcome::Error(ErrorKind::Closed),
            Outcome::Status(StatusCode::OK)
        ]
    );
    // Exhausted: the last error is returned.
    let upstream = scripted(vec![Step::Fail(std::io::ErrorKind::ConnectionRefused); 3]);
    let (result, _) = send(&RetryLayer::new(), &upstream, &endpoint(count(1))).await;
    assert_eq!(upstream.calls().len(), 2);
    assert_eq!(ErrorKind::of(&*result.unwrap_err()), ErrorKind::Connect);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_inner_error_is_not_retried() {
    let upstream = scripted([Step::Unrecognized, Step::Status(200)]);
    let (result, log) = send(&RetryLayer::new(), &upstream, &endpoint(count(2))).await;
    assert_eq!(
        upstream.calls().len(),
        1,
        "an unrecognised error was retried"
    );
    assert_eq!(
        ErrorKind::of(&*result.unwrap_err()),
        ErrorKind::Unrecognized
    );
    assert_eq!(
        log.to_vec()[0].outcome,
        Outcome::Error(ErrorKind::Unrecognized)
    );
    assert!(log.is_recorded_inside());

    // Classified by the user's hook, the same error is retried like a reset connection.
    let upstream = scripted([Step::Unrecognized, Step::Status(200)]);
    let log = Attempts::new();
    let service = tower::ServiceBuilder::new()
        .layer(RetryLayer::new())
        .layer(llm_tower_core::ClassifyErrorsLayer::new(|err| {
            err.to_string()
                .contains("(Connect)")
                .then_some(ErrorKind::Connect)
        }))
        .service(upstream.clone());
    let response = service
        .oneshot(request(&endpoint(count(2)), &log))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn attempt_counts_per_policy() {
    let always_503 = || {
        let upstream = ScriptedUpstream::new();
        upstream.set_default("ep", Step::Status(503));
        upstream.set_default(DEFAULT_ENDPOINT, Step::Status(503));
        upstream
    };
    let cases = [
        (RetryPolicy::NoRetry, 1),
        (count(0), 1),
        (count(3), 4),
        (RetryPolicy::default(), 3),
        (
            RetryPolicy::ExponentialBackoff(ExponentialBackoff {
                times: 5,
                ..ExponentialBackoff::default()
            }),
            6,
        ),
    ];
    for (policy, expected) in cases {
        let upstream = always_503();
        send(&RetryLayer::new(), &upstream, &endpoint(policy.clone()))
            .await
            .0
            .unwrap();
        assert_eq!(upstream.calls().len(), expected, "{policy:?}");
    }
    // Without Selected, the layer default applies.
    let upstream = always_503();
    let svc = RetryLayer::new()
        .default_policy(count(1))
        .layer(upstream.clone());
    svc.oneshot(Request::new(BufferedBody::default()))
        .await
        .unwrap();
    assert_eq!(upstream.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_stay_within_jitter_bounds() {
    let policy = RetryPolicy::ExponentialBackoff(ExponentialBackoff {
        times: 4,
        initial_interval: Duration::from_millis(100),
        max_interval: Duration::from_millis(300),
        multiplier: 2.0,
    });
    let ceilings = [100, 200, 300, 300].map(Duration::from_millis);
    let mut total = Duration::ZERO;
    for _ in 0..25 {
        let upstream = scripted(vec![Step::Status(503); 5]);
        send(&RetryLayer::new(), &upstream, &endpoint(policy.clone()))
            .await
            .0
            .unwrap();
        let times = call_times(&upstream);
        assert_eq!(times.len(), 5);
        for (i, pair) in times.windows(2).enumerate() {
            let gap = pair[1] - pair[0];
            assert!(gap <= ceilings[i], "retry {i}: {gap:?} > {:?}", ceilings[i]);
            total += gap;
        }
    }
    // Full jitter: on average about half the ceilings, certainly not zero or the maximum.
    let max_total: Duration = ceilings.iter().sum::<Duration>() * 25;
    assert!(
        total > max_total / 5 && total < max_total * 4 / 5,
        "{total:?} of at most {max_total:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn count_based_retries_immediately() {
    let upstream = scripted(vec![Step::Status(503); 3]);
    send(&RetryLayer::new(), &upstream, &endpoint(count(2)))
        .await
        .0
        .unwrap();
    let times = call_times(&upstream);
    assert_eq!(times[0], times[2]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let no_backoff = RetryPolicy::ExponentialBackoff(ExponentialBackoff {
        times: 1,
        initial_interval: Duration::ZERO,
        max_interval: Duration::from_secs(5),
        multiplier: 1.0,
    });
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(4));
    let cases = [
        (
            RETRY_AFTER,
            "2".to_owned(),
            Duration::from_secs(2),
            Duration::from_secs(2),
        ),
        (
            RETRY_AFTER_MS,
            "1500".to_owned(),
            Duration::from_millis(1500),
            Duration::from_millis(1500),
        ),
        (
            X_MS_RETRY_AFTER_MS,
            "700".to_owned(),
            Duration::from_millis(700),
            Duration::from_millis(700),
        ),
        // An HTTP-date has whole seconds: between 3 and 4 s from now.
        (
            RETRY_AFTER,
            date,
            Duration::from_secs(3),
            Duration::from_secs(4),
        ),
    ];
    for (name, value, at_least, at_most) in cases {
        let upstream = scripted([
            Step::header(429, name.clone(), value.clone()),
            Step::Status(200),
        ]);
        let (result, _) = send(&RetryLayer::new(), &upstream, &endpoint(no_backoff.clone())).await;
        assert_eq!(result.unwrap().status(), StatusCode::OK);
        let times = call_times(&upstream);
        let gap = times[1] - times[0];
        assert!(
            gap >= at_least && gap <= at_most,
            "{name}: {value}: waited {gap:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_over_the_cap_becomes_a_cooldown_hint() {
    // Default cap: the policy's max_interval (5 s).
    let upstream = scripted([Step::header(503, RETRY_AFTER, "30"), Step::Status(200)]);
    let (result, log) = send(
        &RetryLayer::new(),
        &upstream,
        &endpoint(RetryPolicy::default()),
    )
    .await;
    let response = result.unwrap();
    assert_eq!(upstream.calls().len(), 1, "no further attempt");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.extensions().get::<CooldownHint>(),
        Some(&CooldownHint(Duration::from_secs(30)))
    );
    assert_eq!(log.len(), 1);
    // An explicit cap; CountBased has no max_interval so 5 s applies by default.
    let upstream = scripted([Step::header(429, RETRY_AFTER_MS, "1500")]);
    let layer = RetryLayer::new().max_retry_after(Duration::from_secs(1));
    let (result, _) = send(&layer, &upstream, &endpoint(count(3))).await;
    assert_eq!(
        result.unwrap().extensions().get::<CooldownHint>(),
        Some(&CooldownHint(Duration::from_millis(1500)))
    );
    assert_eq!(upstream.calls().len(), 1);
    let upstream = scripted([Step::header(429, RETRY_AFTER, "6")]);
    let (result, _) = send(&RetryLayer::new(), &upstream, &endpoint(count(3))).await;
    assert!(result.unwrap().extensions().get::<CooldownHint>().is_some());
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_stops_retries() {
    // No percentage, one retry per second over one second: a reserve of exactly one retry.
    let layer = RetryLayer::new()
        .budget(RetryBudget {
            percent: 0.0,
            min_per_second: 1,
            ttl: Duration::from_secs(1),
        })
        .unwrap();
    let upstream = ScriptedUpstream::new();
    upstream.set_default("ep", Step::Status(503));
    upstream.set_default("other", Step::Status(503));
    let ep = endpoint(count(5));
    send(&layer, &upstream, &ep).await.0.unwrap();
    assert_eq!(upstream.calls().len(), 2, "one retry from the reserve");
    send(&layer, &upstream, &ep).await.0.unwrap();
    assert_eq!(upstream.calls().len(), 3, "budget empty: no retry");
    // Budgets are per endpoint: another endpoint still has its reserve.
    let other = Endpoint::builder("other", "http://127.0.0.1:9")
        .retry_policy(count(5))
        .build()
        .unwrap();
    send(&layer, &upstream, &other).await.0.unwrap();
    assert_eq!(upstream.calls().len(), 5);
}

/// A silent route stays silent: by default a per-try timeout is not retried on the same
/// endpoint (the balancer moves on at once); `retry_on: [timeout]` retries it.
#[tokio::test(start_paused = true)]
async fn per_try_timeout_is_retried_only_when_retry_on_names_it() {
    let silent_then_ok = || {
        scripted([
            Step::delay(Duration::from_secs(10), Step::Status(200)),
            Step::Status(200),
        ])
    };
    let builder = || {
        Endpoint::builder("ep", "http://127.0.0.1:9")
            .retry_policy(count(1))
            .timeout(Some(Duration::from_secs(1)))
    };

    let upstream = silent_then_ok();
    let started = Instant::now();
    let (result, log) = send(&RetryLayer::new(), &upstream, &builder().build().unwrap()).await;
    let err = result.unwrap_err();
    assert_eq!(ErrorKind::of(&*err), ErrorKind::Timeout);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(upstream.calls().len(), 1, "not retried on itself");
    assert_eq!(log.len(), 1);

    let ep = builder()
        .retry_on(RetryOn::of([RetryReason::Timeout]))
        .build()
        .unwrap();
    let upstream = silent_then_ok();
    let started = Instant::now();
    let (result, log) = send(&RetryLayer::new(), &upstream, &ep).await;
    assert_eq!(result.unwrap().status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let attempts = log.to_vec();
    assert_eq!(attempts[0].outcome, Outcome::Error(ErrorKind::Timeout));
    assert_eq!(attempts[0].latency, Duration::from_secs(1));
    assert_eq!(attempts[1].outcome, Outcome::Status(StatusCode::OK));
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_does_not_cut_a_started_body() {
    let ep = Endpoint::builder("ep", "http://127.0.0.1:9")
        .retry_policy(count(1))
        .timeout(Some(Duration::from_secs(1)))
        .build()
        .unwrap();
    let upstream = scripted([Step::SlowBody(Duration::from_secs(30))]);
    let (result, _) = send(&RetryLayer::new(), &upstream, &ep).await;
    let body = result
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "ep:200");
    assert_eq!(upstream.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn first_byte_timeout_retries_and_delivers_the_first_frame_once() {
    let builder = || {
        Endpoint::builder("ep", "http://127.0.0.1:9")
            .retry_policy(count(2))
            .first_byte_timeout(Some(Duration::from_secs(2)))
    };
    let slow_then_ok = || {
        scripted([
            Step::SlowBody(Duration::from_secs(60)),
            Step::SlowBody(Duration::from_millis(500)),
        ])
    };
    // By default a late first byte moves on at once: one try here.
    let upstream = slow_then_ok();
    let (result, _) = send(&RetryLayer::new(), &upstream, &builder().build().unwrap()).await;
    assert_eq!(
        ErrorKind::of(&*result.unwrap_err()),
        ErrorKind::FirstByteTimeout
    );
    assert_eq!(upstream.calls().len(), 1);

    let ep = builder()
        .retry_on(RetryOn::of([RetryReason::FirstByteTimeout]))
        .build()
        .unwrap();
    let upstream = slow_then_ok();
    let (result, log) = send(&RetryLayer::new(), &upstream, &ep).await;
    let body = result
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "ep:200", "first frame delivered exactly once");
    assert_eq!(upstream.calls().len(), 2);
    let attempts = log.to_vec();
    assert_eq!(
        attempts[0].outcome,
        Outcome::Error(ErrorKind::FirstByteTimeout)
    );
    assert_eq!(attempts[1].outcome, Outcome::Status(StatusCode::OK));
    // Error statuses do not wait for a body.
    let upstream = scripted([Step::Status(400)]);
    let (result, _) = send(&RetryLayer::new(), &upstream, &ep).await;
    assert_eq!(result.unwrap().status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_sends_identical_bytes() {
    let upstream = scripted(vec![Step::Status(502); 3]);
    send(&RetryLayer::new(), &upstream, &endpoint(count(2)))
        .await
        .0
        .unwrap();
    let calls = upstream.calls();
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .iter()
            .all(|call| call.body == br#"{"model":"m","messages":[]}"#[..])
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_stops_everything() {
    let upstream = scripted([Step::header(503, RETRY_AFTER, "3"), Step::Status(200)]);
    let ep = endpoint(RetryPolicy::default());
    let log = Attempts::new();
    let future = RetryLayer::new()
        .layer(upstream.clone())
        .oneshot(request(&ep, &log));
    // The client goes away during the 3 s backoff.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), future)
            .await
            .is_err()
    );
    assert_eq!(upstream.calls().len(), 1);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        upstream.calls().len(),
        1,
        "no attempt after the client left"
    );
    assert_eq!(log.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn attempt_log_records_every_try() {
    let upstream = scripted([
        Step::delay(Duration::from_millis(30), Step::Status(503)),
        Step::delay(Duration::from_millis(20), Step::Status(200)),
    ]);
    let (result, log) = send(&RetryLayer::new(), &upstream, &endpoint(count(2))).await;
    assert_eq!(result.unwrap().status(), StatusCode::OK);
    let attempts = log.to_vec();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (attempts[0].kind, attempts[0].index),
        (AttemptKind::First, 0)
    );
    assert_eq!(
        (attempts[1].kind, attempts[1].index),
        (AttemptKind::Retry, 1)
    );
    assert_eq!(attempts[0].endpoint.as_str(), "ep");
    assert_eq!(attempts[0].latency, Duration::from_millis(30));
    assert_eq!(attempts[1].latency, Duration::from_millis(20));
    assert_eq!(attempts[1].started, Duration::from_millis(30));
    assert_eq!(
        attempts[0].outcome,
        Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test(start_paused = true)]
async fn a_replay_remakes_the_request_only_when_a_retry_needs_it() {
    let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ep = endpoint(count(2));
    let log = Attempts::new();
    let replay = {
        let made = made.clone();
        let ep = ep.clone();
        let log = log.clone();
        llm_tower_core::Replay::new(move || {
            made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            request(&ep, &log)
        })
    };
    let with_replay = || {
        let mut request = request(&ep, &log);
        request.extensions_mut().insert(replay.clone());
        request
    };
    // Success at once: nothing is copied or remade.
    let upstream = scripted([Step::Status(200)]);
    let response = RetryLayer::new()
        .layer(upstream.clone())
        .oneshot(with_replay())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Two retries: the request is remade twice, identical each time.
    let upstream = scripted([Step::Status(503), Step::Status(503), Step::Status(200)]);
    let response = RetryLayer::new()
        .layer(upstream.clone())
        .oneshot(with_replay())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 2);
    let bodies: Vec<Bytes> = upstream.calls().into_iter().map(|c| c.body).collect();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
}
