//! [`Upstream`]: the whole stack, built in the one order that works.

use http::HeaderValue;
use llm_tower_auth::{Auth, AuthLayer};
use llm_tower_core::{ConfigError, Endpoint};
use llm_tower_fallback::{
    CheckService, Fallback, FallbackLayer, FallbackSettings, HealthRegistry, ModelFallbacks,
};
use llm_tower_limits::{Limit, Limiter, LimitsLayer, LimitsTable};
use llm_tower_retry::{Retry, RetryLayer, RetrySettings};
use llm_tower_translate::{Translate, TranslateLayer};
use llm_tower_usage::{Prices, ReadUsage, UsageLayer};
use std::sync::Arc;
use tower::Layer;

use crate::client::{ClientSettings, HttpClient};
use crate::respond::{Respond, RespondLayer};

/// The complete stack over the pooled HTTP client.
///
/// ```
/// use llm_tower::{Endpoint, Upstream, UpstreamService};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let endpoints = vec![Endpoint::builder("local", "http://127.0.0.1:11434/v1").build().unwrap()];
/// let service: UpstreamService = Upstream::new(endpoints).build().unwrap();
/// # let _ = service;
/// # }
/// ```
pub type UpstreamService = Respond<Limit<Fallback<Translate<ReadUsage<Retry<Auth<HttpClient>>>>>>>;

/// The body of the responses of [`UpstreamService`]: one name for the bodies of the layers
/// nested in it. It implements `Default` (an empty body), so layers that answer for the
/// stack, such as tower-http's `TimeoutLayer::with_status_code`, fit over it.
///
/// ```
/// use llm_tower::{UpstreamBody, UpstreamService};
///
/// fn body_of<S: tower::Service<http::Request<String>, Response = http::Response<UpstreamBody>>>(_: &S) {}
/// # fn check(service: &UpstreamService) { body_of(service) }
/// let empty = UpstreamBody::default();
/// # drop(empty);
/// ```
pub type UpstreamBody = crate::respond::ResponseBody<
    llm_tower_limits::ResponseBody<
        llm_tower_fallback::ResponseBody<
            llm_tower_translate::ResponseBody<
                llm_tower_usage::ResponseBody<llm_tower_retry::ResponseBody<crate::HttpClientBody>>,
            >,
        >,
    >,
>;

/// Builder for the composed stack
/// `Respond → Limits → Fallback → Translate → Usage → Retry → Auth → client`; see the
/// [crate documentation](crate).
///
/// Everything a configuration file can say, this builder takes as typed values: endpoints
/// built with [`Endpoint::builder`], and the settings structs of each layer.
///
/// ```
/// use std::time::Duration;
/// use llm_tower::{
///     ApiKey, Endpoint, FallbackSettings, RetryBudget, RetrySettings, Strategy, Upstream,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), llm_tower::ConfigError> {
/// let endpoints = vec![
///     Endpoint::builder("openai", "https://api.openai.com/v1")
///         .api_key(ApiKey::new("sk-not-a-real-key").unwrap())
///         .build()?,
///     Endpoint::builder("local", "http://127.0.0.1:11434/v1").priority(1).build()?,
/// ];
/// let service = Upstream::new(endpoints)
///     .fallback(FallbackSettings { strategy: Strategy::LeastInFlight, ..FallbackSettings::default() })
///     .retry(RetrySettings {
///         budget: RetryBudget { percent: 10.0, ..RetryBudget::default() },
///         max_retry_after: Some(Duration::from_secs(2)),
///     })
///     .response_headers(true)
///     .build()?;
/// # let _ = service;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Upstream {
    endpoints: Vec<Endpoint>,
    fallback: FallbackSettings,
    models: ModelFallbacks,
    retry: RetrySettings,
    client: ClientSettings,
    registry: HealthRegistry,
    respond: RespondLayer,
    prices: Arc<Prices>,
    limits: LimitsTable,
    limiter: Arc<Limiter>,
    auth: AuthLayer,
    inner_speaks_tls: bool,
}

impl Upstream {
    /// From endpoints built in code, with every setting at its default.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        Self {
            endpoints,
            fallback: FallbackSettings::default(),
            models: ModelFallbacks::default(),
            retry: RetrySettings::default(),
            client: ClientSettings::default(),
            registry: HealthRegistry::new(),
            respond: RespondLayer::new(),
            prices: Arc::default(),
            limits: LimitsTable::default(),
            limiter: Arc::default(),
            auth: AuthLayer::new(),
            inner_speaks_tls: false,
        }
    }

    /// From a configuration (validated here).
    ///
    /// # Errors
    ///
    /// Any validation error of the configuration.
    pub fn from_config(config: &crate::Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::new(config.build_endpoints()?)
            .fallback(config.fallback)
            .model_fallbacks(config.models.clone())
            .retry(config.retry)
            .client(config.client)
            .usage(config.usage)
            .prices(config.prices.clone()))
    }

    /// The balancer's settings.
    #[must_use]
    pub fn fallback(mut self, settings: FallbackSettings) -> Self {
        self.fallback = settings;
        self
    }

    /// Model fallback chains: when every deployment of a model failed, go on with the
    /// next model of its chain, its `model` rewritten (default none).
    #[must_use]
    pub fn model_fallbacks(mut self, models: ModelFallbacks) -> Self {
        self.models = models;
        self
    }

    /// The retry layer's settings.
    #[must_use]
    pub fn retry(mut self, settings: RetrySettings) -> Self {
        self.retry = settings;
        self
    }

    /// The HTTP client's settings (used by [`build`](Self::build)).
    #[must_use]
    pub fn client(mut self, settings: ClientSettings) -> Self {
        self.client = settings;
        self
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

    /// Adds `x-llm-tower-endpoint`, `x-llm-tower-attempts` and (after a model fallback)
    /// `x-llm-tower-model` response headers.
    #[must_use]
    pub fn response_headers(mut self, on: bool) -> Self {
        self.respond = self.respond.response_headers(on);
        self
    }

    /// Records metrics through the `metrics` facade (install a recorder to see them).
    #[cfg(feature = "metrics")]
    #[must_use]
    pub fn metrics(mut self, on: bool) -> Self {
        self.respond = self.respond.metrics(on);
        self
    }

    /// Logs one line per request with its attempts.
    #[must_use]
    pub fn access_log(mut self, on: bool) -> Self {
        self.respond = self.respond.access_log(on);
        self
    }

    /// Where the stack is mounted (see [`RespondLayer::mounted_at`]).
    #[must_use]
    pub fn mounted_at(mut self, prefix: &str) -> Self {
        self.respond = self.respond.mounted_at(prefix);
        self
    }

    /// Accounts for the tokens of every answer (see [`RespondLayer::usage`]): on the
    /// access log line, in the metrics, in each deployment's last minute, and as a
    /// [`UsageRecord`](crate::UsageRecord) on the response (default off).
    ///
    /// ```
    /// use llm_tower::{Endpoint, Prices, Upstream};
    ///
    /// let prices: Prices = serde_json::from_str(r#"{"gpt-4o": {"input": 2.5, "output": 10}}"#).unwrap();
    /// let endpoints = vec![Endpoint::builder("a", "http://127.0.0.1:1/v1").build().unwrap()];
    /// let upstream = Upstream::new(endpoints).usage(true).prices(prices);
    /// # let _ = upstream;
    /// ```
    #[must_use]
    pub fn usage(mut self, on: bool) -> Self {
        self.respond = self.respond.usage(on);
        self
    }

    /// The price table usage and budgets are priced with (default none).
    #[must_use]
    pub fn prices(mut self, prices: Prices) -> Self {
        self.prices = Arc::new(prices);
        self
    }

    /// Holds each client (the request's [`Caller`](crate::Caller)) to its limits: requests
    /// and tokens per minute, spend per day or month (priced with [`prices`](Self::prices);
    /// tokens and spend need [`usage`](Self::usage) to be settled), and the models it may ask
    /// for (see [`Limit`]). Default: no client has limits.
    ///
    /// ```
    /// use llm_tower::{Endpoint, Upstream};
    /// use llm_tower::limits::{Limits, LimitsTable};
    ///
    /// let table = LimitsTable::new([("team-a".into(), Limits { rpm: Some(600), ..Limits::default() })], None);
    /// let endpoints = vec![Endpoint::builder("a", "http://127.0.0.1:1/v1").build().unwrap()];
    /// let upstream = Upstream::new(endpoints).limits(table);
    /// # let _ = upstream;
    /// ```
    #[must_use]
    pub fn limits(mut self, table: LimitsTable) -> Self {
        self.limits = table;
        self
    }

    /// Counts the limits with `limiter` (default: one of this builder's own). Give the stack
    /// built by a reload the one before it had, and every client keeps its counts.
    #[must_use]
    pub fn limiter(mut self, limiter: Arc<Limiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Bring-your-own-key: keep the client's credentials for endpoints without a key.
    #[must_use]
    pub fn forward_client_credentials(mut self, on: bool) -> Self {
        self.auth = self.auth.forward_client_credentials(on);
        self
    }

    /// The `user-agent` sent upstream (`None` keeps the client's).
    #[must_use]
    pub fn user_agent(mut self, user_agent: Option<HeaderValue>) -> Self {
        self.auth = self.auth.user_agent(user_agent);
        self
    }

    /// Says that the service [`layer`](Self::layer) goes over speaks TLS itself (your own
    /// client, in a build of llm-tower without a TLS feature): `https://` endpoints are then
    /// accepted there. Without it, such a build refuses them, so that a key cannot go out in
    /// clear text through a client that has no TLS.
    ///
    /// ```
    /// use llm_tower::{Endpoint, HttpClient, Upstream};
    ///
    /// let endpoints = vec![Endpoint::builder("openai", "https://api.openai.com/v1").build().unwrap()];
    /// let refused = Upstream::new(endpoints.clone()).layer().is_err();
    /// assert_eq!(refused, !HttpClient::SUPPORTS_HTTPS);
    /// assert!(Upstream::new(endpoints).inner_speaks_tls(true).layer().is_ok());
    /// ```
    #[must_use]
    pub fn inner_speaks_tls(mut self, yes: bool) -> Self {
        self.inner_speaks_tls = yes;
        self
    }

    /// An `https://` endpoint, when nothing below the stack could reach it with TLS.
    fn https_without_tls(&self, client_speaks_tls: bool) -> Result<(), ConfigError> {
        if client_speaks_tls {
            return Ok(());
        }
        match self
            .endpoints
            .iter()
            .find(|e| e.base_url().scheme() == &http::uri::Scheme::HTTPS)
        {
            Some(endpoint) => Err(ConfigError::invalid(
                format!("endpoint `{}`: base_url", endpoint.id()),
                format!(
                    "{}; with a TLS client of your own below the stack, say so with \
                     Upstream::inner_speaks_tls(true)",
                    crate::client::NO_TLS
                ),
            )),
            None => Ok(()),
        }
    }

    /// The stack as a layer over your own inner service (which receives requests with an
    /// absolute URI, [`Selected`](crate::Selected) and [`Attempts`](crate::Attempts) in the
    /// extensions, the endpoint's credential, and a buffered body). Health checks, if any
    /// endpoint has one, start with [`UpstreamLayer::start_health_checks`].
    ///
    /// # Errors
    ///
    /// No endpoints, duplicate ids, an invalid setting, a health check on an endpoint
    /// without a key while client credentials are forwarded (the check would carry none), or
    /// an `https://` endpoint in a build without TLS (see
    /// [`inner_speaks_tls`](Self::inner_speaks_tls)).
    pub fn layer(&self) -> Result<UpstreamLayer, ConfigError> {
        self.https_without_tls(HttpClient::SUPPORTS_HTTPS || self.inner_speaks_tls)?;
        if self.auth.forwards_client_credentials()
            && let Some(endpoint) = self
                .endpoints
                .iter()
                .find(|e| e.health_check().is_some() && e.api_key().is_none())
        {
            return Err(ConfigError::invalid(
                format!("endpoint `{}`: health_check", endpoint.id()),
                "this endpoint uses the clients' own keys (forward_client_credentials), so a \
                     health check would carry none; give it an api_key or drop the check",
            ));
        }
        let fallback = FallbackLayer::builder(self.endpoints.iter().cloned())
            .settings(self.fallback)
            .model_fallbacks(self.models.clone())
            .build(self.registry.clone())?;
        let limits = LimitsLayer::new(self.limits.clone())
            .limiter(self.limiter.clone())
            .prices(self.prices.clone())
            .max_body_bytes(self.fallback.max_body_bytes);
        Ok(UpstreamLayer {
            respond: self
                .respond
                .clone()
                .health_registry(self.registry.clone())
                .shared_prices(self.prices.clone()),
            limits,
            fallback,
            retry: RetryLayer::with_settings(self.retry)?,
            auth: self.auth.clone(),
        })
    }

    /// The stack over a new pooled HTTP client. Endpoints with a
    /// [`HealthCheck`](crate::HealthCheck) are checked by a background task from now on
    /// (through auth and the same client, never retry), until the last clone of the
    /// service is dropped.
    ///
    /// # Errors
    ///
    /// As [`Upstream::layer`], an invalid client setting, an `https://` endpoint in a
    /// build without a TLS feature, or health checks configured outside a Tokio runtime.
    pub fn build(&self) -> Result<UpstreamService, ConfigError> {
        // Its own client, whatever was said of another.
        self.https_without_tls(HttpClient::SUPPORTS_HTTPS)?;
        let layer = self.layer()?;
        let client = HttpClient::new(&self.client)?;
        layer.start_health_checks(client.clone())?;
        Ok(layer.layer(client))
    }
}

/// The whole stack as one [`Layer`]: `Respond → Limits → Fallback → Translate → Usage → Retry
/// → Auth → S`.
///
/// ```
/// use llm_tower::{Endpoint, Upstream, UpstreamLayer};
///
/// let endpoints = vec![Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
/// let layer: UpstreamLayer = Upstream::new(endpoints).layer().unwrap();
/// assert!(layer.health().snapshot().iter().any(|e| e.id.as_str() == "a"));
/// ```
#[derive(Clone, Debug)]
pub struct UpstreamLayer {
    respond: RespondLayer,
    limits: LimitsLayer,
    fallback: FallbackLayer,
    retry: RetryLayer,
    auth: AuthLayer,
}

impl UpstreamLayer {
    /// The balancer's health registry.
    pub fn health(&self) -> &HealthRegistry {
        self.fallback.registry()
    }

    /// Starts the health checks of the endpoints that have a
    /// [`HealthCheck`](crate::HealthCheck), sent through this stack's auth layer over
    /// `inner`: the service you layer the stack over (or a clone of it), so that checks carry
    /// the endpoint's key, reach it the way traffic does, and are never retried.
    /// [`Upstream::build`] does this with its HTTP client; a stack built with
    /// [`Upstream::layer`] needs it called once. The checker stops when the last clone of the
    /// layer and of the services built from it is dropped.
    ///
    /// Returns whether it started now (see [`FallbackLayer::start_health_checks`]).
    ///
    /// # Errors
    ///
    /// Outside a Tokio runtime, when some endpoint has a check.
    ///
    /// ```
    /// use llm_tower::{Endpoint, HealthCheck, HttpClient, ClientSettings, Upstream};
    /// use tower::Layer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let endpoint = Endpoint::builder("local", "http://127.0.0.1:11434/v1")
    ///     .health_check(HealthCheck::default())
    ///     .build()
    ///     .unwrap();
    /// let layer = Upstream::new(vec![endpoint]).layer().unwrap();
    /// let client = HttpClient::new(&ClientSettings::default()).unwrap();
    /// assert!(layer.start_health_checks(client.clone()).unwrap());
    /// let _service = layer.layer(client);
    /// # }
    /// ```
    #[must_use = "the checker may not have started: see the result"]
    pub fn start_health_checks<S>(&self, inner: S) -> Result<bool, ConfigError>
    where
        Auth<S>: CheckService,
    {
        self.fallback.start_health_checks(self.auth.layer(inner))
    }
}

impl<S> Layer<S> for UpstreamLayer {
    type Service = Respond<Limit<Fallback<Translate<ReadUsage<Retry<Auth<S>>>>>>>;

    fn layer(&self, inner: S) -> Self::Service {
        let attempt = UsageLayer::new().layer(self.retry.layer(self.auth.layer(inner)));
        let balancer = self.fallback.layer(TranslateLayer::new().layer(attempt));
        self.respond.layer(self.limits.layer(balancer))
    }
}
