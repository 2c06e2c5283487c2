//! The endpoint model: identity, address, provider, credential and per-endpoint policy.

mod api_key;
mod base_url;
mod config;
mod continuation;
mod health_check;
mod id;
mod provider;
mod translation;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

pub use api_key::{ApiKey, Secret};
pub use base_url::{BaseUrl, port_is_valid};
pub use config::{EndpointConfig, ModelsConfig, ProviderName};
pub use continuation::Continuation;
pub use health_check::{ExpectStatus, HealthCheck};
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
        EndpointBuilder {
            id: id.into(),
            base_url: base_url.into(),
            provider: Provider::OpenAi,
            api_key: None,
            priority: 0,
            weight: 1,
            fallback: true,
            health_check_interval: Self::DEFAULT_HEALTH_CHECK_INTERVAL,
            timeout: Some(Self::DEFAULT_TIMEOUT),
            first_byte_timeout: None,
            stream_idle_timeout: Some(Self::DEFAULT_STREAM_IDLE_TIMEOUT),
            retry_policy: RetryPolicy::default(),
            retry_on: RetryOn::default(),
            continuation: None,
            stream_usage: true,
            translation: Translation::default(),
            models: None,
            health_check: None,
        }
    }

    /// The endpoint's id.
    pub fn id(&self) -> &EndpointId {
        &self.id
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

/// Builder for [`Endpoint`]; see [`Endpoint::builder`].
///
/// ```
/// use llm_tower_core::Endpoint;
///
/// let err = Endpoint::builder("a", "http://127.0.0.1:1").weight(0).build().unwrap_err();
/// assert_eq!(err.to_string(), "endpoint `a`: weight: must be at least 1");
/// ```
#[derive(Clone, Debug)]
pub struct EndpointBuilder {
    id: EndpointId,
    base_url: String,
    provider: Provider,
    api_key: Option<ApiKey>,
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
    stream_usage: bool,
    translation: Translation,
    models: Option<Vec<ModelRoute>>,
    health_check: Option<HealthCheck>,
}

impl EndpointBuilder {
    /// Sets the provider.
    #[must_use]
    pub fn provider(mut self, provider: Provider) -> Self {
        self.provider = provider;
        self
    }
    /// Sets the API key.
    #[must_use]
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }
    /// Sets the priority (lower first).
    #[must_use]
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }
    /// Sets the weight (must be at least 1).
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
    /// Allows or forbids falling back to another endpoint after this one failed.
    #[must_use]
    pub fn fallback(mut self, fallback: bool) -> Self {
        self.fallback = fallback;
        self
    }
    /// Sets the base cooldown after an ejection.
    #[must_use]
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval = interval;
        self
    }
    /// Sets (or removes) the per-try timeout until the response head.
    #[must_use]
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets (or removes) the first-byte timeout for 2xx responses.
    #[must_use]
    pub fn first_byte_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.first_byte_timeout = timeout;
        self
    }
    /// Sets (or removes) the wait for the next response body frame once the head was sent;
    /// when it passes, the client's stream is aborted and the endpoint counts a failure.
    #[must_use]
    pub fn stream_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.stream_idle_timeout = timeout;
        self
    }
    /// Sets the retry policy.
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }
    /// Sets the failures retried on this endpoint itself; the others fall back at once.
    #[must_use]
    pub fn retry_on(mut self, retry_on: RetryOn) -> Self {
        self.retry_on = retry_on;
        self
    }
    /// Lets this endpoint continue streams that another deployment of its model broke off
    /// (by default none is sent such a request).
    #[must_use]
    pub fn continuation(mut self, continuation: Option<Continuation>) -> Self {
        self.continuation = continuation;
        self
    }
    /// Whether OpenAI-format streams are asked for their usage (`stream_options.include_usage`)
    /// when their client did not ask, so that a usage layer can count their tokens (default
    /// `true`; `false` for a server that refuses the option).
    #[must_use]
    pub fn stream_usage(mut self, ask: bool) -> Self {
        self.stream_usage = ask;
        self
    }
    /// Sets how requests translated for this endpoint fill in and drop fields.
    #[must_use]
    pub fn translation(mut self, translation: Translation) -> Self {
        self.translation = translation;
        self
    }
    /// Sets the models this endpoint serves (by default, any model): names, or aliases
    /// ([`ModelRoute::alias`]) for an endpoint that calls a model by another name.
    #[must_use]
    pub fn models<M: Into<ModelRoute>>(mut self, models: impl IntoIterator<Item = M>) -> Self {
        self.models = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// Checks this endpoint actively (see [`HealthCheck`]); by default it is not checked, and
    /// after a cooldown the next request is its half-open probe.
    #[must_use]
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = Some(check);
        self
    }

    /// Validates and builds the endpoint.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field: empty id, bad base URL, zero weight, a
    /// custom header that is not a valid header name, an invalid retry policy or health check.
    pub fn build(self) -> Result<Endpoint, ConfigError> {
        let field = |name: &str| format!("endpoint `{}`: {name}", self.id);
        ConfigError::check_name("id", self.id.as_str())?;
        if let Provider::Custom { header, .. } = &self.provider {
            check_custom_header(header)
                .map_err(|msg| ConfigError::invalid(field("auth_header"), msg))?;
        }
        let base_url = BaseUrl::parse(&self.base_url)
            .map_err(|msg| ConfigError::invalid(field("base_url"), msg))?;
        if self.weight == 0 {
            return Err(ConfigError::invalid(field("weight"), "must be at least 1"));
        }
        ConfigError::check_cooldown(field("health_check_interval"), self.health_check_interval)?;
        ConfigError::check_timeout(field("timeout"), self.timeout)?;
        ConfigError::check_timeout(field("first_byte_timeout"), self.first_byte_timeout)?;
        ConfigError::check_timeout(field("stream_idle_timeout"), self.stream_idle_timeout)?;
        self.retry_policy
            .validate()
            .map_err(|msg| ConfigError::invalid(field("retry_policy"), msg))?;
        if let Some(models) = &self.models {
            check_models(models).map_err(|msg| ConfigError::invalid(field("models"), msg))?;
        }
        if let Some(check) = &self.health_check {
            check
                .validate()
                .and_then(|()| {
                    check
                        .uri(&base_url)
                        .map(drop)
                        .map_err(|e| format!("path: {e}"))
                })
                .map_err(|msg| ConfigError::invalid(field("health_check"), msg))?;
        }
        let credential = match &self.api_key {
            None => None,
            Some(key) => {
                let prefix = self.provider.credential_prefix();
                let mut bytes = Vec::with_capacity(prefix.len() + key.expose_secret().len());
                bytes.extend_from_slice(prefix.as_bytes());
                bytes.extend_from_slice(key.expose_secret());
                let mut value = HeaderValue::from_bytes(&bytes).map_err(|_| {
                    ConfigError::invalid(field("auth_prefix"), "is not a valid header value")
                })?;
                value.set_sensitive(true);
                Some((self.provider.credential_header(), value))
            }
        };
        Ok(Endpoint {
            id: self.id,
            base_url,
            provider: self.provider,
            api_key: self.api_key,
            credential,
            priority: self.priority,
            weight: self.weight,
            fallback: self.fallback,
            health_check_interval: self.health_check_interval,
            timeout: self.timeout,
            first_byte_timeout: self.first_byte_timeout,
            stream_idle_timeout: self.stream_idle_timeout,
            retry_policy: self.retry_policy,
            retry_on: self.retry_on,
            continuation: self.continuation,
            stream_usage: self.stream_usage,
            translation: self.translation,
            models: self.models.map(Into::into),
            health_check: self.health_check.map(Arc::new),
        })
    }
}

/// An endpoint's model list names at least one model, each once, none empty.
fn check_models(models: &[ModelRoute]) -> Result<(), String> {
    if models.is_empty() {
        return Err("lists no model (leave it out for an endpoint that serves any model)".into());
    }
    for (i, route) in models.iter().enumerate() {
        for name in [route.name(), route.upstream()] {
            if name.trim().is_empty() {
                return Err("a model name is empty".into());
            }
            if name.trim() != &**name {
                return Err(format!("`{name}` has spaces around it"));
            }
        }
        if models[..i]
            .iter()
            .any(|earlier| earlier.name() == route.name())
        {
            return Err(format!("`{}` is listed twice", route.name()));
        }
    }
    Ok(())
}

/// A custom credential header must not be one that frames or routes the message (the key
/// would become the `Host`, a `transfer-encoding` or a length, or be dropped on the way), nor
/// one the stack sets itself (`user-agent`, `x-request-id`: the key would be overwritten, or
/// logged as an id) or that asks the upstream for something (`expect`).
fn check_custom_header(header: &HeaderName) -> Result<(), String> {
    use http::header::{CONTENT_LENGTH, EXPECT, HOST, USER_AGENT};
    if header == HOST || header == CONTENT_LENGTH || crate::HOP_BY_HOP.contains(header) {
        return Err(format!(
            "`{header}` frames or routes the request; the key cannot travel in it"
        ));
    }
    if header == USER_AGENT || header == EXPECT || header.as_str() == "x-request-id" {
        return Err(format!(
            "`{header}` is set or read by the gateway itself; the key cannot travel in it"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
