//! WebSockets for the tests: an upstream that records each handshake and echoes, and a
//! client's socket to the gateway.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{ClientRequestBuilder, Message};

use super::Gateway;

/// What a WebSocket upstream saw of a handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub target: String,
    /// `authorization`, or `api-key …` (Azure's scheme).
    pub credential: String,
    pub protocols: Option<String>,
    pub extensions: Option<String>,
}

/// A WebSocket upstream: on each connection it records the handshake ([`Seen`]), takes the
/// first subprotocol offered, greets with `session.created`, echoes every text and binary
/// message, and on `break` drops the connection without a close frame.
#[allow(clippy::result_large_err)] // the handshake callback's type is tungstenite's
pub async fn ws_upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let callback = |request: &Request, mut response: Response| {
                    let header =
                        |name| Some(request.headers().get(name)?.to_str().ok()?.to_owned());
                    let credential = header("authorization")
                        .or_else(|| Some(format!("api-key {}", header("api-key")?)))
                        .unwrap_or_default();
                    let protocols = header("sec-websocket-protocol");
                    if let Some(first) = protocols.as_deref().and_then(|p| p.split(',').next()) {
                        response
                            .headers_mut()
                            .insert("sec-websocket-protocol", first.trim().parse().unwrap());
                    }
                    record.lock().unwrap().push(Seen {
                        target: request.uri().to_string(),
                        credential,
                        protocols,
                        extensions: header("sec-websocket-extensions"),
                    });
                    Ok(response)
                };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                else {
                    return;
                };
                let _ = socket
                    .send(Message::text(r#"{"type":"session.created"}"#))
                    .await;
                while let Some(Ok(message)) = socket.next().await {
                    match &message {
                        Message::Text(text) if text.as_str() == "break" => return,
                        Message::Close(_) => return,
                        _ => {}
                    }
                    let echoed = matches!(message, Message::Text(_) | Message::Binary(_));
                    if echoed && socket.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/v1"), seen)
}

pub type Client = WebSocketStream<TcpStream>;

/// A client's socket to `path` on the gateway, with its key (or none).
pub async fn connect(
    gw: &Gateway,
    path: &str,
    key: Option<&str>,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    connect_with(gw, path, key, &[]).await
}

/// [`connect`], with more headers.
pub async fn connect_with(
    gw: &Gateway,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let uri = format!("ws://{}{path}", gw.addr).parse().unwrap();
    let mut request = ClientRequestBuilder::new(uri);
    if let Some(key) = key {
        request = request.with_header("authorization", format!("Bearer {key}"));
    }
    for (name, value) in headers {
        request = request.with_header(*name, *value);
    }
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (socket, _) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(socket)
}

/// The next message that is not a ping or pong.
pub async fn next(socket: &mut Client) -> Message {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a message, not an error");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// The close code the gateway sent.
pub async fn closed_with(socket: &mut Client) -> (CloseCode, String) {
    match next(socket).await {
        Message::Close(Some(frame)) => (frame.code, frame.reason.to_string()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}
