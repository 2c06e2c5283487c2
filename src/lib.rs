//! llm-tower: Tower middleware that keeps calls to LLM providers working when providers fail.
//!
//! This facade composes the three layers in front of a pooled hyper client:
//!
//! ```text
//! client ─▶ Proxy ─▶ FallbackLayer ─▶ RetryLayer ─▶ AuthLayer ─▶ hyper-util Client ─▶ provider
//! ```
//!
//! - [`Upstream`] builds the whole stack from a [`Config`] (or endpoints built in code) as one
//!   service that is `Clone + Send + Sync`, has `Error = Infallible` (failures become
//!   OpenAI-style JSON error responses) and fits axum's `nest_service`, `route_service` and
//!   `fallback_service`;
//! - [`Upstream::layer`] gives the same stack as a [`tower::Layer`] for your own inner service;
//! - the layers themselves live in [`auth`], [`retry`] and [`fallback`]; shared types in [`core`];
//! - with the default `gateway` feature, [`gateway`] is the ready-made axum gateway behind
//!   `cargo run --release --example gateway`.
//!
//! ```no_run
//! use axum::Router;
//! use llm_tower::{Config, Upstream};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_path("llm-tower.yaml")?;
//! let upstream = Upstream::from_config(&config)?.response_headers(true).build()?;
//! let app = Router::new().nest_service("/v1", upstream);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

mod client;
#[cfg(feature = "gateway")]
pub mod gateway;
mod proxy;

use std::time::Duration;

use http::HeaderValue;
pub use llm_tower_auth as auth;
pub use llm_tower_core as core;
pub use llm_tower_fallback as fallback;
pub use llm_tower_retry as retry;

pub use client::{HttpClient, http_client};
pub use llm_tower_auth::{Auth, AuthLayer};
pub use llm_tower_core::{
    Attempt, AttemptKind, Attempts, ClientConfig, Config, ConfigError, Endpoint, EndpointId, Error,
    ErrorKind, Outcome, Provider, RetryBudgetConfig, Selected, Strategy, WhenAllUnhealthy,
};
pub use llm_tower_core::{HOP_BY_HOP, strip_hop_by_hop};
pub use llm_tower_fallback::{Fallback, FallbackLayer, HealthRegistry};
pub use llm_tower_retry::{Retry, RetryLayer};
pub use proxy::{
    ATTEMPTS_HEADER, ENDPOINT_HEADER, Proxy, ProxyLayer, ResponseFuture, record_health_metrics,
};
use tower::Layer;

/// The complete stack over the pooled hyper client.
pub type UpstreamService = Proxy<Fallback<Retry<Auth<HttpClient>>>>;

/// Builder for the composed stack; see the [crate documentation](crate).
#[derive(Clone, Debug)]
pub struct Upstream {
    endpoints: Vec<Endpoint>,
    strategy: Strategy,
    when_all_unhealthy: WhenAllUnhealthy,
    max_body_bytes: usize,
    unhealthy_threshold: u32,
    max_cooldown: Duration,
    retry_budget: RetryBudgetConfig,
    client: ClientConfig,
    registry: HealthRegistry,
    proxy: ProxyLayer,
    forward_client_credentials: bool,
    user_agent: Option<HeaderValue>,
}

impl Upstream {
    /// From a loaded (and therefore validated) configuration.
    ///
    /// # Errors
    ///
    /// Any validation error of the configuration.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            strategy: config.strategy,
            when_all_unhealthy: config.when_all_unhealthy,
            max_body_bytes: config.max_body_bytes,
            unhealthy_threshold: config.unhealthy_threshold,
            max_cooldown: config.max_cooldown,
            retry_budget: config.retry_budget,
            client: config.client,
            ..Self::new(config.build_endpoints()?)
        })
    }

    /// From endpoints built in code, with every other setting at its default.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        let defaults = Config::with_endpoints(Vec::new());
        Self {
            endpoints,
            strategy: defaults.strategy,
            when_all_unhealthy: defaults.when_all_unhealthy,
            max_body_bytes: defaults.max_body_bytes,
            unhealthy_threshold: defaults.unhealthy_threshold,
            max_cooldown: defaults.max_cooldown,
            retry_budget: defaults.retry_budget,
            client: defaults.client,
            registry: HealthRegistry::new(),
            proxy: ProxyLayer::new(),
            forward_client_credentials: false,
            user_agent: Some(HeaderValue::from_static(llm_tower_core::USER_AGENT)),
        }
    }

    /// Shares health with other stacks (default: a registry of its own).
    #[must_use]
    pub fn registry(mut self, registry: HealthRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// The health registry, for an admin endpoint.
    pub fn health(&self) -> &HealthRegistry {
        &self.registry
    }

    /// Adds `x-llm-tower-endpoint` and `x-llm-tower-attempts` response headers.
    #[must_use]
    pub fn response_headers(mut self, on: bool) -> Self {
        self.proxy = self.proxy.response_headers(on);
        self
    }

    /// Records metrics through the `metrics` facade (install a recorder to see them).
    #[must_use]
    pub fn metrics(mut self, on: bool) -> Self {
        self.proxy = self.proxy.metrics(on);
        self
    }

    /// Logs one line per request with its attempts.
    #[must_use]
    pub fn access_log(mut self, on: bool) -> Self {
        self.proxy = self.proxy.access_log(on);
        self
    }

    /// Bring-your-own-key: keep the client's credentials for endpoints without a key.
    #[must_use]
    pub fn forward_client_credentials(mut self, on: bool) -> Self {
        self.forward_client_credentials = on;
        self
    }

    /// The `user-agent` sent upstream (`None` keeps the client's).
    #[must_use]
    pub fn user_agent(mut self, user_agent: Option<HeaderValue>) -> Self {
        self.user_agent = user_agent;
        self
    }

    /// The stack as a layer over your own inner service (which receives requests with an
    /// absolute URI, `Selected` and `Attempts` in the extensions, and a buffered body).
    ///
    /// # Errors
    ///
    /// No endpoints, duplicate ids, or an invalid setting.
    pub fn layer(&self) -> Result<UpstreamLayer, ConfigError> {
        let fallback = FallbackLayer::builder(self.endpoints.iter().cloned())
            .strategy(self.strategy)
            .when_all_unhealthy(self.when_all_unhealthy)
            .max_body_bytes(self.max_body_bytes)
            .unhealthy_threshold(self.unhealthy_threshold)
            .max_cooldown(self.max_cooldown)
            .build(self.registry.clone())?;
        Ok(UpstreamLayer {
            proxy: self.proxy.clone(),
            fallback,
            retry: RetryLayer::new().budget(self.retry_budget),
            auth: AuthLayer::new()
                .forward_client_credentials(self.forward_client_credentials)
                .user_agent(self.user_agent.clone()),
        })
    }

    /// The stack over a new pooled HTTPS client.
    ///
    /// # Errors
    ///
    /// As [`Upstream::layer`].
    pub fn build(&self) -> Result<UpstreamService, ConfigError> {
        Ok(self.layer()?.layer(http_client(&self.client)))
    }
}

/// The whole stack as one [`Layer`]: `Proxy → Fallback → Retry → Auth → S`.
#[derive(Clone, Debug)]
pub struct UpstreamLayer {
    proxy: ProxyLayer,
    fallback: FallbackLayer,
    retry: RetryLayer,
    auth: AuthLayer,
}

impl UpstreamLayer {
    /// The balancer's health registry.
    pub fn health(&self) -> &HealthRegistry {
        self.fallback.registry()
    }
}

impl<S> Layer<S> for UpstreamLayer {
    type Service = Proxy<Fallback<Retry<Auth<S>>>>;

    fn layer(&self, inner: S) -> Self::Service {
        self.proxy.layer(
            self.fallback
                .layer(self.retry.layer(self.auth.layer(inner))),
        )
    }
}
