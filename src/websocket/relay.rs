//! [`Relay`]: one WebSocket, relayed between the client and the deployment that answered its
//! upgrade with `101`, message by message and untouched (text and binary as they come, in
//! order), until one side closes it: its close frame goes to the other.
//!
//! - **Limits.** A message over `max_message_bytes`, either way, closes both sides with
//!   1009 (message too big). A socket quiet both ways for `idle_timeout` is closed with 1001.
//! - **A broken upstream** (its connection gone, a protocol fault, or not taking a message
//!   within the idle timeout) closes the client's socket with 1011 and a reason: the
//!   upgrade was answered, so there is no falling back now.
//! - **Pings and pongs** are answered at each hop (tungstenite does it), not relayed: each
//!   connection's liveness is its own.
//! - **Shutdown** closes both sides with 1001, so that clients reconnect elsewhere.
//!
//! It runs in its connection's task (the server awaits it after hyper hands the connection
//! over): the connection's slot under `max_connections` and its request's descriptor are
//! held until the socket ends, and a drain waits for it like any connection.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::WebSocketRoute;
use super::sessions::Session;

/// A socket to relay once hyper hands over both connections.
pub(crate) struct Relay {
    pub(crate) client: OnUpgrade,
    pub(crate) upstream: OnUpgrade,
    pub(crate) route: Arc<WebSocketRoute>,
    /// The deployment that answered, for the log.
    pub(crate) deployment: String,
    /// Set when the server shuts down.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Held while the socket lives (the request's descriptor and its connection's phase).
    pub(crate) hold: Box<dyn Any + Send>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("deployment", &self.deployment)
            .finish_non_exhaustive()
    }
}

/// Why a relay ended, as the side that did not end it is told.
struct Ending {
    code: CloseCode,
    reason: &'static str,
}

impl Relay {
    pub(crate) async fn run(self) {
        // A client that never finishes its side of the upgrade holds nothing for long.
        let both = tokio::time::timeout(HANDOVER, async {
            tokio::try_join!(self.client, self.upstream)
        });
        let (client, upstream) = match both.await {
            Ok(Ok(both)) => both,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "a WebSocket upgrade did not complete");
                return;
            }
            Err(_) => return,
        };
        let max = self.route.settings.max_message_bytes;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let mut client =
            WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, Some(config))
                .await;
        let mut upstream =
            WebSocketStream::from_raw_socket(TokioIo::new(upstream), Role::Client, Some(config))
                .await;
        let mut shutdown = self.shutdown;
        let session = Session::opened(&self.deployment, &self.route.sockets);
        // Every send is bounded too: a side that stops reading cannot hold the relay (and
        // its permit) beyond the idle timeout.
        let patience = self.route.settings.idle_timeout;
        let ended = loop {
            let idle = tokio::time::sleep(self.route.settings.idle_timeout);
            tokio::select! {
                message = client.next() => match forward(message, &mut upstream, patience).await {
                    Step::Go => {}
                    Step::Closed(frame) => break Ended::ByPeer(frame, Side::Client),
                    Step::TooBig => break Ended::ByGateway(TOO_BIG, Side::Neither),
                    Step::SourceBroke => break Ended::ByGateway(CLIENT_BROKE, Side::Client),
                    Step::DestinationBroke => {
                        break Ended::ByGateway(UPSTREAM_BROKE, Side::Upstream);
                    }
                },
                message = upstream.next() => match forward(message, &mut client, patience).await {
                    Step::Go => {}
                    Step::Closed(frame) => break Ended::ByPeer(frame, Side::Upstream),
                    Step::TooBig => break Ended::ByGateway(TOO_BIG, Side::Neither),
                    Step::SourceBroke => break Ended::ByGateway(UPSTREAM_BROKE, Side::Upstream),
                    Step::DestinationBroke => {
                        break Ended::ByGateway(CLIENT_BROKE, Side::Client);
                    }
                },
                () = idle => break Ended::ByGateway(Ending {
                    code: CloseCode::Away,
                    reason: "idle for longer than websocket.idle_timeout",
                }, Side::Neither),
                () = closing(&mut shutdown) => break Ended::ByGateway(Ending {
                    code: CloseCode::Away,
                    reason: "the gateway is shutting down",
                }, Side::Neither),
            }
        };
        let code = match ended {
            // Its close frame goes to the other side as it came; the side that closed gets
            // the reply its stream queued.
            Ended::ByPeer(frame, from) => {
                let code = frame
                    .as_ref()
                    .map_or(NO_STATUS, |frame| u16::from(frame.code));
                let (closed, other) = match from {
                    Side::Client => (&mut client, &mut upstream),
                    _ => (&mut upstream, &mut client),
                };
                let _ = tokio::time::timeout(CLOSING, other.close(frame)).await;
                let _ = tokio::time::timeout(CLOSING, closed.flush()).await;
                code
            }
            Ended::ByGateway(ending, from) => {
                tracing::info!(
                    deployment = %self.deployment,
                    code = u16::from(ending.code),
                    reason = ending.reason,
                    "WebSocket closed by the gateway"
                );
                let frame = || {
                    Some(CloseFrame {
                        code: ending.code,
                        reason: ending.reason.into(),
                    })
                };
                // Both sides are told, but one whose connection is what broke.
                if !matches!(from, Side::Upstream) {
                    let _ = tokio::time::timeout(CLOSING, upstream.close(frame())).await;
                }
                if !matches!(from, Side::Client) {
                    let _ = tokio::time::timeout(CLOSING, client.close(frame())).await;
                }
                u16::from(ending.code)
            }
        };
        session.closed(code);
        drop(self.hold);
    }
}

/// How long the client and the upstream have to finish their sides of the upgrade.
const HANDOVER: Duration = Duration::from_secs(10);
/// How long a close frame may take to go out.
const CLOSING: Duration = Duration::from_secs(1);

const CLIENT_BROKE: Ending = Ending {
    code: CloseCode::Error,
    reason: "the client's connection broke",
};
const UPSTREAM_BROKE: Ending = Ending {
    code: CloseCode::Error,
    reason: "the upstream connection broke",
};

/// The close code of a close frame without one (RFC 6455, 7.4.1).
const NO_STATUS: u16 = 1005;

/// How a relay ended.
enum Ended {
    /// A side closed (with this frame, if any).
    ByPeer(Option<CloseFrame>, Side),
    /// The gateway ended it, and tells the sides why.
    ByGateway(Ending, Side),
}

const TOO_BIG: Ending = Ending {
    code: CloseCode::Size,
    reason: "a message was larger than websocket.max_message_bytes",
};

/// Until the server shuts down (or is gone).
async fn closing(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not kept: it is not `Send`.
    let _ = shutdown.wait_for(|down| *down).await.map(|_| ());
}

/// Which side closed, or whose connection broke.
enum Side {
    Client,
    Upstream,
    Neither,
}

/// What one side's next message does.
enum Step {
    /// Relayed (or, a ping or pong, answered here: each hop keeps its own connection alive).
    Go,
    /// The side closed: its close frame goes to the other.
    Closed(Option<CloseFrame>),
    /// A message over the limit, read or to be sent.
    TooBig,
    /// The connection the message came from broke.
    SourceBroke,
    /// The connection it was sent to broke, or did not take it within `patience`.
    DestinationBroke,
}

/// Relays `message` (read from one side) to `to`, waiting at most `patience` for `to` to
/// take it.
async fn forward<S>(
    message: Option<Result<Message, WsError>>,
    to: &mut WebSocketStream<S>,
    patience: Duration,
) -> Step
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match message {
        Some(Ok(Message::Close(frame))) => Step::Closed(frame),
        // tungstenite answers a ping itself: relayed too, it would be answered twice.
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Go,
        Some(Ok(message)) => match tokio::time::timeout(patience, to.send(message)).await {
            Ok(Ok(())) => Step::Go,
            Ok(Err(WsError::Capacity(_))) => Step::TooBig,
            Ok(Err(_)) | Err(_) => Step::DestinationBroke,
        },
        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => Step::TooBig,
        Some(Err(_)) | None => Step::SourceBroke,
    }
}
