//! [`TrackedService`]: the routes as one connection sees them, with the request body deadline,
//! the Host check and the connection's busy/idle bookkeeping. Requests the stack's route
//! claims go straight to it ([`Proxied`](crate::routes::Proxied): the route the router has
//! at the mount, without the router's boxing); everything else to the axum router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use llm_tower::auth::{ACCOUNT_HEADERS, CREDENTIAL_HEADERS};
use llm_tower::llm_tower_core::WebSocketUpgrade;
use llm_tower::{BoxError, Deployment, Error, ErrorKind};
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tower::Service;

use super::body::BodyDeadline;
use super::budget::{BodyBudget, Budgeted, Share};
use super::conn::ConnState;
use super::descriptors::{RequestSlots, Slot, no_slot};
use super::live::LiveRoutes;
use super::woken::WokenOnly;
use crate::browser::{BrowserGuard, Verdict};
use crate::routes::{ProxiedBody, ProxiedFuture};
use crate::websocket::{self, Relay, WebSocketRoute};

/// Cloned for every request (hyper-util's adapter does): it holds the routes' slot, not the
/// routes, which each request loads as it starts.
#[derive(Clone)]
pub(crate) struct TrackedService {
    routes: LiveRoutes,
    state: Arc<ConnState>,
    body_read_timeout: Option<Duration>,
    budget: Arc<BodyBudget>,
    /// Set when the server shuts down: relayed WebSockets close then.
    closing: watch::Receiver<bool>,
}

impl TrackedService {
    pub(crate) fn new(
        routes: LiveRoutes,
        state: Arc<ConnState>,
        body_read_timeout: Option<Duration>,
        budget: Arc<BodyBudget>,
        closing: watch::Receiver<bool>,
    ) -> Self {
        Self {
            routes,
            state,
            body_read_timeout,
            budget,
            closing,
        }
    }
}

impl Service<Request<Incoming>> for TrackedService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A `Router` is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> TrackedFuture {
        self.state.request_started();
        mark_credentials_sensitive(request.headers_mut());
        if let Some(refusal) = host_problem(&request) {
            return TrackedFuture::refused(refusal, Done::new(&self.state, None));
        }
        // The routes in force as the request starts (a reload swaps them for later ones).
        let routes = self.routes.load();
        let routes = &routes.1;
        let origin = match routes.browsers.check(&request) {
            Verdict::Serve(origin) => origin,
            Verdict::Answer(answer) => {
                return TrackedFuture::refused(answer, Done::new(&self.state, None));
            }
        };
        // A request for the stack may hold an upstream connection, so a descriptor, while it
        // is in flight (the operator's routes hold none, and stay open to them).
        let proxied = routes
            .proxied
            .as_ref()
            .filter(|proxied| proxied.claims(request.uri().path()));
        // A WebSocket upgrade on a route that relays them: the stack is told, and the client's
        // half of the socket kept for the relay.
        let upgrade = proxied
            .and_then(|proxied| proxied.upgrades(&request))
            .map(|route| {
                request.extensions_mut().insert(WebSocketUpgrade);
                Upgrade {
                    client: hyper::upgrade::on(&mut request),
                    route: route.clone(),
                    closing: self.closing.clone(),
                    conn: self.state.clone(),
                }
            });
        let slot = match proxied.map(|_| RequestSlots::of_process().take()) {
            Some(None) => {
                let refusal = no_slot().to_response();
                return TrackedFuture::refused(refusal, Done::new(&self.state, None));
            }
            Some(slot) => slot,
            None => None,
        };
        // The body's bytes are taken from the process's budget as they come: a declared
        // length that cannot fit is refused before a byte of it is read.
        let share = match self
            .budget
            .share(http_body::Body::size_hint(request.body()).lower())
        {
            Ok(share) => share,
            Err(refusal) => {
                return TrackedFuture::refused(refusal.to_response(), Done::new(&self.state, None));
            }
        };
        let request = request.map(|body| Budgeted::new(body, share.clone()));
        let request = match self.body_read_timeout {
            Some(limit) => request.map(|body| Body::new(BodyDeadline::new(body, limit))),
            None => request.map(Body::new),
        };
        let done = Some(Done::new(&self.state, slot));
        let state = match proxied {
            Some(proxied) => State::Proxied {
                future: proxied.oneshot(request),
                woken: WokenOnly::new(),
            },
            None => State::Router {
                future: routes.router.clone().call(request),
                woken: WokenOnly::new(),
            },
        };
        TrackedFuture {
            state,
            done,
            share: Some(share),
            origin,
            upgrade,
        }
    }
}

/// What a relay needs of a WebSocket upgrade besides the deployment's answer.
struct Upgrade {
    client: OnUpgrade,
    route: Arc<WebSocketRoute>,
    closing: watch::Receiver<bool>,
    /// Where the relay goes once hyper lets go of the connection.
    conn: Arc<ConnState>,
}

/// Whatever the auth layer strips is hidden from traces and `Debug` output from the start: one
/// pass over the request's headers (a handful), not a lookup per listed name.
fn mark_credentials_sensitive(headers: &mut http::HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if CREDENTIAL_HEADERS.contains(name) || ACCOUNT_HEADERS.contains(name) {
            value.set_sensitive(true);
        }
    }
}

/// HTTP/1.1 requires exactly one `Host` (RFC 9112, 3.2): a request without one, or with two
/// that different hops could read differently, is refused before it goes anywhere.
fn host_problem<B>(request: &Request<B>) -> Option<Response<Body>> {
    if request.version() != http::Version::HTTP_11 {
        return None;
    }
    let mut hosts = request.headers().get_all(http::header::HOST).iter();
    let problem = match (hosts.next(), hosts.next()) {
        (Some(_), None) => return None,
        (None, _) => "has no",
        (Some(_), Some(_)) => "has more than one",
    };
    Some(
        Error::new(
            ErrorKind::InvalidRequest,
            format!("the HTTP/1.1 request {problem} Host header"),
        )
        .to_response(),
    )
}

/// Tells the connection its request finished, and frees its slot: when the response body
/// ends or is dropped (a streamed answer holds its upstream connection until then).
struct Done {
    state: Arc<ConnState>,
    _slot: Option<Slot>,
}

impl Done {
    fn new(state: &Arc<ConnState>, slot: Option<Slot>) -> Self {
        Self {
            state: state.clone(),
            _slot: slot,
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        self.state.request_finished();
    }
}

pin_project! {
    pub(crate) struct TrackedFuture {
        #[pin]
        state: State,
        done: Option<Done>,
        // The request's share of the body budget, given back with the response head: the
        // balancer lets go of the body by then.
        share: Option<Arc<Share>>,
        // An allowed cross-origin request's `Origin`, for the CORS headers of its answer.
        origin: Option<HeaderValue>,
        // A WebSocket upgrade the stack may answer with `101`.
        upgrade: Option<Upgrade>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State {
        Router { #[pin] future: <Router as Service<Request<Body>>>::Future, woken: WokenOnly },
        Proxied { #[pin] future: ProxiedFuture, woken: WokenOnly },
        Refused { response: Option<Response<Body>> },
    }
}

impl TrackedFuture {
    fn refused(response: Response<Body>, done: Done) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
            done: Some(done),
            share: None,
            origin: None,
            upgrade: None,
        }
    }
}

impl Future for TrackedFuture {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.state.project() {
            StateProjection::Router { future, woken } => {
                ready!(woken.poll(future, cx))?.map(|body| Inner::Router { body })
            }
            StateProjection::Proxied { future, woken } => {
                ready!(woken.poll(future, cx))?.map(|body| Inner::Proxied { body })
            }
            // The front door's own answer (a preflight's included) is sent as it is.
            StateProjection::Refused { response } => {
                let response = response
                    .take()
                    .expect("TrackedFuture polled after completion");
                return Poll::Ready(Ok(response.map(|body| TrackedBody {
                    inner: Inner::Router { body },
                    done: this.done.take(),
                })));
            }
        };
        let mut response = response;
        BrowserGuard::finish(response.headers_mut(), this.origin.take());
        let mut done = this.done.take();
        this.share.take();
        if let Some(upgrade) = this.upgrade.take()
            && response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(upstream) = response.extensions_mut().remove::<OnUpgrade>()
        {
            // The socket holds the request's descriptor (and keeps the connection busy)
            // until it ends.
            let deployment = Deployment::of(response.extensions())
                .map(|deployment| deployment.id.to_string())
                .unwrap_or_default();
            websocket::switching(&mut response);
            upgrade.conn.upgrade_to(Relay {
                client: upgrade.client,
                upstream,
                route: upgrade.route,
                deployment,
                shutdown: upgrade.closing,
                hold: Box::new(done.take()),
            });
        }
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, done })))
    }
}

pin_project! {
    pub(crate) struct TrackedBody {
        #[pin]
        inner: Inner,
        done: Option<Done>,
    }
}

pin_project! {
    #[project = InnerProjection]
    enum Inner {
        Router { #[pin] body: Body },
        Proxied { #[pin] body: ProxiedBody },
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = match this.inner.project() {
            InnerProjection::Router { body } => {
                ready!(body.poll_frame(cx)).map(|f| f.map_err(Into::into))
            }
            InnerProjection::Proxied { body } => ready!(body.poll_frame(cx)),
        };
        if !matches!(frame, Some(Ok(_))) {
            this.done.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Router { body } => body.is_end_stream(),
            Inner::Proxied { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.inner {
            Inner::Router { body } => body.size_hint(),
            Inner::Proxied { body } => body.size_hint(),
        }
    }
}
