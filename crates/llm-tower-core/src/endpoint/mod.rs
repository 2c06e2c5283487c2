//! The endpoint model: identity, address, provider, credential and per-endpoint policy.

mod api_key;
mod base_url;
mod builder;
mod config;
mod continuation;
mod health_check;
mod hedge;
mod id;
mod path_check;
mod provider;
mod translation;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

pub use api_key::{ApiKey, Secret};
pub use base_url::{BaseUrl, port_is_valid};
pub use builder::EndpointBuilder;
pub use config::{EndpointConfig, ModelsConfig, ProviderName};
pub use continuation::Continuation;
pub use health_check::{ExpectStatus, HealthCheck};
pub use hedge::Hedge;
pub use id::EndpointId;
pub use provider::Provider;
pub use translation::Translation;

use crate::config_error::ConfigError;
use crate::model::ModelRoute;
use crate::policy::RetryPolicy;
use crate::retry_on::RetryOn;

/// One upstream: where it is, how to authenticate, and how to treat its failures.
///
/// Build it with [`Endpoint::builder`] or from configuration
/// ([`EndpointConfig::build`]). Its credential header is
/// built once here, marked sensitive, and only cloned per request.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::{ApiKey, Endpoint, Provider};
///
/// let endpoint = Endpoint::builder("claude", "https://api.anthropic.com/v1")
///     .provider(Provider::Anthropic)
///     .api_key(ApiKey::new("sk-ant-secret").unwrap())
///     .timeout(Some(Duration::from_secs(120)))
///     .build()
///     .unwrap();
/// let (header, value) = endpoint.credential().unwrap();
/// assert_eq!(header, "x-api-key");
/// assert!(value.is_sensitive());
/// ```
#[derive(Clone, Debug)]
pub struct Endpoint {
    id: EndpointId,
    /// The id as a header value, made once: responses name the endpoint that answered.
    id_value: HeaderValue,
    base_url: BaseUrl,
    provider: Provider,
    api_key: Option<ApiKey>,
    credential: Option<(HeaderName, HeaderValue)>,
    priority: u32,
    weight: u32,
    fallback: bool,
    health_check_interval: Duration,
    timeout: Option<Duration>,
    first_byte_timeout: Option<Duration>,
    stream_idle_timeout: Option<Duration>,
    retry_policy: RetryPolicy,
    retry_on: RetryOn,
    continuation: Option<Continuation>,
    hedge: Option<Hedge>,
    stream_usage: bool,
    translation: Translation,
    models: Option<Arc<[ModelRoute]>>,
    health_check: Option<Arc<HealthCheck>>,
}

impl Endpoint {
    /// Checks a balancer's endpoint list: at least one endpoint, and no id used twice. Errors
    /// name the position in the list, as a configuration file's `endpoints` would.
    ///
    /// ```
    /// use llm_tower_core::Endpoint;
    ///
    /// let a = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
    /// let err = Endpoint::check_list(&[a.clone(), a]).unwrap_err();
    /// assert_eq!(err.to_string(), "endpoints[1].id: duplicate id `a` (already used by endpoints[0])");
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for an empty list or a duplicate id.
    pub fn check_list(endpoints: &[Endpoint]) -> Result<(), ConfigError> {
        if endpoints.is_empty() {
            return Err(ConfigError::invalid(
                "endpoints",
                "at least one endpoint is required",
            ));
        }
        let mut seen = std::collections::HashMap::with_capacity(endpoints.len());
        for (index, endpoint) in endpoints.iter().enumerate() {
            if let Some(first) = seen.insert(endpoint.id().as_str(), index) {
                return Err(ConfigError::invalid(
                    format!("endpoints[{index}].id"),
                    format!(
                        "duplicate id `{}` (already used by endpoints[{first}])",
                        endpoint.id()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Default cooldown after an ejection (pixiu's `health_check_interval`): 5 s.
    pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
    /// Default per-try timeout until the response head: 600 s (what OpenAI's SDKs use; long
    /// non-streaming completions send their head only when done).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
    /// Default wait for the next body frame once the response head was sent: 300 s.
    pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

    /// Starts building an endpoint. Defaults: provider `OpenAi`, no key, priority 0, weight 1,
    /// fallback on, 5 s cooldown, 600 s per-try timeout, no first-byte timeout, 300 s stream
    /// idle timeout, `ExponentialBackoff` retries with pixiu's defaults.
    pub fn builder(id: impl Into<EndpointId>, base_url: impl Into<String>) -> EndpointBuilder {
        EndpointBuilder::new(id.into(), base_url.into())
    }

    /// The endpoint's id.
    pub fn id(&self) -> &EndpointId {
        &self.id
    }

    /// The id as a header value, made when the endpoint was built: a response names the
    /// endpoint that answered it, and cloning this value copies nothing.
    ///
    /// ```
    /// use llm_tower_core::Endpoint;
    ///
    /// let endpoint = Endpoint::builder("azure-east", "http://127.0.0.1:1").build().unwrap();
    /// assert_eq!(endpoint.id_value(), "azure-east");
    /// ```
    pub fn id_value(&self) -> &HeaderValue {
        &self.id_value
    }

    /// The base URL requests are sent under.
    pub fn base_url(&self) -> &BaseUrl {
        &self.base_url
    }
    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }
    /// The API key, if any.
    pub fn api_key(&self) -> Option<&ApiKey> {
        self.api_key.as_ref()
    }
    /// The prebuilt credential header (name and sensitive value), if the endpoint has a key.
    pub fn credential(&self) -> Option<(&HeaderName, &HeaderValue)> {
        self.credential.as_ref().map(|(n, v)| (n, v))
    }
    /// Lower is tried first.
    pub fn priority(&self) -> u32 {
        self.priority
    }
    /// Relative share for the weighted strategy (at least 1).
    pub fn weight(&self) -> u32 {
        self.weight
    }
    /// Whether a failure here may fall back to another endpoint.
    pub fn fallback(&self) -> bool {
        self.fallback
    }
    /// Base cooldown after an ejection.
    pub fn health_check_interval(&self) -> Duration {
        self.health_check_interval
    }
    /// Per-try timeout until the response head.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// Optional wait for the first body byte of a 2xx response.
    pub fn first_byte_timeout(&self) -> Option<Duration> {
        self.first_byte_timeout
    }
    /// Longest wait for the next body frame once the response head was sent.
    pub fn stream_idle_timeout(&self) -> Option<Duration> {
        self.stream_idle_timeout
    }
    /// The retry policy for this endpoint.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry_policy
    }

    /// The failures retried on this endpoint before the balancer moves on (by default every
    /// retryable one but the timeouts).
    pub fn retry_on(&self) -> RetryOn {
        self.retry_on
    }

    /// Whether this endpoint may continue a stream another one broke off, and how.
    pub fn continuation(&self) -> Option<Continuation> {
        self.continuation
    }

    /// When a late first byte here is hedged on another deployment (default never).
    pub fn hedge(&self) -> Option<Hedge> {
        self.hedge
    }

    /// Whether OpenAI-format streams sent here are asked for their usage when their client did
    /// not ask (see [`EndpointBuilder::stream_usage`]).
    pub fn stream_usage(&self) -> bool {
        self.stream_usage
    }

    /// How requests translated for this endpoint's API fill what their client left out, and
    /// which fields it cannot honour are dropped rather than refused.
    pub fn translation(&self) -> &Translation {
        &self.translation
    }

    /// The models this endpoint serves, or `None` when it serves any model (the request's
    /// `model` is sent as it came).
    ///
    /// ```
    /// use llm_tower_core::{Endpoint, ModelRoute};
    ///
    /// let any = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
    /// assert!(any.models().is_none());
    /// let azure = Endpoint::builder("b", "http://127.0.0.1:2")
    ///     .models([ModelRoute::alias("gpt-4o", "gpt4o-prod"), ModelRoute::from("gpt-4o-mini")])
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(azure.models().unwrap()[0].upstream().as_ref(), "gpt4o-prod");
    /// assert_eq!(azure.route_for("gpt-4o-mini").unwrap().upstream().as_ref(), "gpt-4o-mini");
    /// assert!(azure.route_for("claude").is_none());
    /// ```
    pub fn models(&self) -> Option<&[ModelRoute]> {
        self.models.as_deref()
    }

    /// The active health check, if one is configured.
    ///
    /// ```
    /// use llm_tower_core::{Endpoint, HealthCheck};
    ///
    /// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1/v1")
    ///     .health_check(HealthCheck::default())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(endpoint.health_check().unwrap().path, "/models");
    /// ```
    pub fn health_check(&self) -> Option<&HealthCheck> {
        self.health_check.as_deref()
    }

    /// How this endpoint serves `model`, if it lists it.
    pub fn route_for(&self, model: &str) -> Option<&ModelRoute> {
        self.models()?.iter().find(|route| &**route.name() == model)
    }
}

#[cfg(test)]
mod tests;
