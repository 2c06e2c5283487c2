//! llm-tower: Tower middleware that keeps calls to LLM providers working when providers fail.
//!
//! This facade composes the layers in front of a pooled hyper client, in the one order that
//! works:
//!
//! ```text
//! client ─▶ Respond ─▶ Limits ─▶ Fallback ─▶ Translate ─▶ Usage ─▶ Retry ─▶ Auth ─▶ HttpClient ─▶ provider
//!           errors become    per client:  buffer once, pick,   client API ↔   tokens of     per-endpoint    strip client
//!           OpenAI JSON,     rpm, tpm,    fall back, health    provider API   the answer    policy, budget, credentials,
//!           headers, log,    budget,                                                        Retry-After     set the key
//!           metrics, cost    models
//! ```
//!
//! - [`Upstream`] builds the whole stack from a [`Config`] or from typed values (endpoints
//!   from [`Endpoint::builder`], [`FallbackSettings`], [`RetrySettings`], [`ClientSettings`])
//!   as one service that is `Clone + Send + Sync`, has `Error = Infallible` (failures become
//!   OpenAI-style JSON error responses) and fits axum's `nest_service`, `route_service` and
//!   `fallback_service`;
//! - [`Upstream::layer`] gives the same stack as a [`tower::Layer`] for your own inner service;
//! - each layer also works alone: [`AuthLayer`], [`RetryLayer`], [`FallbackLayer`],
//!   [`RespondLayer`]; a layer used in a wrong order fails loudly (an [`AuthLayer`] that
//!   sees no [`Selected`] endpoint refuses the request rather than send it without a key);
//! - every response carries the [`Attempts`] made and the [`Selected`] endpoint that answered
//!   in its extensions, and with [`Upstream::usage`] the [`UsageRecord`] its tokens are in
//!   once its body has ended.
//!
//! Features, all off by default except the TLS roots:
//!
//! | feature | adds |
//! |---|---|
//! | `rustls-webpki-roots` (default) | TLS to `https://` endpoints with Mozilla's roots compiled in |
//! | `rustls-native-roots` | the same with the system's roots |
//! | `yaml`, `toml` | [`Config::from_path`] and friends for those formats (JSON is always read) |
//! | `metrics` | `Upstream::metrics`: attempt counters, latency histograms, health gauges through the `metrics` facade |
//!
//! How the layers work together, the outcome table and the health state machine are in the
//! repository's `ARCHITECTURE.md`.
//!
//! # Common compile errors
//!
//! Tower reports a stack put together wrongly as an unmet trait bound, far from its cause.
//! The three seen most, each below as code that does not compile, and what to do:
//!
//! **`the method oneshot exists for struct Fallback<…>, but its trait bounds were not
//! satisfied`** (E0599): the service under [`FallbackLayer`] must take
//! `Request<`[`BufferedBody`]`>`, the body the balancer buffered once to send again on a
//! retry or fallback, not the body you send (`Full<Bytes>`, axum's `Body`, hyper's
//! `Incoming`). [`HttpClient`] takes it; a handler of your own takes `Request<BufferedBody>`,
//! or uses [`HttpClient::forward`].
//!
//! ```compile_fail
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use llm_tower::{Endpoint, FallbackLayer, HealthRegistry};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # async fn run() {
//! let layer = FallbackLayer::builder([Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()])
//!     .build(HealthRegistry::new())
//!     .unwrap();
//! let inner = service_fn(|_: http::Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! });
//! let _ = layer.layer(inner).oneshot(http::Request::new(Full::new(Bytes::new()))).await;
//! # }
//! ```
//!
//! The same with the inner service taking the buffered body:
//!
//! ```no_run
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! # use llm_tower::{BufferedBody, Endpoint, FallbackLayer, HealthRegistry};
//! # use tower::{Layer, ServiceExt, service_fn};
//! # async fn run() {
//! # let layer = FallbackLayer::builder([Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()])
//! #     .build(HealthRegistry::new())
//! #     .unwrap();
//! let inner = service_fn(|_: http::Request<BufferedBody>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! });
//! let _ = layer.layer(inner).oneshot(http::Request::new(Full::new(Bytes::new()))).await;
//! # }
//! ```
//!
//! **`type mismatch resolving <… as Service<Request<Body>>>::Error == Infallible`** (E0271)
//! from axum's `nest_service`, `route_service` or `fallback_service`: axum takes services
//! that cannot fail. [`RespondLayer`], outermost, turns every failure into a JSON
//! response; [`Upstream`] always puts it there.
//!
//! ```compile_fail
//! use llm_tower::{AuthLayer, ClientSettings, Endpoint, FallbackLayer, HealthRegistry, HttpClient, RetryLayer};
//! use tower::ServiceBuilder;
//!
//! let stack = ServiceBuilder::new()
//!     // .layer(llm_tower::RespondLayer::new()) is missing here.
//!     .layer(FallbackLayer::builder([Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()])
//!         .build(HealthRegistry::new())
//!         .unwrap())
//!     .layer(RetryLayer::new())
//!     .layer(AuthLayer::new())
//!     .service(HttpClient::new(&ClientSettings::default()).unwrap());
//! let _app: axum::Router = axum::Router::new().nest_service("/v1", stack);
//! ```
//!
//! With it (what [`Upstream::build`] gives):
//!
//! ```no_run
//! # use llm_tower::{AuthLayer, ClientSettings, Endpoint, RespondLayer, FallbackLayer, HealthRegistry, HttpClient, RetryLayer};
//! # use tower::ServiceBuilder;
//! let stack = ServiceBuilder::new()
//!     .layer(RespondLayer::new())
//!     .layer(FallbackLayer::builder([Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()])
//!         .build(HealthRegistry::new())
//!         .unwrap())
//!     .layer(RetryLayer::new())
//!     .layer(AuthLayer::new())
//!     .service(HttpClient::new(&ClientSettings::default()).unwrap());
//! let _app: axum::Router = axum::Router::new().nest_service("/v1", stack);
//! ```
//!
//! **`the trait bound Incoming: Clone is not satisfied`** (E0277) for a [`RetryLayer`] in a
//! hyper server: a retry sends the request again, so its body must be one that can be
//! (`Clone`). Hyper's streaming `Incoming` cannot; put [`FallbackLayer`] (which buffers the
//! body once, for every attempt) outside the retry layer, or buffer the body yourself with
//! [`buffer_request`](llm_tower_core::buffer_request).
//!
//! ```compile_fail
//! use hyper::body::Incoming;
//! use llm_tower::RetryLayer;
//! use tower::{Layer, Service, service_fn};
//!
//! fn served_by_hyper<S: Service<http::Request<Incoming>>>(_: S) {}
//! let inner = service_fn(|_: http::Request<Incoming>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! });
//! served_by_hyper(RetryLayer::new().layer(inner));
//! ```
//!
//! With the balancer outside it, buffering the body once:
//!
//! ```no_run
//! # use hyper::body::Incoming;
//! # use llm_tower::{BufferedBody, Endpoint, FallbackLayer, HealthRegistry, RetryLayer};
//! # use tower::{Layer, Service, service_fn};
//! # fn served_by_hyper<S: Service<http::Request<Incoming>>>(_: S) {}
//! let inner = service_fn(|_: http::Request<BufferedBody>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! });
//! let balancer = FallbackLayer::builder([Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()])
//!     .build(HealthRegistry::new())
//!     .unwrap();
//! served_by_hyper(balancer.layer(RetryLayer::new().layer(inner)));
//! ```
//!
//! ```no_run
//! use llm_tower::{Config, Upstream};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_path("llm-tower.json")?;
//! let upstream = Upstream::from_config(&config)?.response_headers(true).build()?;
//! // In axum: Router::new().nest_service("/v1", upstream)
//! # let _ = upstream;
//! # Ok(())
//! # }
//! ```

mod client;
pub mod config;
pub mod otel;
pub mod respond;
mod upstream;

pub use llm_tower_auth as auth;
// Under its own name: a module named `core` would shadow the `core` crate wherever
// `use llm_tower::*` is written.
pub use llm_tower_core;
pub use llm_tower_fallback as fallback;
pub use llm_tower_health as health;
/// Health shared between replicas (`health_store`): the settings, and the Redis store with
/// the `redis` feature.
pub use llm_tower_health::store as health_store;
pub use llm_tower_limits as limits;
pub use llm_tower_retry as retry;
pub use llm_tower_translate as translate;
pub use llm_tower_usage as usage;

pub use client::{ClientSettings, HttpClient, HttpClientBody, HttpClientFuture};
pub use config::Config;
pub use respond::{Respond, RespondLayer};
pub use upstream::{Upstream, UpstreamBody, UpstreamLayer, UpstreamService};

pub use llm_tower_auth::{Auth, AuthLayer};
pub use llm_tower_core::{
    ApiKey, Attempt, AttemptKind, Attempts, BaseUrl, BoxError, BufferedBody, Caller,
    Classification, ClassifyErrors, ClassifyErrorsLayer, ConfigError, Continuation, CooldownHint,
    CountBased, Deployment, Endpoint, EndpointBuilder, EndpointConfig, EndpointId, Error,
    ErrorKind, ExpectStatus, ExponentialBackoff, HOP_BY_HOP, HealthCheck, Hedge, ModelName,
    ModelRoute, ModelsConfig, Outcome, Provider, ProviderName, RetryOn, RetryPolicy, RetryReason,
    Secret, Selected, SingleTry, TELEMETRY_TARGET, Usage, UsageRecord, strip_hop_by_hop,
};
pub use llm_tower_fallback::{
    Fallback, FallbackBuilder, FallbackLayer, FallbackSettings, HeadroomSettings, ModelFallbacks,
    Share, Strategy, WhenAllUnhealthy,
};
pub use llm_tower_health::{CheckService, CheckSnapshot, EndpointSnapshot, HealthRegistry, Status};
pub use llm_tower_retry::{Retry, RetryBudget, RetryLayer, RetrySettings};
pub use llm_tower_translate::{Translate, TranslateLayer};
pub use llm_tower_usage::{Price, Prices, ReadUsage, UsageLayer};
