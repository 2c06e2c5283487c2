//! The fault matrix: for each failure, what the client gets, what each upstream received, the
//! attempt list (`x-llm-tower-attempts`, `x-llm-tower-endpoint`) and the health afterwards.
//! Real sockets, llm-tower-mock upstreams, paused time (cooldowns and backoffs are crossed by
//! the clock, never by wall-clock sleeps).
//!
//! Over 500 lines on purpose: it is one matrix, read row against row; split, the rows that
//! differ by one setting would land in different files.
#![allow(clippy::float_cmp)]

mod common;

use std::time::{Duration, SystemTime};

use common::{CHAT, Gateway, body, endpoint, error_json, header, refusing_base_url, start};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use llm_tower::{
    Config, ExponentialBackoff, RetryBudget, RetryOn, RetryPolicy, RetryReason, WhenAllUnhealthy,
};
use llm_tower_mock::{Behavior, MockProvider};

async fn two_mocks() -> (MockProvider, MockProvider) {
    (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    )
}

fn pair(a: &MockProvider, b: &MockProvider) -> Config {
    Config::with_endpoints(vec![
        endpoint("a", a.base_url(), 0),
        endpoint("b", b.base_url(), 1),
    ])
}

#[tokio::test(start_paused = true)]
async fn connection_refused_falls_back() {
    let b = MockProvider::start().await.unwrap();
    let gw = start(Config::with_endpoints(vec![
        endpoint("a", refusing_base_url(), 0),
        endpoint("b", b.base_url(), 1),
    ]))
    .await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!(
        header(&response, "x-llm-tower-attempts"),
        "3",
        "a, a (retry), b"
    );
    assert_eq!(b.request_count(), 1);
    assert_eq!(gw.upstream("a").await["status"], "ejected");
    assert_eq!(gw.upstream("b").await["status"], "healthy");
}

#[tokio::test(start_paused = true)]
async fn reset_mid_stream_fails_the_stream_and_is_not_retried() {
    let (a, b) = two_mocks().await;
    a.push(Behavior::ResetAfterChunks(2));
    let gw = start(pair(&a, &b)).await;
    let response = gw.post(r#"{"stream":true}"#).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-attempts"), "1");
    let mut stream = response.into_body();
    let mut chunks = 0;
    let outcome = loop {
        match stream.frame().await {
            Some(Ok(frame)) if frame.is_data() => chunks += 1,
            Some(Ok(_)) => {}
            Some(Err(err)) => break Err(err),
            None => break Ok(()),
        }
    };
    assert!(
        outcome.is_err(),
        "the client must see the stream fail, not a short clean stream"
    );
    assert!(chunks >= 1, "the chunks sent before the reset arrived");
    assert_eq!(
        a.request_count(),
        1,
        "nothing retried after bytes reached the client"
    );
    assert_eq!(b.request_count(), 0);
}

/// A provider that accepts and never answers costs one per-try timeout, not three: a timed-out
/// try moves to the next deployment at once (`retry_on` leaves timeouts out by default).
#[tokio::test(start_paused = true)]
async fn a_silent_route_costs_one_per_try_timeout() {
    let (a, b) = two_mocks().await;
    a.set_default(Behavior::StallHead);
    let mut config = pair(&a, &b);
    config.endpoints[0].timeout = Some(Duration::from_secs(30));
    let gw = start(config).await;
    let started = tokio::time::Instant::now();
    let response = gw.post(CHAT).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!(
        header(&response, "x-llm-tower-attempts"),
        "2",
        "a once, then b"
    );
    assert_eq!(a.request_count(), 1, "the silent route is not tried again");
    assert!(
        elapsed >= Duration::from_secs(30) && elapsed <= Duration::from_secs(31),
        "{elapsed:?}"
    );
    // It still counts against a's health (default threshold: one exhausted request).
    assert_eq!(gw.upstream("a").await["status"], "ejected");
}

/// `retry_on: [timeout]` brings back retries of a slow head on the same deployment.
#[tokio::test(start_paused = true)]
async fn slow_head_beyond_the_per_try_timeout_is_retried_when_retry_on_says_so() {
    let (a, b) = two_mocks().await;
    a.set_default(Behavior::delay(Duration::from_secs(30), Behavior::Reply));
    let mut config = pair(&a, &b);
    config.endpoints[0].timeout = Some(Duration::from_secs(2));
    config.endpoints[0].retry_on = RetryOn::of([RetryReason::Timeout]);
    let gw = start(config).await;
    let started = tokio::time::Instant::now();
    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!(header(&response, "x-llm-tower-attempts"), "3");
    assert_eq!(
        a.request_count(),
        2,
        "first try and one retry, each cut at 2 s"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4) && started.elapsed() < Duration::from_secs(30)
    );
    assert_eq!(gw.upstream("a").await["status"], "ejected");
}

#[tokio::test(start_paused = true)]
async fn stalled_body_with_first_byte_timeout() {
    let (a, b) = two_mocks().await;
    a.set_default(Behavior::StallBody);
    let mut config = pair(&a, &b);
    config.endpoints[0].first_byte_timeout = Some(Duration::from_secs(1));
    let gw = start(config).await;
    let started = tokio::time::Instant::now();
    let response = gw.post(r#"{"stream":true}"#).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        started.elapsed() <= Duration::from_millis(1100),
        "one first-byte timeout"
    );
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!(
        header(&response, "x-llm-tower-attempts"),
        "2",
        "a once, then b"
    );
    let text = String::from_utf8(body(response).await.to_vec()).unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the backup's stream arrives whole"
    );
    assert_eq!(a.request_count(), 1);
    assert_eq!(gw.upstream("a").await["status"], "ejected");
}

#[tokio::test(start_paused = true)]
async fn rate_limited_with_retry_after_in_every_form() {
    let in_20s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(20));
    let long_waits = [
        Behavior::retry_after(429, "20"),
        Behavior::retry_after(429, in_20s),
        Behavior::Status {
            status: 429,
            retry_after: None,
            headers: vec![("retry-after-ms".into(), "20000".into())],
            body: None,
        },
    ];
    for wait in long_waits {
        let (a, b) = two_mocks().await;
        a.push(wait.clone());
        let gw = start(pair(&a, &b)).await;
        let response = gw.post(CHAT).await;
        assert_eq!(header(&response, "x-llm-tower-endpoint"), "b", "{wait:?}");
        assert_eq!(
            a.request_count(),
            1,
            "a wait over the cap is not slept: {wait:?}"
        );
        let a_state = gw.upstream("a").await;
        assert_eq!(a_state["status"], "ejected");
        let remaining = a_state["seconds_until_return"].as_f64().unwrap();
        assert!((18.0..=20.0).contains(&remaining), "{wait:?}: {remaining}");
    }
    // A short wait is slept, on the same endpoint.
    let (a, b) = two_mocks().await;
    a.push(Behavior::Status {
        status: 429,
        retry_after: None,
        headers: vec![("retry-after-ms".into(), "300".into())],
        body: None,
    });
    let mut config = pair(&a, &b);
    config.endpoints[0].retry_policy = RetryPolicy::default();
    let gw = start(config).await;
    let started = tokio::time::Instant::now();
    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "a");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!((a.request_count(), b.request_count()), (2, 0));
}

/// Every endpoint answers 503. The retry budget keeps the load on the upstreams near the
/// offered load; `when_all_unhealthy` decides what happens once all are cooling down.
#[tokio::test(start_paused = true)]
async fn storm_of_503_on_every_endpoint() {
    const REQUESTS: usize = 200;
    for mode in [WhenAllUnhealthy::TrySoonest, WhenAllUnhealthy::Fail] {
        let (a, b) = two_mocks().await;
        a.set_default(Behavior::status(503));
        b.set_default(Behavior::status(503));
        let mut config = pair(&a, &b);
        config.fallback.when_all_unhealthy = mode;
        config.retry.budget = RetryBudget {
            percent: 10.0,
            min_per_second: 1,
            ttl: Duration::from_secs(1),
        };
        for ep in &mut config.endpoints {
            ep.retry_policy = RetryPolicy::ExponentialBackoff(ExponentialBackoff {
                times: 3,
                ..ExponentialBackoff::default()
            });
        }
        let gw = start(config).await;
        let mut statuses = Vec::new();
        for _ in 0..REQUESTS {
            statuses.push(gw.post(CHAT).await.status());
        }
        let upstream_calls = a.request_count() + b.request_count();
        eprintln!("503 storm, {mode:?}: {upstream_calls} upstream calls for {REQUESTS} requests");
        match mode {
            WhenAllUnhealthy::TrySoonest => {
                assert!(
                    statuses
                        .iter()
                        .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE)
                );
                // Without a budget: 2 endpoints x 4 attempts = 8 calls per request.
                let offered = REQUESTS * 2;
                assert!(
                    upstream_calls <= offered + offered / 5,
                    "{upstream_calls} upstream calls for {REQUESTS} requests"
                );
            }
            WhenAllUnhealthy::Fail => {
                // The first request ejects both endpoints; the rest are refused locally
                // (the paused clock does not move between requests).
                assert_eq!(statuses[0], StatusCode::SERVICE_UNAVAILABLE);
                assert!(upstream_calls <= 8, "{upstream_calls}");
                let response = gw.post(CHAT).await;
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(header(&response, "retry-after"), "5");
                assert_eq!(header(&response, "x-llm-tower-attempts"), "0");
                let json = error_json(response).await;
                assert_eq!(json["error"]["code"], "no_endpoint_available");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn bad_request_is_returned_as_is_and_bad_key_falls_back() {
    let (a, b) = two_mocks().await;
    a.push(Behavior::Status {
        status: 400,
        retry_after: None,
        headers: vec![],
        body: Some(r#"{"error":{"message":"bad prompt","type":"invalid_request_error"}}"#.into()),
    });
    let gw = start(pair(&a, &b)).await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&response, "x-llm-tower-attempts"), "1");
    assert_eq!(error_json(response).await["error"]["message"], "bad prompt");
    assert_eq!((a.request_count(), b.request_count()), (1, 0));
    assert_eq!(gw.upstream("a").await["status"], "healthy");

    a.push(Behavior::status(401));
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!(
        header(&response, "x-llm-tower-attempts"),
        "2",
        "401 is not retried"
    );
    assert_eq!((a.request_count(), b.request_count()), (2, 1));
    assert_eq!(gw.upstream("a").await["status"], "ejected");
}

#[tokio::test(start_paused = true)]
async fn client_disconnect_during_backoff_stops_all_attempts() {
    let (a, b) = two_mocks().await;
    a.push(Behavior::retry_after(503, "3"));
    let mut config = pair(&a, &b);
    config.endpoints[0].retry_policy = RetryPolicy::default();
    let gw = start(config).await;
    // The client gives up after one second, during the 3 s backoff.
    let gave_up = tokio::time::timeout(Duration::from_secs(1), gw.post(CHAT)).await;
    assert!(gave_up.is_err());
    assert_eq!(a.request_count(), 1);
    tokio::time::advance(Duration::from_secs(30)).await;
    // Let anything still scheduled run.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        (a.request_count(), b.request_count()),
        (1, 0),
        "no attempt after the client left"
    );
    let a_state = gw.upstream("a").await;
    assert_eq!(a_state["in_flight"], 0);
}

#[tokio::test(start_paused = true)]
async fn recovery_after_the_cooldown_with_exactly_one_probe() {
    let (a, b) = two_mocks().await;
    a.push(Behavior::CloseBeforeHead);
    a.push(Behavior::CloseBeforeHead);
    let mut config = pair(&a, &b);
    config.endpoints[0].health_check_interval = Duration::from_secs(5);
    let gw = start(config).await;
    gw.post(CHAT).await;
    assert_eq!(gw.upstream("a").await["status"], "ejected");
    tokio::time::advance(Duration::from_secs(5)).await;
    // The probe is slow, so the other requests arrive while it is in flight.
    a.push(Behavior::delay(Duration::from_secs(1), Behavior::Reply));
    let before = a.request_count();
    let requests: Vec<_> = (0..20).map(|_| gw.post(CHAT)).collect();
    let responses = futures_join_all(requests).await;
    assert_eq!(a.request_count() - before, 1, "exactly one probe");
    let from_a = responses
        .iter()
        .filter(|r| header(r, "x-llm-tower-endpoint") == "a")
        .count();
    assert_eq!(from_a, 1);
    assert!(responses.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(gw.upstream("a").await["status"], "healthy");
}

/// Runs futures concurrently on the current task (no extra dependency).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in pinned.iter_mut().zip(results.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => {
                        *result = Some(output);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}

/// A stream asked of a gateway whose endpoint `a` answers with `chunks` chunks `interval`
/// apart, under a stream idle timeout of 5 s: the gateway, the mocks (`a`, `b`), when the
/// request was sent, and its answer (a 200).
async fn streamed(
    chunks: usize,
    interval: Duration,
) -> (
    Gateway,
    [MockProvider; 2],
    tokio::time::Instant,
    Response<Incoming>,
) {
    let (a, b) = two_mocks().await;
    a.push(Behavior::Stream { chunks, interval });
    let mut config = pair(&a, &b);
    config.endpoints[0].stream_idle_timeout = Some(Duration::from_secs(5));
    let gw = start(config).await;
    let started = tokio::time::Instant::now();
    let response = gw.post(r#"{"stream":true}"#).await;
    assert_eq!(response.status(), StatusCode::OK);
    (gw, [a, b], started, response)
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_ends_in_an_error_within_the_idle_timeout() {
    // The first event, then nothing for far longer than the idle timeout.
    let (gw, [_a, b], started, response) = streamed(3, Duration::from_secs(3600)).await;
    let mut stream = response.into_body();
    let first = stream.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    // The client sees an error, never a clean end of the stream.
    let mut ended = None;
    while let Some(frame) = stream.frame().await {
        if let Err(err) = frame {
            ended = Some(err);
            break;
        }
    }
    assert!(ended.is_some(), "the stalled stream ended cleanly");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(5) && elapsed < Duration::from_secs(60),
        "{elapsed:?}"
    );
    // The endpoint is blamed: one failure counted (with the default threshold, an ejection).
    assert_eq!(gw.upstream("a").await["status"], "ejected");
    assert_eq!(b.request_count(), 0, "bytes were out: no fallback");
}

/// The idle limit counts from the last frame, not from the start: a stream slower in all than
/// the limit, but never silent that long, goes to its end.
#[tokio::test(start_paused = true)]
async fn a_stream_never_idle_for_the_limit_ends_cleanly_however_long_it_lasts() {
    let (gw, _mocks, started, response) = streamed(5, Duration::from_secs(3)).await;
    let text = String::from_utf8(body(response).await.to_vec()).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(gw.upstream("a").await["status"], "healthy");
}

#[tokio::test(start_paused = true)]
async fn a_head_then_nothing_is_a_failed_try_before_any_byte_reached_the_client() {
    let (a, b) = two_mocks().await;
    a.set_default(Behavior::StallBody);
    let mut config = pair(&a, &b);
    // No first_byte_timeout: the stream idle timeout bounds the wait for the first byte.
    config.endpoints[0].stream_idle_timeout = Some(Duration::from_secs(2));
    let gw = start(config).await;
    let response = gw.post(r#"{"stream":true}"#).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!(
        header(&response, "x-llm-tower-attempts"),
        "2",
        "a (its first byte late: not retried there), then b"
    );
    let text = String::from_utf8(body(response).await.to_vec()).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test(start_paused = true)]
async fn a_probe_is_a_single_try_and_falls_back_at_once() {
    let (a, b) = two_mocks().await;
    a.set_default(Behavior::status(503));
    let mut config = pair(&a, &b);
    config.endpoints[0].health_check_interval = Duration::from_secs(5);
    config.endpoints[0].retry_policy = RetryPolicy::ExponentialBackoff(ExponentialBackoff {
        times: 2,
        ..ExponentialBackoff::default()
    });
    let gw = start(config).await;
    gw.post(CHAT).await;
    assert_eq!(a.request_count(), 3, "an ordinary request retries");
    assert_eq!(gw.upstream("a").await["status"], "ejected");

    tokio::time::advance(Duration::from_secs(5)).await;
    let started = tokio::time::Instant::now();
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!(
        header(&response, "x-llm-tower-attempts"),
        "2",
        "the probe, then b"
    );
    assert_eq!(a.request_count(), 4, "the probe was tried once");
    assert!(
        started.elapsed() < Duration::from_millis(1),
        "no backoff was waited"
    );
    let a_health = gw.upstream("a").await;
    assert_eq!(a_health["status"], "ejected");
    assert_eq!(a_health["ejections"], 2, "the cooldown escalates");
}

#[tokio::test(start_paused = true)]
async fn a_probe_to_a_blackholed_endpoint_costs_one_timeout() {
    let b = MockProvider::start().await.unwrap();
    let (_listener, blackholed) = common::blackhole();
    let mut a = endpoint("a", blackholed, 0);
    a.timeout = Some(Duration::from_secs(1));
    // Timeouts retried here, so that the probe's single try shows.
    a.retry_on = RetryOn::ALL;
    a.health_check_interval = Duration::from_secs(5);
    a.retry_policy = RetryPolicy::ExponentialBackoff(ExponentialBackoff {
        times: 2,
        initial_interval: Duration::from_millis(100),
        ..ExponentialBackoff::default()
    });
    let gw = start(Config::with_endpoints(vec![
        a,
        endpoint("b", b.base_url(), 1),
    ]))
    .await;
    // The first request learns that `a` is gone: three timeouts and two backoffs.
    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-attempts"), "4");
    assert_eq!(gw.upstream("a").await["status"], "ejected");

    tokio::time::advance(Duration::from_secs(5)).await;
    let started = tokio::time::Instant::now();
    let response = gw.post(CHAT).await;
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!(header(&response, "x-llm-tower-attempts"), "2");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
        "the probe cost {waited:?}, more than one per-try timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_broken_body_before_any_byte_is_a_failure_not_a_success() {
    let b = MockProvider::start().await.unwrap();
    // A 200 whose first chunk is not a chunk.
    let broken = common::raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nZZZ\r\nnot a chunk\r\n",
    )
    .await;
    let gw = start(Config::with_endpoints(vec![
        endpoint("a", broken, 0),
        endpoint("b", b.base_url(), 1),
    ]))
    .await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!(
        header(&response, "x-llm-tower-attempts"),
        "3",
        "a, a again, b"
    );
    let json: serde_json::Value = serde_json::from_slice(&body(response).await).unwrap();
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(gw.upstream("a").await["status"], "ejected");
}

#[tokio::test(start_paused = true)]
async fn an_unsolicited_101_never_reaches_the_client() {
    let upgrade = common::raw_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await;
    let gw = start(Config::with_endpoints(vec![endpoint("a", upgrade, 0)])).await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(response.headers().get("upgrade").is_none());
    let json = error_json(response).await;
    assert_eq!(json["error"]["code"], "upstream_protocol_error");
    assert_eq!(gw.upstream("a").await["status"], "ejected");
}

#[tokio::test(start_paused = true)]
async fn an_oversized_upstream_head_fails_the_attempt() {
    // 70 KB of headers: over the client's default 64 KiB head limit (which hyper's read
    // buffer alone would let through when the head arrives in one read).
    let reply: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nx-huge: {}\r\ncontent-length: 2\r\n\r\n{{}}",
            "a".repeat(70_000)
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let huge = common::raw_upstream(reply).await;
    let gw = start(Config::with_endpoints(vec![endpoint("a", huge, 0)])).await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(response.headers().get("x-huge").is_none());
    let json = error_json(response).await;
    assert_eq!(json["error"]["code"], "upstream_protocol_error");
}

#[tokio::test(start_paused = true)]
async fn a_broken_error_body_is_a_failure_with_a_json_answer() {
    // A 400 whose chunked body is not a chunk: nothing of it may reach the client as if it
    // were the upstream's answer.
    let broken = common::raw_upstream(
        b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    )
    .await;
    let mut a = endpoint("a", broken, 0);
    a.retry_policy = RetryPolicy::NoRetry;
    let gw = start(Config::with_endpoints(vec![a])).await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let json = error_json(response).await;
    assert_eq!(json["error"]["code"], "upstream_protocol_error");
}

#[tokio::test(start_paused = true)]
async fn the_endpoint_header_names_whose_response_it_is() {
    // `a` answers 503; the fallback `b` refuses connections: the client gets a's response,
    // and the header must say so, not name the last endpoint tried.
    let a = MockProvider::start().await.unwrap();
    a.set_default(Behavior::status(503));
    let mut first = endpoint("a", a.base_url(), 0);
    first.retry_policy = RetryPolicy::NoRetry;
    let mut second = endpoint("b", refusing_base_url(), 1);
    second.retry_policy = RetryPolicy::NoRetry;
    let gw = start(Config::with_endpoints(vec![first, second])).await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "x-llm-tower-attempts"), "2");
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "a");
}
