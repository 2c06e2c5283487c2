//! The process-wide budget for buffered request bodies (`server.max_buffered_bytes`), over
//! real sockets: a body that cannot fit is refused with 503 and `Retry-After` before it is
//! read (or at the first chunk past the budget), what a request held comes back when it
//! ends, and HTTP/2 connections are capped in concurrent streams.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Gateway, endpoint, only, serve};
use http::StatusCode;
use llm_tower::Config;
use llm_tower_gateway::{GatewayConfig, ServerSettings};
use llm_tower_mock::MockProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const BUDGET: usize = 1024 * 1024;
/// More than half the budget: two cannot be held at once.
const LARGE: usize = 600 * 1024;

/// A chat request whose body is `len` bytes long.
fn chat_of_len(len: usize) -> String {
    let head = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"pad":""#;
    let tail = r#""}"#;
    format!("{head}{}{tail}", "a".repeat(len - head.len() - tail.len()))
}

async fn gateway(base_url: String, server: ServerSettings) -> Gateway {
    let mut config =
        GatewayConfig::new(Config::with_endpoints(vec![endpoint("only", base_url, 0)]));
    config.upstream.fallback.max_body_bytes = BUDGET;
    config.server = server;
    serve(config, None, std::future::pending()).await
}

fn budgeted() -> ServerSettings {
    ServerSettings {
        max_buffered_bytes: BUDGET,
        ..ServerSettings::default()
    }
}

fn head(len: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{len}\r\n"
    )
}

/// Reads one response head (and whatever came with it).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// An upstream that holds its first request until `release` is notified, telling `arrived`
/// once it has read it whole, and answers every other request at once.
async fn holding_upstream() -> (String, Arc<Notify>, Arc<Notify>) {
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (told, wait) = (arrived.clone(), release.clone());
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut socket, _)) = listener.accept().await {
            let hold = std::mem::take(&mut first).then(|| (told.clone(), wait.clone()));
            tokio::spawn(async move {
                read_request(&mut socket).await;
                if let Some((told, wait)) = hold {
                    told.notify_one();
                    wait.notified().await;
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    (base_url, arrived, release)
}

/// Reads one request with a `content-length` body.
async fn read_request(socket: &mut TcpStream) {
    let mut read = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&read[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |len| len.trim().parse().unwrap());
            if read.len() >= end + 4 + len {
                return;
            }
        }
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => read.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn bodies_past_the_budget_are_refused_before_they_are_read_and_the_budget_comes_back() {
    let (upstream, arrived, release) = holding_upstream().await;
    let gw = gateway(upstream, budgeted()).await;

    // A large request is held upstream: its body is in the gateway's memory meanwhile.
    let mut held = TcpStream::connect(gw.addr).await.unwrap();
    let body = chat_of_len(LARGE);
    let request = format!(
        "{}{body}",
        head(&format!("content-length: {}\r\n", body.len()))
    );
    held.write_all(request.as_bytes()).await.unwrap();
    arrived.notified().await;

    // Another that declares as much is refused at once, on its head alone: the gateway does
    // not wait for (or read) a body it cannot hold.
    let mut refused = TcpStream::connect(gw.addr).await.unwrap();
    let request = head(&format!("content-length: {LARGE}\r\n"));
    refused.write_all(request.as_bytes()).await.unwrap();
    let answer = read_head(&mut refused).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{answer}"
    );
    assert!(answer.contains("gateway_overloaded"), "{answer}");

    // A chunked body is taken chunk by chunk: the first fits, the one past the budget ends it.
    let mut chunked = TcpStream::connect(gw.addr).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 300 * 1024, "a".repeat(300 * 1024));
    let request = format!("{}{chunk}{chunk}", head("transfer-encoding: chunked\r\n"));
    chunked.write_all(request.as_bytes()).await.unwrap();
    let answer = read_head(&mut chunked).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("gateway_overloaded"), "{answer}");

    // The held request is answered: what it held comes back with its answer.
    release.notify_one();
    assert!(read_head(&mut held).await.starts_with("HTTP/1.1 200"));
    for _ in 0..3 {
        assert_eq!(gw.post(&chat_of_len(LARGE)).await.status(), StatusCode::OK);
    }
}

/// A client that declares a large body and then drips it holds only what it sent: the
/// bytes it only promised stay free for others.
#[tokio::test]
async fn a_declared_length_is_not_held_before_its_bytes_arrive() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway(mock.base_url(), budgeted()).await;
    let mut dripping = TcpStream::connect(gw.addr).await.unwrap();
    let body = chat_of_len(LARGE);
    let request = format!(
        "{}{}",
        head(&format!("content-length: {LARGE}\r\n")),
        &body[..10]
    );
    dripping.write_all(request.as_bytes()).await.unwrap();
    // Another body as large is taken meanwhile, as if the first were not there.
    let mut other = TcpStream::connect(gw.addr).await.unwrap();
    let request = format!("{}{body}", head(&format!("content-length: {LARGE}\r\n")));
    other.write_all(request.as_bytes()).await.unwrap();
    let answer = read_head(&mut other).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The first finishes its body, and is served too.
    dripping.write_all(&body.as_bytes()[10..]).await.unwrap();
    assert!(read_head(&mut dripping).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_budget_smaller_than_one_body_is_refused_at_load() {
    let mock = MockProvider::start().await.unwrap();
    let mut config = GatewayConfig::new(only(&mock));
    config.server.max_buffered_bytes = config.upstream.fallback.max_body_bytes - 1;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.starts_with("server.max_buffered_bytes"), "{err}");
}

#[tokio::test]
async fn http2_connections_are_capped_in_concurrent_streams() {
    let mock = MockProvider::start().await.unwrap();
    let gw = gateway(
        mock.base_url(),
        ServerSettings {
            http2_max_concurrent_streams: 7,
            ..budgeted()
        },
    )
    .await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let request = http::Request::get(gw.url("/healthz")).body(()).unwrap();
    let (response, _) = client
        .ready()
        .await
        .unwrap()
        .send_request(request, true)
        .unwrap();
    // Driving the connection until the answer comes: by then the server's settings are in.
    let response = tokio::select! {
        response = response => response.unwrap(),
        result = &mut connection => panic!("the connection ended first: {result:?}"),
    };
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(connection.max_concurrent_send_streams(), 7);
}
