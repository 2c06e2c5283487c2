//! The gateway's front door against hostile and careless clients, over real sockets on real
//! time with short configured timeouts (the server's timers are what is under test, so the
//! clock cannot be paused): slow headers, stalled and dripped bodies, idle keep-alive
//! connections, oversized headers, the connection cap, client keys and the admin listener.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{CHAT, Gateway, body, error_json, only, serve_exactly, with_keys};
use http::{Request, StatusCode};
use http_body_util::Full;
use llm_tower::Secret;
use llm_tower_gateway::{ClientAuth, ClientKey, GatewayConfig, ServerSettings};
use llm_tower_mock::MockProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Timeouts short enough for tests, long enough for a loaded 2-core machine.
const HEADER_READ: Duration = Duration::from_millis(300);
const BODY_READ: Duration = Duration::from_millis(300);
const IDLE: Duration = Duration::from_millis(400);
/// How late a timeout may fire on a busy machine before the test calls it broken.
const SLACK: Duration = Duration::from_secs(3);

fn settings() -> ServerSettings {
    ServerSettings {
        header_read_timeout: Some(HEADER_READ),
        body_read_timeout: Some(BODY_READ),
        idle_timeout: Some(IDLE),
        max_header_bytes: 16 * 1024,
        ..ServerSettings::default()
    }
}

async fn gateway(mock: &MockProvider, server: ServerSettings) -> Gateway {
    let mut config = GatewayConfig::new(only(mock));
    config.server = server;
    serve_exactly(config, None, std::future::pending()).await
}

/// Reads until the server closes the connection; how long that took, and what came.
async fn until_closed(stream: &mut TcpStream) -> (Duration, String) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(SLACK * 2, stream.read_to_end(&mut answer)).await;
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

async fn connect(gw: &Gateway) -> TcpStream {
    TcpStream::connect(gw.addr).await.unwrap()
}

#[tokio::test]
async fn half_sent_headers_are_cut_at_the_header_timeout_while_others_are_served() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway(&mock, settings()).await;
    let mut slow = connect(&gw).await;
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nx-pa")
        .await
        .unwrap();
    // Meanwhile another client is served.
    assert_eq!(gw.post(CHAT).await.status(), StatusCode::OK);
    let (waited, _) = until_closed(&mut slow).await;
    assert!(waited < HEADER_READ + SLACK, "closed after {waited:?}");
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn headers_dripped_a_byte_at_a_time_are_cut_too() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway(&mock, settings()).await;
    let mut drip = connect(&gw).await;
    let started = Instant::now();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    for byte in head {
        if drip.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if started.elapsed() > HEADER_READ + SLACK {
            break;
        }
    }
    let (_, _) = until_closed(&mut drip).await;
    let waited = started.elapsed();
    assert!(waited < HEADER_READ + SLACK, "closed after {waited:?}");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn a_stalled_or_dripped_body_gets_408_and_nothing_goes_upstream() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway(&mock, settings()).await;
    // Headers, then no body at all.
    let mut stalled = connect(&gw).await;
    stalled
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    let (waited, answer) = until_closed(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(waited < BODY_READ + SLACK, "{waited:?}");

    // A body dripped a byte every 50 ms: each byte is on time, the whole is not.
    let mut drip = connect(&gw).await;
    drip.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-length: 60\r\n\r\n",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let dripping = async {
        for _ in 0..60 {
            if drip.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(BODY_READ + SLACK, dripping).await.ok();
    let (_, answer) = until_closed(&mut drip).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < BODY_READ + SLACK * 2);
    assert_eq!(mock.request_count(), 0, "nothing was sent upstream");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway(&mock, settings()).await;
    let mut stream = connect(&gw).await;
    stream
        .write_all(format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n{CHAT}",
            CHAT.len()
        ).as_bytes())
        .await
        .unwrap();
    // The answer arrives, then the connection idles until the server closes it.
    let (waited, answer) = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited + Duration::from_millis(50) >= IDLE,
        "closed early: {waited:?}"
    );
    assert!(waited < IDLE + SLACK, "closed after {waited:?}");
}

#[tokio::test]
async fn an_oversized_header_block_gets_431_within_the_configured_bound() {
    let mock = MockProvider::start().await.unwrap();
    let server = settings();
    let gw = gateway(&mock, server).await;
    let big = "a".repeat(server.max_header_bytes);
    let answer = gw
        .raw(&format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nx-big: {big}\r\ncontent-length: 2\r\n\r\n{{}}"
        ))
        .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Just under the bound is fine.
    let fits = "a".repeat(server.max_header_bytes / 2);
    let request = Request::post(gw.url("/v1/chat/completions"))
        .header("x-fits", fits)
        .body(Full::new(Bytes::from(CHAT)))
        .unwrap();
    assert_eq!(gw.send(request).await.status(), StatusCode::OK);
    assert_eq!(mock.request_count(), 1);

    // Many clients each holding an unfinished block just under the bound: each is cut at
    // the header timeout, and none can hold more than the bound.
    let mut holders = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(&gw).await;
        let almost = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nx-big: {}",
            "a".repeat(server.max_header_bytes - 100)
        );
        stream.write_all(almost.as_bytes()).await.unwrap();
        holders.push(stream);
    }
    for mut stream in holders {
        let (waited, _) = until_closed(&mut stream).await;
        assert!(waited < HEADER_READ + SLACK, "{waited:?}");
    }
}

#[tokio::test]
async fn at_the_connection_cap_a_newcomer_takes_the_place_of_the_connection_idle_longest() {
    let mock = MockProvider::start().await.unwrap();
    let server = ServerSettings {
        max_connections: 2,
        // Long enough that the slowloris connections below hold their slots for a while.
        header_read_timeout: Some(Duration::from_millis(800)),
        idle_timeout: Some(Duration::from_secs(30)),
        ..settings()
    };
    let gw = gateway(&mock, server).await;
    // A keep-alive client that went idle, and a slowloris, take both slots.
    let mut idle = connect(&gw).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 1024];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).contains("200 OK"));
    let mut slowloris = connect(&gw).await;
    slowloris
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();

    // A newcomer is served: the idle connection is closed to make room for it, long before
    // the slowloris's header timeout would free a slot.
    let mut third = connect(&gw).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, answer) = until_closed(&mut third).await;
    assert!(answer.contains("200 OK"), "{answer}");
    let (closed_after, rest) = until_closed(&mut idle).await;
    assert!(
        rest.is_empty() && closed_after < Duration::from_millis(500),
        "{closed_after:?}"
    );

    // With no connection idle (two slowloris), a newcomer waits...
    let mut second_slowloris = connect(&gw).await;
    second_slowloris
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut fourth = connect(&gw).await;
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first_byte = [0u8; 1];
    let waited =
        tokio::time::timeout(Duration::from_millis(300), fourth.read(&mut first_byte)).await;
    assert!(
        waited.is_err(),
        "a connection was served at the cap with none idle"
    );
    // ...until a slowloris is cut at its header timeout.
    let (_, answer) = until_closed(&mut fourth).await;
    assert!(answer.contains("200 OK"), "{answer}");
    drop((slowloris, second_slowloris));
}

#[tokio::test]
async fn client_keys_are_required_and_never_forwarded() {
    let mock = MockProvider::start().await.unwrap();
    let recorder = llm_tower_gateway::prometheus_builder().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let gw = serve_exactly(with_keys(&mock), Some(handle), std::future::pending()).await;
    let chat = |header: Option<(&str, &str)>| {
        let mut request = Request::post(gw.url("/v1/chat/completions"));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.body(Full::new(Bytes::from(CHAT))).unwrap()
    };

    for refused in [
        None,
        Some(("authorization", "Bearer wrong-key-0123456789abcdef")),
        Some(("x-api-key", "gw-team-a-0123456789abcde")),
        Some(("authorization", "gw-team-a-0123456789abcdef")),
    ] {
        let response = gw.send(chat(refused)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{refused:?}");
        let json = error_json(response).await;
        assert_eq!(json["error"]["code"], "invalid_api_key");
    }
    assert_eq!(mock.request_count(), 0, "nothing was sent upstream");

    for accepted in [
        ("authorization", "Bearer gw-team-a-0123456789abcdef"),
        ("authorization", "BEARER gw-team-b-0123456789abcdef"),
        ("x-api-key", "gw-team-b-0123456789abcdef"),
        ("api-key", "gw-team-a-0123456789abcdef"),
    ] {
        let response = gw.send(chat(Some(accepted))).await;
        assert_eq!(response.status(), StatusCode::OK, "{accepted:?}");
    }
    assert_eq!(mock.request_count(), 4);
    for seen in mock.requests() {
        let everything = format!("{:?} {}", seen.headers, seen.uri);
        assert!(!everything.contains("gw-team"), "{everything}");
        assert_eq!(
            seen.header("authorization"),
            Some("Bearer sk-upstream-only")
        );
    }
    // /healthz stays open; /upstreams and /metrics are behind the keys.
    let health = gw
        .client
        .get(gw.url("/healthz").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    for admin in ["/upstreams", "/metrics"] {
        let response = gw.client.get(gw.url(admin).parse().unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{admin}");
    }
    // The key's name, never the key, labels the requests.
    let metrics = gw
        .send(
            Request::get(gw.url("/metrics"))
                .header("x-api-key", "gw-team-b-0123456789abcdef")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    let text = String::from_utf8(body(metrics).await.to_vec()).unwrap();
    assert!(
        text.contains(r#"llm_tower_requests_total{client="team-a",status="200"} 2"#),
        "{text}"
    );
    // Refusals are counted too: key guessing leaves a trace.
    assert!(
        text.contains(r#"llm_tower_requests_total{client="-",status="401"}"#),
        "{text}"
    );
    assert!(!text.contains("gw-team"), "{text}");
}

#[test]
fn a_public_listen_address_needs_client_keys_or_an_explicit_opt_out() {
    let mock_url = "http://127.0.0.1:9/v1".to_owned();
    let upstream = llm_tower::Config::with_endpoints(vec![common::endpoint("only", mock_url, 0)]);
    let mut config = GatewayConfig::new(upstream);
    config.set_listen("0.0.0.0:8080").unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.starts_with("client_auth:"), "{err}");
    assert!(err.contains("allow_unauthenticated"), "{err}");
    config.allow_unauthenticated = true;
    config.validate().unwrap();
    config.allow_unauthenticated = false;
    config.client_auth = Some(ClientAuth {
        default_limits: None,
        keys: vec![ClientKey {
            name: "ops".into(),
            key: Secret::new("gw-ops-0123456789abcdef"),
            limits: None,
        }],
    });
    config.validate().unwrap();
    // Weak or repeated keys are refused, without echoing them.
    config.client_auth = Some(ClientAuth {
        default_limits: None,
        keys: vec![ClientKey {
            name: "ops".into(),
            key: Secret::new("short"),
            limits: None,
        }],
    });
    let err = config.validate().unwrap_err().to_string();
    assert!(err.starts_with("client_auth.keys[0].key"), "{err}");
    assert!(!err.contains("short"), "{err}");
    // The admin listener has no client authentication: public only when said so.
    config.client_auth = None;
    config.set_listen("[::ffff:127.0.0.1]:8080").unwrap();
    config.validate().unwrap();
    config.admin_listen = Some("0.0.0.0:9091".parse().unwrap());
    let err = config.validate().unwrap_err().to_string();
    assert!(err.starts_with("admin_listen:"), "{err}");
    config.allow_unauthenticated = true;
    config.validate().unwrap();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_the_send_timeout() {
    // An upstream that streams without end.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head).await.is_err() {
                    return;
                }
                let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    let base_url = format!("http://{upstream_addr}/v1");
    let upstream = llm_tower::Config::with_endpoints(vec![common::endpoint("only", base_url, 0)]);
    let mut config = GatewayConfig::new(upstream);
    config.server = ServerSettings {
        send_timeout: Some(Duration::from_millis(300)),
        ..settings()
    };
    let gw = serve_exactly(config, None, std::future::pending()).await;
    // A client with a small receive buffer that sends its request and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(gw.addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n{CHAT}",
                CHAT.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300) + SLACK).await;
    // The gateway gave up on it: what was sent drains, then the connection ends.
    let drained = tokio::time::timeout(SLACK, async {
        let mut sink = vec![0u8; 65536];
        while let Ok(n) = stalled.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "the connection of a client that stopped reading stayed open"
    );
}

#[tokio::test]
async fn admin_listen_moves_upstreams_and_metrics_off_the_main_listener() {
    let mock = MockProvider::start().await.unwrap();
    let mut config = GatewayConfig::new(only(&mock));
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let recorder = llm_tower_gateway::prometheus_builder().build_recorder();
    let handle = recorder.handle();
    let gw = serve_exactly(config, Some(handle), std::future::pending()).await;
    let admin = gw.admin.expect("an admin listener");
    for path in ["/upstreams", "/metrics"] {
        let main = gw.client.get(gw.url(path).parse().unwrap()).await.unwrap();
        assert_eq!(
            main.status(),
            StatusCode::NOT_FOUND,
            "{path} on the main listener"
        );
        let url = format!("http://{admin}{path}");
        let there = gw.client.get(url.parse().unwrap()).await.unwrap();
        assert_eq!(
            there.status(),
            StatusCode::OK,
            "{path} on the admin listener"
        );
    }
    let health = gw
        .client
        .get(gw.url("/healthz").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(gw.post(CHAT).await.status(), StatusCode::OK);
}
