//! WebSocket passthrough, on the routes `websocket` names (off by default): an upgrade there
//! goes through the stack like any request — client keys, the deployment chosen by its
//! `?model=` (health, priority, headroom), the deployment's credential in its provider's
//! scheme, the client's stripped, fallback while the handshake is refused — and once a
//! deployment answers `101`, the two sockets are relayed ([`relay`]). See
//! [`WebSocketUpgrade`](llm_tower::llm_tower_core::WebSocketUpgrade) for what the stack does.

mod relay;
mod sessions;
mod settings;

use std::sync::Arc;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Request, Response};

pub(crate) use relay::Relay;
pub(crate) use sessions::{DeploymentSockets, Sockets};
pub use settings::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_MESSAGE_BYTES, WebSocketSettings};

/// Whether `request` asks to upgrade to a WebSocket (RFC 6455, 4.1): an HTTP/1.1 `GET`
/// with `Upgrade: websocket` and `Connection: upgrade`.
pub(crate) fn asks_to_upgrade<B>(request: &Request<B>) -> bool {
    let has = |name, token: &str| {
        request.headers().get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    request.version() == http::Version::HTTP_11
        && request.method() == http::Method::GET
        && has(UPGRADE, "websocket")
        && has(CONNECTION, "upgrade")
}

/// The `101` the client gets: the deployment's, with the connection headers the stack
/// took off it (it forwards none) put back.
pub(crate) fn switching<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
}

/// A stack route's WebSockets: its settings, and where its sessions are counted (the
/// process's, across reloads).
#[derive(Debug)]
pub(crate) struct WebSocketRoute {
    pub(crate) settings: WebSocketSettings,
    pub(crate) sockets: Arc<Sockets>,
}
