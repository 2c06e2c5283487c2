//! Every extension the layers pass each other on requests and responses, in one place: who
//! writes each, who reads it. A layer reads only what one further out wrote (on requests) or
//! further in (on responses); a missing extension means the layer that writes it is not
//! where it should be.
//!
//! | extension | on | written by | read by |
//! |---|---|---|---|
//! | [`AttemptContext`](crate::AttemptContext) | request, response | the balancer, per attempt (and on the answer) | through the accessors of its parts, below |
//! | [`Selected`] | request, response | the balancer, per attempt (and on the answer), in the context | retry (policy, budget), auth (the key), the transport's check, Respond (headers) |
//! | [`Deployment`] | request, response | the balancer, per attempt (and on the answer), in the context | retry (tries recorded under its id), Respond (`x-llm-tower-endpoint`, `x-llm-tower-model`) |
//! | [`Attempts`](crate::Attempts) | request, response | the balancer, in the context (or a retry layer outside it, which begins it) | retry (records each try), Respond (log, metrics, `x-llm-tower-attempts`) |
//! | [`Replay`] | request | the balancer | retry (makes the request again without a copy of its own) |
//! | [`SingleTry`] | request | the balancer, in the context, on a half-open probe or on probation | retry (makes no retry) |
//! | [`AttemptKind`](crate::AttemptKind) | request | the balancer, in the context, for hedges, continuations and attempts on hedging deployments | retry (the first try's kind in the log) |
//! | [`CredentialsSet`] | request | auth (in the context, when there is one) | the transport (`HttpClient` refuses a balancer's request without it) |
//!
//! The balancer's parts travel together in one [`AttemptContext`](crate::AttemptContext):
//! every entry of the map is an allocation, and a fourth makes it grow. Each part is read
//! through its accessor (`Selected::of`, ...), which also finds it inserted on its own.
//! | [`Caller`] | request | whoever authenticated the client (the gateway's client keys) | Respond (access log, metrics) |
//! | [`UsageRecord`](crate::UsageRecord) | request (in the context, once the balancer made the attempt), response | the layer accounting for tokens (the facade's `Respond`) | the usage layer, per attempt (adds what the answer reported); Respond (log, metrics, cost) |
//! | [`CooldownHint`] | response | retry, for a `Retry-After` it did not sleep | the balancer (cools the endpoint that long) |
//! | [`ContextOverflow`] | response | retry, from the 400 body it read ahead | the balancer (moves on to a `context_window_fallback` model) |
//! | [`WebSocketUpgrade`] | request | whoever may relay a WebSocket (the gateway, on its `websocket` routes) | the balancer (keeps the upgrade headers, reads `?model=`), retry (takes the `101` as the answer) |

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::endpoint::{Endpoint, EndpointId};
use crate::model::ModelName;

/// Request extension naming the endpoint a request is sent to. The balancer sets it, in the
/// attempt's [`AttemptContext`](crate::AttemptContext); the retry and auth layers read it,
/// with [`Selected::of`], which also finds one inserted on its own.
///
/// ```
/// use std::sync::Arc;
/// use llm_tower_core::{Endpoint, Selected};
///
/// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Selected(Arc::new(endpoint)));
/// assert_eq!(Selected::of(request.extensions()).unwrap().id().as_str(), "a");
/// ```
#[derive(Clone, Debug)]
pub struct Selected(pub Arc<Endpoint>);

/// Request extension marking an attempt that must be tried once only: the balancer sets it
/// on the half-open probe of an endpoint that was cooling down, so that a user request never
/// waits through retries and backoff on an endpoint that is probably still down. The retry
/// layer makes no retry of such a request.
///
/// ```
/// use llm_tower_core::SingleTry;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(SingleTry);
/// assert!(SingleTry::of(request.extensions()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SingleTry;

/// Request extension saying that the auth layer has set this request's credentials: the
/// client's stripped and the endpoint's key set (or the client's kept, when asked to). A
/// transport that is handed a request the balancer chose ([`Selected`]) without it refuses
/// to send it: the auth layer is missing from the stack, and the request still carries the
/// client's own credentials.
///
/// ```
/// use llm_tower_core::CredentialsSet;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(CredentialsSet);
/// assert!(CredentialsSet::of(request.extensions()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CredentialsSet;

/// Request extension naming the client a request came from, set by whoever authenticated it
/// (the gateway's client keys). It is a name, never a credential: the access log and metrics
/// show it.
///
/// ```
/// use llm_tower_core::Caller;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Caller::new("team-a"));
/// assert_eq!(request.extensions().get::<Caller>().unwrap().name(), "team-a");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller(Arc<str>);

impl Caller {
    /// A caller of this name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Request extension that remakes the request for another try, so that a retry layer need not
/// copy every request before its first try in case a retry follows. The balancer inserts it
/// (from the copy it keeps for fallback anyway); without it, the retry layer copies the
/// request itself when a retry is possible.
///
/// ```
/// use llm_tower_core::Replay;
///
/// let replay = Replay::new(|| http::Request::new("again"));
/// let mut request = replay.request();
/// request.extensions_mut().insert(replay.clone());
/// assert_eq!(*request.extensions().get::<Replay<&str>>().unwrap().request().body(), "again");
/// ```
pub struct Replay<B>(Arc<dyn Fn() -> http::Request<B> + Send + Sync>);

impl<B> Replay<B> {
    /// A replay that calls `make` for every new copy.
    pub fn new(make: impl Fn() -> http::Request<B> + Send + Sync + 'static) -> Self {
        Self(Arc::new(make))
    }

    /// A new copy of the request.
    pub fn request(&self) -> http::Request<B> {
        (self.0)()
    }
}

impl<B> Clone for Replay<B> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<B> fmt::Debug for Replay<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay").finish_non_exhaustive()
    }
}

/// Gives an attempt `uri` and `body` in place of its own, and the [`Replay`] it carries (if
/// any) the same change, so that a retry resends the attempt as changed: what a layer between
/// the balancer and retry does that rewrites requests (translation, asking a stream for its
/// usage).
///
/// ```
/// use llm_tower_core::{Replay, rewrite_attempt};
///
/// let mut attempt = http::Request::new("as sent");
/// attempt.extensions_mut().insert(Replay::new(|| http::Request::new("as sent")));
/// rewrite_attempt(&mut attempt, "http://127.0.0.1:1/v1/messages".parse().unwrap(), "rewritten");
/// let again = attempt.extensions().get::<Replay<&str>>().unwrap().request();
/// assert_eq!((*again.body(), again.uri().path()), ("rewritten", "/v1/messages"));
/// ```
pub fn rewrite_attempt<B>(request: &mut http::Request<B>, uri: http::Uri, body: B)
where
    B: Clone + Send + Sync + 'static,
{
    if let Some(replay) = request.extensions().get::<Replay<B>>().cloned() {
        let (uri, body) = (uri.clone(), body.clone());
        request.extensions_mut().insert(Replay::new(move || {
            let mut again = replay.request();
            *again.uri_mut() = uri.clone();
            *again.body_mut() = body.clone();
            again
        }));
    }
    *request.uri_mut() = uri;
    *request.body_mut() = body;
}

impl Deref for Selected {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.0
    }
}

/// Request and response extension: the deployment (an endpoint, and the model when the
/// request named one) an attempt went to. The balancer inserts it on each attempt and on the
/// response; the retry layer records tries under its id, and the error-response layer names
/// it in `x-llm-tower-endpoint` (and the model in `x-llm-tower-model` when a model fallback
/// chain served another model than the one asked for).
///
/// ```
/// use llm_tower_core::{Deployment, EndpointId};
///
/// let deployment = Deployment::new(EndpointId::from("azure-east/gpt-4o"), Some("gpt-4o".into()));
/// assert_eq!(deployment.to_string(), "azure-east/gpt-4o");
/// assert!(deployment.fell_back_from.is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The deployment id: the endpoint id, or `endpoint/model` for an endpoint that serves
    /// several models. Health, metrics and the attempt log are keyed by it.
    pub id: EndpointId,
    /// The model this attempt asked for (the client's name for it), when the request named
    /// one.
    pub model: Option<ModelName>,
    /// The model the client asked for, when a fallback chain moved on to another.
    pub fell_back_from: Option<ModelName>,
}

impl Deployment {
    /// A deployment of `model` (if any) on the deployment `id`, for the model asked for.
    pub fn new(id: EndpointId, model: Option<ModelName>) -> Self {
        Self {
            id,
            model,
            fell_back_from: None,
        }
    }
}

impl fmt::Display for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.id, f)
    }
}

/// Response extension set by the retry layer when the upstream asked for a wait
/// (`Retry-After`) that it did not sleep: the balancer cools the endpoint for this long.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::CooldownHint;
///
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(CooldownHint(Duration::from_secs(30)));
/// assert_eq!(response.extensions().get::<CooldownHint>().unwrap().0, Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CooldownHint(pub Duration);

/// Response extension marking a 400 whose body says the prompt does not fit the model's
/// context window ([`is_context_overflow`](crate::is_context_overflow)). The retry layer,
/// which reads error bodies before passing their head on, sets it; the balancer then tries
/// the model's `context_window_fallback` models, if it has any.
///
/// ```
/// use llm_tower_core::ContextOverflow;
///
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(ContextOverflow);
/// assert!(response.extensions().get::<ContextOverflow>().is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextOverflow;

/// Request extension saying that this request may upgrade to a WebSocket: whoever inserts it
/// relays the socket after the `101` (the gateway does, on the routes its `websocket` setting
/// names). The balancer then keeps the client's `Upgrade` and `Connection` headers, routes by
/// the `model` query parameter (the request has no body), and rewrites it for an alias; the
/// retry layer takes a `101 Switching Protocols` as the answer, with the upstream's socket in
/// its extensions (`hyper::upgrade::OnUpgrade`). Without it, an upgrade is never forwarded.
///
/// ```
/// use llm_tower_core::WebSocketUpgrade;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(WebSocketUpgrade);
/// assert!(request.extensions().get::<WebSocketUpgrade>().is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebSocketUpgrade;
