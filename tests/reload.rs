//! Live reload through the gateway, over loopback: a changed file takes effect for new
//! requests while a stream started before it completes; health survives for the deployments
//! that remain; a bad file changes nothing.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_tower_gateway::{self as gateway, GatewayConfig, Reloader};
use llm_tower_mock::{Behavior, MockProvider};
use tokio::time::Instant;

use common::{CHAT, Gateway, header};

/// One endpoint of the configuration file (no per-try or stream timers: paused time).
fn endpoint(id: &str, mock: &MockProvider, priority: u32, retry: &str) -> String {
    format!(
        "  - {{ id: {id}, base_url: '{}', api_key: sk-{id}, priority: {priority}, \
         health_check_interval: 30s, timeout: null, stream_idle_timeout: null, \
         retry_policy: {retry} }}\n",
        mock.base_url()
    )
}

struct Reloading {
    gw: Gateway,
    reloader: Reloader,
    path: PathBuf,
}

impl Reloading {
    /// Serves the configuration `file` says, through a reloader of it.
    async fn start(file: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "llm-tower-reload-{}-{}",
            std::process::id(),
            std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.yaml");
        std::fs::write(&path, file).unwrap();
        let config = GatewayConfig::from_path(&path).unwrap();
        // A recorder of the test's own, never installed: `/metrics` renders health from the
        // registry.
        let metrics = llm_tower_gateway::prometheus_builder()
            .build_recorder()
            .handle();
        let app = gateway::router(&config, Some(metrics)).unwrap();
        let reloader = Reloader::new(&path, config.clone(), app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let routes = reloader.main().clone();
        // The front door's timers are off, as in every paused-time test (see common::serve).
        let mut settings = config.server;
        settings.header_read_timeout = None;
        settings.body_read_timeout = None;
        settings.idle_timeout = None;
        settings.send_timeout = None;
        let server = tokio::spawn(async move {
            gateway::serve(listener, routes, &settings, std::future::pending()).await
        });
        let gw = Gateway {
            addr,
            admin: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
            server,
        };
        Self { gw, reloader, path }
    }

    fn rewrite(&self, file: &str) {
        std::fs::write(&self.path, file).unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_reload_takes_effect_for_new_requests_and_keeps_health_and_streams() {
    let a = MockProvider::start().await.unwrap();
    let b = MockProvider::start().await.unwrap();
    let c = MockProvider::start().await.unwrap();
    let no_retry = "{ name: NoRetry }";
    let v1 = format!(
        "endpoints:\n{}{}",
        endpoint("a", &a, 0, no_retry),
        endpoint("b", &b, 1, no_retry)
    );
    let running = Reloading::start(&v1).await;
    let gw = &running.gw;

    // `a` fails once and is ejected for 30 s.
    a.push(Behavior::status(503));
    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    let ejected = gw.upstream("a").await;
    assert_eq!(ejected["status"], "ejected");
    let (left_before, looked_at) = (
        ejected["seconds_until_return"].as_f64().unwrap(),
        Instant::now(),
    );

    // A stream on `b`, started before the reload: its head and first chunk are here.
    b.push(Behavior::Stream {
        chunks: 4,
        interval: Duration::from_millis(500),
    });
    let stream = gw
        .post(r#"{"model":"mock-model","stream":true,"messages":[]}"#)
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    let mut stream = stream.into_body();
    let first = stream.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some());

    // v2: `b` retries once, and `c` is new.
    let retry_once = "{ name: CountBased, config: { times: 1 } }";
    running.rewrite(&format!(
        "endpoints:\n{}{}{}",
        endpoint("a", &a, 0, no_retry),
        endpoint("b", &b, 1, retry_once),
        endpoint("c", &c, 2, no_retry)
    ));
    let report = running.reloader.reload().unwrap();
    assert_eq!(report.generation.number, 2);
    assert!(report.needs_restart.is_empty());

    // The stream started on the old stack ends as it should.
    let rest = stream.collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));

    let upstreams = gw.json("/upstreams").await;
    assert_eq!(upstreams["config"]["generation"], 2);
    let ids: Vec<&str> = upstreams["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    // The ejection survives with its deadline.
    let ejected = gw.upstream("a").await;
    assert_eq!(ejected["status"], "ejected");
    let left_after = ejected["seconds_until_return"].as_f64().unwrap();
    let waited = looked_at.elapsed().as_secs_f64();
    assert!(
        (left_before - waited - left_after).abs() < 1e-3,
        "{left_before} {waited} {left_after}"
    );

    // New requests use the new retry policy: `b`'s 503 is retried on `b`.
    b.push(Behavior::status(503));
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "b");
    assert_eq!(header(&response, "x-llm-tower-attempts"), "2");
    // And the new endpoint is there to fall back to (`a` is still cooling down).
    b.script([Behavior::status(503), Behavior::status(503)]);
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "c");
    assert_eq!(a.request_count(), 1, "nothing was sent to the ejected one");
}

#[tokio::test(start_paused = true)]
async fn a_bad_file_leaves_the_running_configuration_serving() {
    let a = MockProvider::start().await.unwrap();
    let v1 = format!("endpoints:\n{}", endpoint("a", &a, 0, "{ name: NoRetry }"));
    let running = Reloading::start(&v1).await;
    running.rewrite(&format!(
        "endpoints:\n{}  - {{ id: b, base_url: 'http://127.0.0.1:1/v1', provider: nope }}\n",
        endpoint("a", &a, 0, "{ name: NoRetry }")
    ));
    let err = running.reloader.reload().unwrap_err().to_string();
    assert!(err.contains("endpoints[1].provider"), "{err}");
    let upstreams = running.gw.json("/upstreams").await;
    assert_eq!(upstreams["config"]["generation"], 1);
    assert_eq!(upstreams["upstreams"].as_array().unwrap().len(), 1);
    let response = running.gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "a");

    // What the listeners were started with is kept, and said to need a restart.
    // So is the health store the process shares health through (a connection of its own,
    // whatever the stack).
    running.rewrite(&format!(
        "listen: 127.0.0.1:9\nhealth_store: {{ redis: 'redis://127.0.0.1:1' }}\nendpoints:\n{}",
        endpoint("a", &a, 0, "{ name: NoRetry }")
    ));
    let report = running.reloader.reload().unwrap();
    assert_eq!(report.needs_restart, ["listen", "health_store"]);
    assert!(
        running
            .gw
            .json("/upstreams")
            .await
            .get("health_store")
            .is_none()
    );
    assert!(!report.changed, "nothing else changed: nothing was rebuilt");
    assert_eq!(report.generation.number, 1);
    let response = running.gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_removed_deployment_is_forgotten_and_its_stack_ends() {
    let a = MockProvider::start().await.unwrap();
    let b = MockProvider::start().await.unwrap();
    let no_retry = "{ name: NoRetry }";
    let checked_a = endpoint("a", &a, 0, no_retry).replace(
        "health_check_interval: 30s",
        "health_check_interval: 30s, health_check: { interval: 1s }",
    );
    let running = Reloading::start(&format!(
        "endpoints:\n{checked_a}{}",
        endpoint("b", &b, 1, no_retry)
    ))
    .await;
    let gw = &running.gw;
    a.push(Behavior::status(503));
    gw.post(CHAT).await;
    assert_eq!(gw.upstream("a").await["status"], "ejected");
    let checks = || {
        a.requests()
            .iter()
            .filter(|r| r.uri.path() == "/v1/models")
            .count()
    };

    // Its checker restores it when the cooldown ends, then checks it every second.
    tokio::time::sleep(Duration::from_secs(33)).await;
    assert_eq!(gw.upstream("a").await["status"], "healthy");
    assert!(checks() >= 2, "{}", checks());
    let metrics = gw.text("/metrics").await;
    for line in [
        r#"llm_tower_endpoint_healthy{endpoint="a"} 1"#,
        r#"llm_tower_ejections_total{endpoint="a"} 1"#,
        r#"llm_tower_health_checks_total{endpoint="a",result="passed"} "#,
        r#"llm_tower_health_check_latency_seconds{endpoint="a"} "#,
        r#"llm_tower_endpoint_healthy{endpoint="b"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }

    // Rewritten the same: nothing is rebuilt.
    let unchanged = running.reloader.reload().unwrap();
    assert!(!unchanged.changed);
    assert_eq!(unchanged.generation.number, 1);

    // `a` is removed: it is forgotten, and its stack (with its checker) ends.
    running.rewrite(&format!("endpoints:\n{}", endpoint("b", &b, 1, no_retry)));
    assert_eq!(running.reloader.reload().unwrap().generation.number, 2);
    let upstreams = gw.json("/upstreams").await;
    assert_eq!(upstreams["upstreams"].as_array().unwrap().len(), 1);
    // Nor is it in /metrics' health any more (a recorder would have kept its last values).
    let metrics = gw.text("/metrics").await;
    assert!(!metrics.contains(r#"{endpoint="a""#), "{metrics}");
    assert!(metrics.contains(r#"llm_tower_endpoint_healthy{endpoint="b"} 1"#));
    let before = checks();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        checks(),
        before,
        "no check from a stack that was reloaded away"
    );

    // Added back, it starts fresh: its old ejection is not remembered.
    running.rewrite(&format!(
        "endpoints:\n{}{}",
        endpoint("a", &a, 0, no_retry),
        endpoint("b", &b, 1, no_retry)
    ));
    running.reloader.reload().unwrap();
    let state = gw.upstream("a").await;
    assert_eq!(
        (state["status"].as_str(), state["total_ejections"].as_u64()),
        (Some("healthy"), Some(0))
    );
    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "a");
}
