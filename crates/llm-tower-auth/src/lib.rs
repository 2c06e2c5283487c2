//! `AuthLayer`: the upstream sees the chosen endpoint's credential in the provider's own
//! scheme, and never the client's.
//!
//! For every request the layer
//!
//! 1. removes every inbound credential: `authorization`, `proxy-authorization`, `x-api-key`,
//!    `api-key`, `x-goog-api-key`, the endpoint's custom header, and a `key` query parameter,
//!    and the headers that pick whose account is billed (`openai-organization`,
//!    `openai-project`) or carry the client's session (`cookie`);
//! 2. sets the endpoint's credential header (prebuilt when the endpoint was built, marked
//!    sensitive, so `Debug` of the request and tower-http's `TraceLayer` never show it):
//!    `authorization: Bearer` (OpenAI-compatible), `api-key` (Azure), `x-api-key` plus
//!    `anthropic-version` (Anthropic), `x-goog-api-key` (Gemini) or a custom header;
//! 3. replaces `user-agent` with `llm-tower/<version>` (configurable).
//!
//! The endpoint comes from the [`Selected`] request extension (the balancer inserts it), or
//! is fixed with [`AuthLayer::for_endpoint`]. The layer adds no future of its own
//! (`type Future = S::Future`) and formats nothing per request.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use llm_tower_auth::AuthLayer;
//! use llm_tower_core::{ApiKey, Endpoint, Provider};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let endpoint = Endpoint::builder("claude", "https://api.anthropic.com/v1")
//!     .provider(Provider::Anthropic)
//!     .api_key(ApiKey::new("sk-ant-example").unwrap())
//!     .build()
//!     .unwrap();
//!
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::for_endpoint(endpoint))
//!     .service(service_fn(|req: Request<()>| async move {
//!         // What the upstream would receive:
//!         assert_eq!(req.headers()["x-api-key"], "sk-ant-example");
//!         assert_eq!(req.headers()["anthropic-version"], "2023-06-01");
//!         assert!(req.headers().get("authorization").is_none());
//!         Ok::<_, Infallible>(Response::new(()))
//!     }));
//!
//! let request = Request::builder()
//!     .header("authorization", "Bearer the-clients-own-token")
//!     .body(())
//!     .unwrap();
//! service.oneshot(request).await.unwrap();
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use llm_tower_core::{Endpoint, Provider, Selected};
use tower::{Layer, Service};

/// Inbound headers that carry credentials and are always removed.
pub const CREDENTIAL_HEADERS: [HeaderName; 5] = [
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-goog-api-key"),
];

/// Inbound headers that pick whose account a key bills or carry the client's session; removed
/// like credentials (kept in bring-your-own-key mode, where the account is the client's).
pub const ACCOUNT_HEADERS: [HeaderName; 3] = [
    COOKIE,
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
];

/// The `anthropic-version` sent to Anthropic endpoints when the client sent none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Clone, Debug)]
struct Settings {
    endpoint: Option<Arc<Endpoint>>,
    forward_client_credentials: bool,
    user_agent: Option<HeaderValue>,
}

/// Layer that rewrites credentials; see the [crate documentation](crate).
#[derive(Clone, Debug)]
pub struct AuthLayer {
    settings: Arc<Settings>,
}

impl AuthLayer {
    /// A layer that uses the [`Selected`] endpoint of each request.
    pub fn new() -> Self {
        Self {
            settings: Arc::new(Settings {
                endpoint: None,
                forward_client_credentials: false,
                user_agent: Some(HeaderValue::from_static(llm_tower_core::USER_AGENT)),
            }),
        }
    }

    /// A layer for a single fixed endpoint, used when a request carries no [`Selected`].
    pub fn for_endpoint(endpoint: impl Into<Arc<Endpoint>>) -> Self {
        let mut layer = Self::new();
        layer.settings_mut().endpoint = Some(endpoint.into());
        layer
    }

    /// Bring-your-own-key mode: when the endpoint has no key of its own, keep the client's
    /// credential headers (`proxy-authorization` is still removed). Off by default.
    #[must_use]
    pub fn forward_client_credentials(mut self, forward: bool) -> Self {
        self.settings_mut().forward_client_credentials = forward;
        self
    }

    /// The `user-agent` sent upstream; `None` keeps the client's. Default
    /// `llm-tower/<version>`.
    #[must_use]
    pub fn user_agent(mut self, user_agent: Option<HeaderValue>) -> Self {
        self.settings_mut().user_agent = user_agent;
        self
    }

    fn settings_mut(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }
}

impl Default for AuthLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// Service that rewrites credentials; built by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Auth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Consumes the layer, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        let settings = &*self.settings;
        let selected = request.extensions().get::<Selected>().map(|s| s.0.clone());
        let endpoint = selected.as_deref().or(settings.endpoint.as_deref());
        let keep_client = settings.forward_client_credentials
            && endpoint.is_none_or(|e| e.credential().is_none());
        rewrite_headers(
            request.headers_mut(),
            endpoint,
            keep_client,
            settings.user_agent.as_ref(),
        );
        if !keep_client {
            strip_key_query(request.uri_mut());
        }
        self.inner.call(request)
    }
}

fn rewrite_headers(
    headers: &mut HeaderMap,
    endpoint: Option<&Endpoint>,
    keep_client: bool,
    user_agent: Option<&HeaderValue>,
) {
    headers.remove(PROXY_AUTHORIZATION);
    if !keep_client {
        for name in CREDENTIAL_HEADERS.iter().chain(&ACCOUNT_HEADERS) {
            headers.remove(name);
        }
        if let Some(Provider::Custom { header, .. }) = endpoint.map(Endpoint::provider) {
            headers.remove(header);
        }
    }
    if let Some(endpoint) = endpoint {
        if let Some((name, value)) = endpoint.credential() {
            headers.insert(name.clone(), value.clone());
        }
        if endpoint.provider() == &Provider::Anthropic {
            headers
                .entry(HeaderName::from_static("anthropic-version"))
                .or_insert(HeaderValue::from_static(ANTHROPIC_VERSION));
        }
    }
    if let Some(user_agent) = user_agent {
        headers.insert(USER_AGENT, user_agent.clone());
    }
}

/// Removes `key=` query parameters (Gemini-style credentials in the URL).
fn strip_key_query(uri: &mut Uri) {
    let Some(query) = uri.query() else { return };
    if !query
        .split('&')
        .any(|pair| pair == "key" || pair.starts_with("key="))
    {
        return;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !(pair.is_empty() || *pair == "key" || pair.starts_with("key=")))
        .collect();
    let mut path_and_query = uri.path().to_owned();
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    *uri = Uri::from_parts(parts).unwrap_or_default();
}
