//! llm-tower: Tower middleware that keeps calls to LLM providers working when providers fail.
//!
//! This facade composes the layers in front of a pooled hyper client, in the one order that
//! works:
//!
//! ```text
//! client ─▶ ErrorResponse ─▶ Fallback ─▶ Retry ─▶ Auth ─▶ HttpClient ─▶ provider
//!           errors become    buffer once, pick,   per-endpoint    strip client
//!           OpenAI JSON,     fall back, health    policy, budget, credentials,
//!           headers, metrics                      Retry-After     set the key
//! ```
//!
//! - [`Upstream`] builds the whole stack from a [`Config`] or from typed values (endpoints
//!   from [`Endpoint::builder`], [`FallbackSettings`], [`RetrySettings`], [`ClientSettings`])
//!   as one service that is `Clone + Send + Sync`, has `Error = Infallible` (failures become
//!   OpenAI-style JSON error responses) and fits axum's `nest_service`, `route_service` and
//!   `fallback_service`;
//! - [`Upstream::layer`] gives the same stack as a [`tower::Layer`] for your own inner service;
//! - each layer also works alone: [`AuthLayer`], [`RetryLayer`], [`FallbackLayer`],
//!   [`ErrorResponseLayer`]; a layer used in a wrong order fails loudly (an [`AuthLayer`] that
//!   sees no [`Selected`] endpoint refuses the request rather than send it without a key);
//! - every response carries the [`Attempts`] made and the [`Selected`] endpoint that answered
//!   in its extensions.
//!
//! Features, all off by default except the TLS roots:
//!
//! | feature | adds |
//! |---|---|
//! | `rustls-webpki-roots` (default) | TLS to `https://` endpoints with Mozilla's roots compiled in |
//! | `rustls-native-roots` | the same with the system's roots |
//! | `yaml`, `toml` | [`Config::from_path`] and friends for those formats (JSON is always read) |
//! | `metrics` | [`Upstream::metrics`]: attempt counters, latency histograms, health gauges through the `metrics` facade |
//!
//! How the layers work together, the outcome table and the health state machine are in the
//! repository's `ARCHITECTURE.md`.
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
pub mod error_response;
pub mod health_store;
mod upstream;

pub use llm_tower_auth as auth;
pub use llm_tower_core as core;
pub use llm_tower_fallback as fallback;
pub use llm_tower_retry as retry;

pub use client::{ClientSettings, HttpClient, HttpClientBody, HttpClientFuture};
pub use config::Config;
pub use error_response::{ErrorResponse, ErrorResponseLayer};
pub use upstream::{Upstream, UpstreamLayer, UpstreamService};

pub use llm_tower_auth::{Auth, AuthLayer};
pub use llm_tower_core::{
    ApiKey, Attempt, AttemptKind, Attempts, BaseUrl, BoxError, BufferedBody, Caller,
    Classification, ClassifyErrors, ClassifyErrorsLayer, ConfigError, CooldownHint, CountBased,
    Deployment, Endpoint, EndpointBuilder, EndpointConfig, EndpointId, Error, ErrorKind,
    ExpectStatus, ExponentialBackoff, HOP_BY_HOP, HealthCheck, ModelName, ModelRoute, ModelsConfig,
    Outcome, Provider, ProviderName, RetryPolicy, Secret, Selected, SingleTry, strip_hop_by_hop,
};
pub use llm_tower_fallback::{
    CheckService, CheckSnapshot, EndpointSnapshot, Fallback, FallbackBuilder, FallbackLayer,
    FallbackSettings, HealthRegistry, ModelFallbacks, Status, Strategy, WhenAllUnhealthy,
};
pub use llm_tower_retry::{Retry, RetryBudget, RetryLayer, RetrySettings};
