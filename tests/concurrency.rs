//! Thousands of concurrent requests on a multi-threaded runtime against endpoints that flap
//! (healthy, failing now and then, refusing connections), over real loopback sockets.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use llm_tower::{Attempts, Config, CountBased, EndpointConfig, Outcome, RetryPolicy, Upstream};
use llm_tower_mock::{Behavior, MockProvider};
use tower::ServiceExt;

const REQUESTS: usize = 2000;

fn endpoint(id: &str, base_url: String) -> EndpointConfig {
    EndpointConfig {
        health_check_interval: Duration::from_millis(5),
        timeout: Some(Duration::from_secs(10)),
        retry_policy: RetryPolicy::CountBased(CountBased { times: 1 }),
        ..EndpointConfig::new(id, base_url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_requests_against_flapping_endpoints() {
    let steady = MockProvider::start().await.unwrap();
    let flappy = MockProvider::start().await.unwrap();
    flappy.set_cycle(vec![
        Behavior::Reply,
        Behavior::status(503),
        Behavior::Reply,
        Behavior::retry_after(429, "0"),
        Behavior::CloseBeforeHead,
        Behavior::status(502),
    ]);
    let refusing = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", listener.local_addr().unwrap())
    };
    let config = Config::with_endpoints(vec![
        endpoint("steady", steady.base_url()),
        endpoint("flappy", flappy.base_url()),
        endpoint("refusing", refusing),
    ]);
    let upstream = Upstream::from_config(&config).unwrap();
    let registry = upstream.health().clone();
    let service = upstream.build().unwrap();

    let tasks: Vec<_> = (0..REQUESTS)
        .map(|id| {
            let service = service.clone();
            tokio::spawn(async move {
                let body = format!(r#"{{"id":{id},"messages":[]}}"#);
                let request = Request::post("/chat/completions")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let response = service.oneshot(request).await.unwrap();
                let status = response.status();
                let attempts = Attempts::of(response.extensions()).unwrap().to_vec();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (id, status, attempts, body)
            })
        })
        .collect();

    let mut answered = HashMap::new();
    for task in tasks {
        let (id, status, attempts, body) = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("no deadlock")
            .unwrap();
        // The response is the last attempt's, and every request ends answered.
        let last = attempts.last().expect("at least one attempt");
        assert_eq!(Outcome::Status(status), last.outcome, "request {id}");
        assert!(!body.is_empty());
        assert!(
            answered.insert(id, attempts).is_none(),
            "request {id} answered twice"
        );
    }
    assert_eq!(answered.len(), REQUESTS, "no lost response");

    // The attempt lists agree with what each upstream recorded, request by request.
    for (mock, name) in [(&steady, "steady"), (&flappy, "flappy")] {
        let mut recorded: HashMap<usize, usize> = HashMap::new();
        // Health checks (`GET /models`, every 5 ms while a deployment is out) are not
        // client requests.
        for request in mock
            .requests()
            .into_iter()
            .filter(|r| r.uri.path().ends_with("/chat/completions"))
        {
            let id = request.json().unwrap()["id"].as_u64().unwrap() as usize;
            *recorded.entry(id).or_default() += 1;
        }
        for (id, attempts) in &answered {
            let listed = attempts
                .iter()
                .filter(|a| a.endpoint.as_str() == name)
                .count();
            assert_eq!(
                recorded.get(id).copied().unwrap_or(0),
                listed,
                "{name}, request {id}"
            );
        }
    }
    let refused: usize = answered
        .values()
        .flat_map(|attempts| attempts.iter())
        .filter(|a| a.endpoint.as_str() == "refusing")
        .count();
    assert!(
        refused > 0,
        "the refusing endpoint was tried (and ejected) along the way"
    );

    for snapshot in registry.snapshot() {
        assert_eq!(snapshot.in_flight, 0, "{snapshot:?}");
        assert!(
            !snapshot.probe_in_flight,
            "no probe slot leaked: {snapshot:?}"
        );
    }
}
