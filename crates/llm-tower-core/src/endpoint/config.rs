//! One endpoint as a configuration file writes it, validated into an [`Endpoint`].

use std::time::Duration;

use http::HeaderName;
use serde::{Deserialize, Serialize};

use super::{ApiKey, Continuation, Endpoint, HealthCheck, Hedge, Provider, Secret, Translation};
use crate::config_error::ConfigError;
use crate::model::ModelRoute;
use crate::policy::RetryPolicy;
use crate::retry_on::RetryOn;

/// Provider names accepted in configuration.
///
/// ```
/// use llm_tower_core::ProviderName;
///
/// let name: ProviderName = serde_json::from_str("\"gemini\"").unwrap();
/// assert_eq!(name, ProviderName::Gemini);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    /// OpenAI and OpenAI-compatible servers.
    #[default]
    Openai,
    /// Azure OpenAI.
    Azure,
    /// Anthropic.
    Anthropic,
    /// Google Gemini.
    Gemini,
    /// A custom header (`auth_header`, optional `auth_prefix`).
    Custom,
}

/// One endpoint in configuration; [`EndpointConfig::build`] validates it into an [`Endpoint`].
///
/// ```
/// use llm_tower_core::{EndpointConfig, Secret};
///
/// let config: EndpointConfig = serde_json::from_str(
///     r#"{"id": "main", "base_url": "https://api.openai.com/v1", "timeout": "30s"}"#,
/// ).unwrap();
/// let endpoint = EndpointConfig { api_key: Some(Secret::new("sk-x")), ..config }.build().unwrap();
/// assert_eq!(endpoint.timeout(), Some(std::time::Duration::from_secs(30)));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Unique id.
    pub id: String,
    /// Base URL; requests go to `base_url + path_and_query`.
    pub base_url: String,
    /// Provider (default `openai`).
    #[serde(default)]
    pub provider: ProviderName,
    /// The key sent upstream (usually `${ENV_VAR}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Header carrying the key, for `provider: custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    /// Text before the key in `auth_header`, for `provider: custom` (such as `"Token "`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_prefix: Option<String>,
    /// Lower is tried first (default 0).
    #[serde(default)]
    pub priority: u32,
    /// Relative weight for the weighted strategy (default 1, at least 1).
    #[serde(default = "default_one")]
    pub weight: u32,
    /// Whether failures here may fall back to another endpoint (default true).
    #[serde(default = "default_true")]
    pub fallback: bool,
    /// Base cooldown after an ejection (default 5000 ms): the wait before an ejected
    /// endpoint is probed again, doubled after each failed probe.
    #[serde(default = "default_health_check_interval", with = "crate::duration")]
    pub health_check_interval: Duration,
    /// Per-try timeout until the response head (default 600 s; `null` for none).
    #[serde(default = "default_timeout", with = "crate::duration::option")]
    pub timeout: Option<Duration>,
    /// Wait for the first body byte of a 2xx response (default none).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub first_byte_timeout: Option<Duration>,
    /// Wait for the next response body frame once the head was sent (default 300 s; `null`
    /// for none). When it passes, the client's stream is aborted and the endpoint counts a
    /// failure.
    #[serde(
        default = "default_stream_idle_timeout",
        with = "crate::duration::option"
    )]
    pub stream_idle_timeout: Option<Duration>,
    /// Retry policy (default `ExponentialBackoff` with its defaults).
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    /// The failures retried on this endpoint before falling back (`connect`, `reset`,
    /// `timeout`, `first_byte_timeout`, `protocol`, `5xx`, `429`, `408`); default every one
    /// but the two timeouts, which fall back at once.
    #[serde(default)]
    pub retry_on: RetryOn,
    /// `prefill`: this endpoint may be sent the continuation of a stream that another
    /// deployment of its model broke off (the original request, plus the assistant's text so
    /// far as the last message). Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuation>,
    /// `{after: 2s, max_percent: 5}`: a request whose first byte is later than `after` here
    /// is sent to the next deployment too, and the first to answer wins (default never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<Hedge>,
    /// OpenAI-format streams are asked for their usage (`stream_options.include_usage`) when
    /// their client did not ask, so that their tokens are counted; the extra usage chunk is
    /// taken out of the client's stream. `false` for a server that refuses the option.
    /// Default `true`.
    #[serde(default = "default_true")]
    pub stream_usage: bool,
    /// For requests translated into this endpoint's API: the `max_tokens` they get when the
    /// client gave none (Anthropic requires one; default 4096).
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// For requests translated into this endpoint's API: fields it cannot honour that are
    /// dropped rather than refused with a 400 naming them (`[logprobs, seed]`; default none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop_unsupported: Vec<String>,
    /// The models it serves (default: any model): a list of names, or a map
    /// `name: upstream-name` for an endpoint that knows a model by another name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<ModelsConfig>,
    /// An active health check (default none): see [`HealthCheck`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// An endpoint's `models` as a configuration file writes it: a list of names
/// (`[gpt-4o, gpt-4o-mini]`) or a map from the name clients use to the endpoint's own
/// (`{gpt-4o: gpt4o-prod}`; an empty value keeps the name). Entries keep their order, and a
/// name written twice is kept twice so that validation can say so.
///
/// ```
/// use llm_tower_core::ModelsConfig;
///
/// let list: ModelsConfig = serde_json::from_str(r#"["gpt-4o", "gpt-4o-mini"]"#).unwrap();
/// assert_eq!(list.0[1], ("gpt-4o-mini".to_owned(), "gpt-4o-mini".to_owned()));
/// let map: ModelsConfig = serde_json::from_str(r#"{"gpt-4o": "gpt4o-prod", "o1": null}"#).unwrap();
/// assert_eq!(map.0, [("gpt-4o".into(), "gpt4o-prod".into()), ("o1".into(), "o1".into())]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelsConfig(pub Vec<(String, String)>);

impl Serialize for ModelsConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, upstream) in &self.0 {
            map.serialize_entry(name, upstream)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ModelsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = ModelsConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of model names, or a map from model name to upstream name")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    entries.push((name.clone(), name));
                }
                Ok(ModelsConfig(entries))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((name, upstream)) = map.next_entry::<String, Option<String>>()? {
                    let upstream = upstream.unwrap_or_else(|| name.clone());
                    entries.push((name, upstream));
                }
                Ok(ModelsConfig(entries))
            }
        }
        deserializer.deserialize_any(Entries)
    }
}

impl EndpointConfig {
    /// An entry with every optional field at its default.
    pub fn new(id: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            base_url: base_url.into(),
            provider: ProviderName::default(),
            api_key: None,
            auth_header: None,
            auth_prefix: None,
            priority: 0,
            weight: 1,
            fallback: true,
            health_check_interval: default_health_check_interval(),
            timeout: default_timeout(),
            first_byte_timeout: None,
            stream_idle_timeout: default_stream_idle_timeout(),
            retry_policy: RetryPolicy::default(),
            retry_on: RetryOn::default(),
            continuation: None,
            hedge: None,
            stream_usage: true,
            default_max_tokens: default_max_tokens(),
            drop_unsupported: Vec::new(),
            models: None,
            health_check: None,
        }
    }

    /// Validates this entry and builds the endpoint.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the endpoint and field.
    pub fn build(&self) -> Result<Endpoint, ConfigError> {
        let field = |name: &str| format!("endpoint `{}`: {name}", self.id);
        let provider = match self.provider {
            ProviderName::Openai => Provider::OpenAi,
            ProviderName::Azure => Provider::Azure,
            ProviderName::Anthropic => Provider::Anthropic,
            ProviderName::Gemini => Provider::Gemini,
            ProviderName::Custom => {
                let header = self.auth_header.as_deref().ok_or_else(|| {
                    ConfigError::invalid(field("auth_header"), "is required for provider `custom`")
                })?;
                let header = HeaderName::try_from(header).map_err(|_| {
                    ConfigError::invalid(
                        field("auth_header"),
                        format!("`{header}` is not a valid header name"),
                    )
                })?;
                Provider::Custom {
                    header,
                    prefix: self.auth_prefix.clone(),
                }
            }
        };
        if self.provider != ProviderName::Custom {
            for (name, set) in [
                ("auth_header", self.auth_header.is_some()),
                ("auth_prefix", self.auth_prefix.is_some()),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        field(name),
                        "is only used with provider `custom`",
                    ));
                }
            }
        }
        let mut builder = Endpoint::builder(self.id.as_str(), self.base_url.as_str())
            .provider(provider)
            .priority(self.priority)
            .weight(self.weight)
            .fallback(self.fallback)
            .health_check_interval(self.health_check_interval)
            .timeout(self.timeout)
            .first_byte_timeout(self.first_byte_timeout)
            .stream_idle_timeout(self.stream_idle_timeout)
            .retry_policy(self.retry_policy.clone())
            .retry_on(self.retry_on)
            .continuation(self.continuation)
            .hedge(self.hedge)
            .stream_usage(self.stream_usage)
            .translation(Translation {
                default_max_tokens: self.default_max_tokens,
                drop_unsupported: self.drop_unsupported.clone(),
            });
        if let Some(models) = &self.models {
            builder = builder.models(
                models
                    .0
                    .iter()
                    .map(|(name, upstream)| ModelRoute::alias(name.as_str(), upstream.as_str())),
            );
        }
        if let Some(check) = &self.health_check {
            builder = builder.health_check(check.clone());
        }
        if let Some(secret) = &self.api_key {
            let key = ApiKey::new(secret.expose_secret())
                .map_err(|msg| ConfigError::invalid(field("api_key"), msg))?;
            builder = builder.api_key(key);
        }
        builder.build()
    }
}

fn default_max_tokens() -> u32 {
    Translation::DEFAULT_MAX_TOKENS
}

fn default_one() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_health_check_interval() -> Duration {
    Endpoint::DEFAULT_HEALTH_CHECK_INTERVAL
}
#[allow(clippy::unnecessary_wraps)]
fn default_timeout() -> Option<Duration> {
    Some(Endpoint::DEFAULT_TIMEOUT)
}
#[allow(clippy::unnecessary_wraps)]
fn default_stream_idle_timeout() -> Option<Duration> {
    Some(Endpoint::DEFAULT_STREAM_IDLE_TIMEOUT)
}
