//! [`Proxied`]: the stack's route, one service for both ways a request reaches the stack.
//! The router routes the mount's paths to it, and the server calls it straight for them,
//! past the router (which would cost a boxed clone of the service and a boxed response body
//! per request). It is the same service either way, so whatever the request path does (the
//! request middleware, client keys, the mount) it does once, for both.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::Request;
use llm_tower::UpstreamService;
use tower::util::Oneshot;
use tower::{Layer, ServiceBuilder, ServiceExt};

use super::client_auth::{ClientKeyLayer, RequireClientKey};
use super::middleware::Middleware;
use super::mount::{Mount, Mounted};
use crate::websocket::WebSocketRoute;

/// The stack under the request middleware, client keys and the mount, outermost first.
pub(crate) type ProxiedService =
    <Middleware as Layer<RequireClientKey<Mounted<UpstreamService>>>>::Service;

/// One request's way through [`ProxiedService`].
pub(crate) type ProxiedFuture = Oneshot<ProxiedService, Request<Body>>;

/// What the stack answers with (a refused client key included).
pub(crate) type ProxiedBody = llm_tower::UpstreamBody;

/// The stack's route and where it is mounted.
#[derive(Clone, Debug)]
pub(crate) struct Proxied {
    service: ProxiedService,
    mount: Mount,
    /// Where WebSocket upgrades are relayed (`websocket`).
    websocket: Option<Arc<WebSocketRoute>>,
}

impl Proxied {
    pub(crate) fn new(
        middleware: Middleware,
        client_keys: ClientKeyLayer,
        mount: Mount,
        stack: UpstreamService,
        websocket: Option<WebSocketRoute>,
    ) -> Self {
        let service = ServiceBuilder::new()
            .layer(middleware)
            .layer(client_keys)
            .layer(mount.clone())
            .service(stack);
        Self {
            service,
            mount,
            websocket: websocket.map(Arc::new),
        }
    }

    /// The WebSocket route, when `request` asks to upgrade on one of its paths.
    pub(crate) fn upgrades<B>(&self, request: &Request<B>) -> Option<&Arc<WebSocketRoute>> {
        self.websocket.as_ref().filter(|route| {
            crate::websocket::asks_to_upgrade(request)
                && route
                    .settings
                    .allows(self.mount.prefix(), request.uri().path())
        })
    }

    /// `router` with this route at the mount. It is added after the router's own
    /// middleware, since it has the same of its own.
    pub(crate) fn route(&self, router: Router) -> Router {
        self.mount.route(router, self.service.clone())
    }

    /// Whether `path` is this route's (what the router's routing would say).
    pub(crate) fn claims(&self, path: &str) -> bool {
        self.mount.claims(path)
    }

    /// Serves one request, as the router would have, without it.
    pub(crate) fn oneshot(&self, request: Request<Body>) -> ProxiedFuture {
        self.service.clone().oneshot(request)
    }
}
