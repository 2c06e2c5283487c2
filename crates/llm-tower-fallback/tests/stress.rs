//! Concurrency on real threads and real time.

mod common;

use std::io::ErrorKind::ConnectionRefused;
use std::time::Duration;

use http::Request;
use llm_tower_core::{Attempts, Outcome};
use llm_tower_fallback::{FallbackLayer, HealthRegistry};
use llm_tower_mock::scripted::{ScriptedUpstream, Step};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use common::with;

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
    let upstream = ScriptedUpstream::new();
    upstream.set_default("refusing", Step::Fail(ConnectionRefused));
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
                    let attempts = Attempts::of(response.extensions()).unwrap().to_vec();
                    let last = attempts.last().unwrap();
                    assert_eq!(last.outcome, Outcome::Status(response.status()));
                    assert!(
                        response
                            .body()
                            .get_ref()
                            .unwrap()
                            .bytes()
                            .starts_with(last.endpoint.as_str().as_bytes())
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
