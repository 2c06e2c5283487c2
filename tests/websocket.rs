//! WebSocket passthrough, black-box: a client speaking WebSocket to the gateway (with
//! `tokio-tungstenite`, as a Realtime client would) and WebSocket upstreams of the test's own.
//! The upgrade goes through the stack: client keys, the deployment chosen by `?model=`, its
//! key in place of the client's, fallback while a handshake is refused; then the messages
//! are relayed untouched both ways, until a side closes, a message is too large, the socket
//! idles, or the gateway shuts down — each told with a close code.

mod common;

use std::time::Duration;

use common::websocket::{Seen, closed_with, connect, connect_with, next, ws_upstream};
use common::{endpoint, json_reply, scripted_raw_upstream, with_keys};
use futures_util::SinkExt;
use llm_tower::{Config, ModelsConfig};
use llm_tower_gateway::{GatewayConfig, WebSocketSettings};
use llm_tower_mock::MockProvider;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const KEY: &str = "gw-team-a-0123456789abcdef";

/// The gateway with `config`'s endpoints, WebSockets on `/realtime` with `settings`.
async fn gateway(config: Config, settings: &str) -> common::Gateway {
    gateway_until(config, settings, std::future::pending()).await
}

async fn gateway_until(
    config: Config,
    settings: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> common::Gateway {
    let mut gateway: GatewayConfig = with_keys(&MockProvider::start().await.unwrap());
    gateway.upstream = config;
    gateway.websocket = Some(serde_json::from_str::<WebSocketSettings>(settings).unwrap());
    common::serve(gateway, Some(metrics()), shutdown).await
}

/// The process's metrics recorder (the relays run on any of the runtime's threads), once.
fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            llm_tower_gateway::prometheus_builder()
                .install_recorder()
                .unwrap()
        })
        .clone()
}

fn realtime(url: String, models: &[(&str, &str)]) -> llm_tower::EndpointConfig {
    realtime_as("a", url, models)
}

fn realtime_as(id: &str, url: String, models: &[(&str, &str)]) -> llm_tower::EndpointConfig {
    let mut a = endpoint(id, url, 0);
    let models = models.iter().map(|(n, u)| ((*n).into(), (*u).into()));
    a.models = Some(ModelsConfig(models.collect()));
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_relayed_in_order_both_ways_with_the_deployment_s_key() {
    let (url, seen) = ws_upstream().await;
    let endpoints = vec![realtime(url, &[("realtime", "gpt-4o-realtime-preview")])];
    let gw = gateway(Config::with_endpoints(endpoints), r#"["/realtime"]"#).await;

    // As a browser would send them: a key among the subprotocols, compression offered.
    let offered = [
        (
            "sec-websocket-protocol",
            "realtime, openai-insecure-api-key.gw-team-a-0123456789abcdef",
        ),
        (
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        ),
    ];
    let mut socket = connect_with(&gw, "/v1/realtime?model=realtime", Some(KEY), &offered)
        .await
        .unwrap();
    assert_eq!(
        next(&mut socket).await,
        Message::text(r#"{"type":"session.created"}"#)
    );
    let sent = [
        Message::text(r#"{"type":"response.create"}"#),
        Message::binary(vec![0u8, 159, 146, 150]),
        Message::text("second"),
    ];
    for message in &sent {
        socket.send(message.clone()).await.unwrap();
    }
    for message in sent {
        assert_eq!(next(&mut socket).await, message);
    }
    socket.close(None).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [Seen {
            // The alias's upstream name, in the query the deployment reads.
            target: "/v1/realtime?model=gpt-4o-realtime-preview".into(),
            credential: "Bearer sk-upstream-a".into(),
            // No key among the subprotocols, no compression: never the client's key.
            protocols: Some("realtime".into()),
            extensions: None,
        }]
    );
}

/// An Azure OpenAI deployment gets its key as `api-key`, and its Realtime URL's
/// `deployment=` naming the model as Azure knows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_deployment_gets_its_key_and_deployment_in_azure_s_scheme() {
    let (url, seen) = ws_upstream().await;
    let mut azure = realtime(url, &[("gpt-realtime", "my-realtime-deployment")]);
    azure.provider = llm_tower::ProviderName::Azure;
    let gw = gateway(Config::with_endpoints(vec![azure]), r#"["/realtime"]"#).await;
    let path = "/v1/realtime?api-version=2025-04-01-preview&model=gpt-realtime";
    let mut socket = connect(&gw, path, Some(KEY)).await.unwrap();
    next(&mut socket).await;
    let seen = &seen.lock().unwrap()[0];
    assert_eq!(
        seen.target,
        "/v1/realtime?api-version=2025-04-01-preview&model=my-realtime-deployment&deployment=my-realtime-deployment"
    );
    assert_eq!(seen.credential, "api-key sk-upstream-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_handshake_falls_back_and_a_broken_upstream_after_the_101_is_told() {
    // `a` refuses the upgrade with a 503; `b` takes it.
    let busy = json_reply(503, &serde_json::json!({"error": {"message": "busy"}}));
    let (refusing, refused) = scripted_raw_upstream(vec![busy]).await;
    let (url, seen) = ws_upstream().await;
    let mut b = endpoint("b", url, 1);
    b.models = Some(ModelsConfig(vec![(
        "gpt-4o-realtime".into(),
        "gpt-4o-realtime".into(),
    )]));
    let endpoints = vec![
        realtime(refusing, &[("gpt-4o-realtime", "gpt-4o-realtime")]),
        b,
    ];
    let gw = gateway(Config::with_endpoints(endpoints), r#"["/realtime"]"#).await;

    let mut socket = connect(&gw, "/v1/realtime?model=gpt-4o-realtime", Some(KEY))
        .await
        .unwrap();
    assert_eq!(
        refused.lock().unwrap().len(),
        2,
        "a was asked first (and retried once)"
    );
    assert_eq!(seen.lock().unwrap()[0].credential, "Bearer sk-upstream-b");
    assert_eq!(
        next(&mut socket).await,
        Message::text(r#"{"type":"session.created"}"#)
    );

    // After the 101 there is no falling back: the client is told the upstream broke.
    socket.send(Message::text("break")).await.unwrap();
    let (code, reason) = closed_with(&mut socket).await;
    assert_eq!(code, CloseCode::Error, "{reason}");
    assert!(reason.contains("upstream"), "{reason}");
    assert_eq!(seen.lock().unwrap().len(), 1, "b was not asked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_and_an_idle_socket_are_closed() {
    let (url, _) = ws_upstream().await;
    let endpoints = vec![realtime(url, &[("m", "m")])];
    let settings =
        r#"{ "paths": ["/realtime"], "max_message_bytes": 1024, "idle_timeout": "300ms" }"#;
    let gw = gateway(Config::with_endpoints(endpoints), settings).await;

    let mut socket = connect(&gw, "/v1/realtime?model=m", Some(KEY))
        .await
        .unwrap();
    next(&mut socket).await;
    socket.send(Message::text("x".repeat(2048))).await.unwrap();
    let (code, reason) = closed_with(&mut socket).await;
    assert_eq!(code, CloseCode::Size, "{reason}");

    let mut quiet = connect(&gw, "/v1/realtime?model=m", Some(KEY))
        .await
        .unwrap();
    next(&mut quiet).await;
    let (code, reason) = closed_with(&mut quiet).await;
    assert_eq!(code, CloseCode::Away, "{reason}");
    assert!(reason.contains("idle"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_needs_a_client_key_and_a_websocket_route() {
    let (url, seen) = ws_upstream().await;
    let endpoints = vec![realtime(url, &[("m", "m")])];
    let gw = gateway(Config::with_endpoints(endpoints), r#"["/realtime"]"#).await;

    let refused = connect(&gw, "/v1/realtime?model=m", None)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    // Models are routed: a socket that names none is told how to name one.
    let unnamed = connect(&gw, "/v1/realtime", Some(KEY)).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(answer) = unnamed else {
        panic!("{unnamed}")
    };
    let body = String::from_utf8_lossy(answer.body().as_deref().unwrap_or_default());
    assert_eq!(answer.status(), 400, "{body}");
    assert!(body.contains("?model="), "{body}");
    // Not a WebSocket route: the upgrade is not forwarded.
    let elsewhere = connect(&gw, "/v1/other?model=m", Some(KEY))
        .await
        .unwrap_err();
    assert!(!elsewhere.to_string().contains("101"), "{elsewhere}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the upstream as a socket"
    );
}

/// A key held to some models may open sockets to those only (the model read from the
/// query), a key held to tokens or spend none (a socket's tokens are not metered), and a
/// query that names its model ambiguously is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_s_limits_hold_for_sockets() {
    use llm_tower::limits::Limits;
    let (url, seen) = ws_upstream().await;
    let endpoints = vec![realtime(url, &[("m", "m"), ("other", "other")])];
    let mut config: GatewayConfig = with_keys(&MockProvider::start().await.unwrap());
    config.upstream = Config::with_endpoints(endpoints);
    config.websocket = Some(serde_json::from_str(r#"["/realtime"]"#).unwrap());
    let auth = config.client_auth.as_mut().unwrap();
    auth.keys[0].limits = Some(Limits {
        models: Some(vec!["m".into()]),
        ..Limits::default()
    });
    auth.keys[1].limits = Some(Limits {
        tpm: Some(1000),
        ..Limits::default()
    });
    let gw = common::serve(config, None, std::future::pending()).await;

    let allowed = connect(&gw, "/v1/realtime?model=m", Some(KEY)).await;
    assert!(allowed.is_ok());
    for (path, key) in [
        ("/v1/realtime?model=other", KEY),
        ("/v1/realtime?model=m&MODEL=other", KEY),
        ("/v1/realtime?model=m", "gw-team-b-0123456789abcdef"),
    ] {
        let refused = connect(&gw, path, Some(key)).await.unwrap_err();
        assert!(refused.to_string().contains("403"), "{path}: {refused}");
    }

    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "only the allowed socket reached it"
    );
}

/// Sessions opened, open, and closed by code, per deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_counted_per_deployment_and_close_code() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let (url, _) = ws_upstream().await;
    let endpoints = vec![realtime_as("metered", url, &[("m", "m")])];
    let gw = gateway(Config::with_endpoints(endpoints), r#"["/realtime"]"#).await;
    let series = |text: &str, name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    let mut socket = connect(&gw, "/v1/realtime?model=m", Some(KEY))
        .await
        .unwrap();
    next(&mut socket).await;
    let during = metrics().render();
    let open = r#"llm_tower_websocket_open{deployment="metered"}"#;
    assert_eq!(series(&during, open), Some(1.0), "{during}");
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    socket.close(Some(normal)).await.unwrap();
    // The upstream answers the close frame the gateway relayed; the gateway's count follows.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let closed = r#"llm_tower_websocket_closed_total{deployment="metered",code="1000"}"#;
    while series(&metrics().render(), closed).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            metrics().render()
        );
        tokio::task::yield_now().await;
    }
    let after = metrics().render();
    let opened = r#"llm_tower_websocket_sessions_total{deployment="metered"}"#;
    assert_eq!(series(&after, opened), Some(1.0), "{after}");
    assert_eq!(series(&after, open), Some(0.0), "{after}");
    // And in `/upstreams`, beside the deployments' health.
    let request = http::Request::get(gw.url("/upstreams"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let upstreams: serde_json::Value =
        serde_json::from_slice(&common::body(gw.send(request).await).await).unwrap();
    assert_eq!(
        upstreams["websocket"]["metered"],
        serde_json::json!({ "opened": 1, "open": 0, "closed": { "1000": 1 } }),
        "{upstreams}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_closes_relayed_sockets_with_a_close_frame() {
    let (url, _) = ws_upstream().await;
    let endpoints = vec![realtime(url, &[("m", "m")])];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let gw = gateway_until(
        Config::with_endpoints(endpoints),
        r#"["/realtime"]"#,
        shutdown,
    )
    .await;

    let mut socket = connect(&gw, "/v1/realtime?model=m", Some(KEY))
        .await
        .unwrap();
    next(&mut socket).await;
    stop.send(()).unwrap();
    let (code, reason) = closed_with(&mut socket).await;
    assert_eq!(code, CloseCode::Away, "{reason}");
    assert!(reason.contains("shutting down"), "{reason}");
}

const REALTIME_SCRIPT: &str = r#"
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
with client.realtime.connect(model="gpt-realtime") as connection:
    print("received:", connection.recv().type)
    connection.send({"type": "response.create"})
    print("echoed:", connection.recv().type)
"#;

/// The official OpenAI SDK's Realtime client, through the gateway to a WebSocket upstream:
/// one event each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_s_realtime_client_talks_through_the_gateway() {
    let Some(python) = common::python() else {
        println!("{}", common::SKIPPED);
        return;
    };
    let (url, seen) = ws_upstream().await;
    let endpoints = vec![realtime(url, &[("gpt-realtime", "gpt-realtime")])];
    let gw = gateway(Config::with_endpoints(endpoints), r#"["/realtime"]"#).await;
    let base_url = gw.url("/v1");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-c", REALTIME_SCRIPT, &base_url, KEY])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        "received: session.created\nechoed: response.create\n"
    );
    let seen = &seen.lock().unwrap()[0];
    assert_eq!(seen.target, "/v1/realtime?model=gpt-realtime");
    assert_eq!(seen.credential, "Bearer sk-upstream-a");
}
