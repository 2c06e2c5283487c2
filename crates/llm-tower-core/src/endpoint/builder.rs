//! [`EndpointBuilder`]: an [`Endpoint`] put together in code, checked when built.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::{
    ApiKey, BaseUrl, Continuation, Endpoint, EndpointId, HealthCheck, Hedge, Provider, Translation,
};
use crate::config_error::ConfigError;
use crate::model::ModelRoute;
use crate::policy::RetryPolicy;
use crate::retry_on::RetryOn;

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
    hedge: Option<Hedge>,
    stream_usage: bool,
    translation: Translation,
    models: Option<Vec<ModelRoute>>,
    health_check: Option<HealthCheck>,
}

impl EndpointBuilder {
    /// A builder of endpoint `id` at `base_url`, every other setting at its default.
    pub(super) fn new(id: EndpointId, base_url: String) -> Self {
        Self {
            id,
            base_url,
            provider: Provider::OpenAi,
            api_key: None,
            priority: 0,
            weight: 1,
            fallback: true,
            health_check_interval: Endpoint::DEFAULT_HEALTH_CHECK_INTERVAL,
            timeout: Some(Endpoint::DEFAULT_TIMEOUT),
            first_byte_timeout: None,
            stream_idle_timeout: Some(Endpoint::DEFAULT_STREAM_IDLE_TIMEOUT),
            retry_policy: RetryPolicy::default(),
            retry_on: RetryOn::default(),
            continuation: None,
            hedge: None,
            stream_usage: true,
            translation: Translation::default(),
            models: None,
            health_check: None,
        }
    }

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
    /// Hedges a late first byte here on another deployment (see [`Hedge`]; default never).
    #[must_use]
    pub fn hedge(mut self, hedge: Option<Hedge>) -> Self {
        self.hedge = hedge;
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
        if let Some(hedge) = &self.hedge {
            hedge.validate(&field("hedge"))?;
        }
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
        // The id was checked above: letters, digits, `.`, `_` and `-` only.
        let id_value = HeaderValue::from_str(self.id.as_str())
            .map_err(|_| ConfigError::invalid(field("id"), "is not a valid header value"))?;
        Ok(Endpoint {
            id_value,
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
            hedge: self.hedge,
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
