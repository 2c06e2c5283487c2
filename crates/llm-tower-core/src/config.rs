//! Configuration: DESIGN's schema, read from YAML or TOML, with `${VAR}` interpolation and
//! validation at load.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::body::DEFAULT_MAX_BODY_BYTES;
use crate::endpoint::{ApiKey, Endpoint, Provider};
use crate::policy::RetryPolicy;

/// A configuration error. Its message names the offending field (and endpoint), never a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file extension is not `.yaml`, `.yml` or `.toml`.
    #[error("{}: unknown configuration format (use a .yaml, .yml or .toml file)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The text is not valid YAML/TOML, or does not match the schema.
    #[error("{}", join_field(field, message))]
    Parse {
        /// Path of the offending field, such as `endpoints[1].provider` (empty for the document).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field, such as ``endpoint `backup`: base_url``.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// `${VAR}` names an environment variable that is not set.
    #[error("{field}: environment variable `{var}` is not set")]
    MissingEnv {
        /// Where the reference is.
        field: String,
        /// The variable.
        var: String,
    },
}

fn join_field(field: &str, message: &str) -> String {
    if field.is_empty() || field == "." {
        message.to_owned()
    } else {
        format!("{field}: {message}")
    }
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How the balancer picks among the available endpoints of the best priority tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// Smooth weighted round-robin by `weight`.
    Weighted,
    /// The less busy of two endpoints drawn at random (power of two choices).
    LeastInFlight,
}

/// What to do when every candidate endpoint is cooling down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenAllUnhealthy {
    /// Try the endpoint whose cooldown ends first rather than failing without trying.
    #[default]
    TrySoonest,
    /// Answer 503 with `Retry-After` without contacting anyone.
    Fail,
}

/// Retry budget per endpoint (tower's `TpsBudget`): retries may add `percent` % of the
/// requests, plus `min_per_second`, over a sliding `ttl` window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a percentage of requests (0 to 1000; default 20).
    #[serde(default = "default_percent")]
    pub percent: f32,
    /// Retries always allowed per second (default 10).
    #[serde(default = "default_min_per_second")]
    pub min_per_second: u32,
    /// Window the budget is computed over (1 s to 60 s; default 10 s).
    #[serde(default = "default_ttl", with = "crate::duration")]
    pub ttl: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            percent: default_percent(),
            min_per_second: default_min_per_second(),
            ttl: default_ttl(),
        }
    }
}

/// Settings of the pooled HTTP client (used by the `llm-tower` facade).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Limit for establishing a TCP connection (default 5 s).
    #[serde(default = "default_connect_timeout", with = "crate::duration")]
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long (default 90 s).
    #[serde(default = "default_pool_idle_timeout", with = "crate::duration")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host (default 64).
    #[serde(default = "default_pool_max_idle_per_host")]
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: default_connect_timeout(),
            pool_idle_timeout: default_pool_idle_timeout(),
            pool_max_idle_per_host: default_pool_max_idle_per_host(),
        }
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_pool_max_idle_per_host() -> usize {
    64
}

/// The longest cooldown that may be configured (`max_cooldown`, `health_check_interval`).
pub const MAX_COOLDOWN_LIMIT: Duration = Duration::from_secs(24 * 3600);

fn default_percent() -> f32 {
    20.0
}
fn default_min_per_second() -> u32 {
    10
}
fn default_ttl() -> Duration {
    Duration::from_secs(10)
}
fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_one() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_max_cooldown() -> Duration {
    Duration::from_secs(60)
}
fn default_health_check_interval() -> Duration {
    Endpoint::DEFAULT_HEALTH_CHECK_INTERVAL
}
#[allow(clippy::unnecessary_wraps)]
fn default_timeout() -> Option<Duration> {
    Some(Endpoint::DEFAULT_TIMEOUT)
}

/// The upstream configuration (DESIGN's schema). Load it with [`Config::from_path`],
/// [`Config::from_yaml_str`] or [`Config::from_toml_str`]; all of them validate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Selection strategy (default `round_robin`).
    #[serde(default)]
    pub strategy: Strategy,
    /// Behaviour when every endpoint is cooling down (default `try_soonest`).
    #[serde(default)]
    pub when_all_unhealthy: WhenAllUnhealthy,
    /// Request bodies are buffered for replay up to this size (default 32 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Consecutive exhausted requests before an endpoint is ejected (default 1).
    #[serde(default = "default_one")]
    pub unhealthy_threshold: u32,
    /// Cap for escalating cooldowns (default 60 s).
    #[serde(default = "default_max_cooldown", with = "crate::duration")]
    pub max_cooldown: Duration,
    /// Retry budget per endpoint.
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// Settings of the HTTP client that talks to the endpoints.
    #[serde(default)]
    pub client: ClientConfig,
    /// The endpoints, in order.
    pub endpoints: Vec<EndpointConfig>,
}

/// Provider names accepted in configuration.
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

/// A secret string from configuration: `Debug` and serialisation print `***`, and a value
/// of the wrong type is rejected without being repeated in the error.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        impl serde::de::Visitor<'_> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the key as a string")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Secret, E> {
                Ok(Secret(value.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Secret, E> {
                Ok(Secret(value))
            }
        }
        deserializer
            .deserialize_string(SecretVisitor)
            .map_err(|_| serde::de::Error::custom("expected the key as a quoted string"))
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
    /// The secret text. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// One endpoint in configuration; [`EndpointConfig::build`] validates it into an [`Endpoint`].
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
    /// Base cooldown after an ejection (default 5000 ms).
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
    /// Retry policy (default `ExponentialBackoff` with its defaults).
    #[serde(default)]
    pub retry_policy: RetryPolicy,
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
            retry_policy: RetryPolicy::default(),
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
            .retry_policy(self.retry_policy.clone());
        if let Some(secret) = &self.api_key {
            let key = ApiKey::new(secret.expose_secret())
                .map_err(|msg| ConfigError::invalid(field("api_key"), msg))?;
            builder = builder.api_key(key);
        }
        builder.build()
    }
}

impl Config {
    /// A configuration with these endpoints and every other setting at its default.
    pub fn with_endpoints(endpoints: Vec<EndpointConfig>) -> Self {
        Self {
            strategy: Strategy::default(),
            when_all_unhealthy: WhenAllUnhealthy::default(),
            max_body_bytes: default_max_body_bytes(),
            unhealthy_threshold: 1,
            max_cooldown: default_max_cooldown(),
            retry_budget: RetryBudgetConfig::default(),
            client: ClientConfig::default(),
            endpoints,
        }
    }

    /// Reads a `.yaml`/`.yml` or `.toml` file, interpolates `${VAR}` and validates.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`].
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_value(read_document(path.as_ref())?)
    }

    /// Parses YAML text (with `${VAR}` interpolation) and validates.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`].
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_value(parse_document(text, Format::Yaml)?)
    }

    /// Parses TOML text (with `${VAR}` interpolation) and validates.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`].
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_value(parse_document(text, Format::Toml)?)
    }

    /// Deserialises an already parsed and interpolated document (see [`read_document`])
    /// and validates it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] naming the field, or any validation error.
    pub fn from_value(value: serde_json::Value) -> Result<Self, ConfigError> {
        let config: Self = deserialize_value(value)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting and endpoint.
    ///
    /// # Errors
    ///
    /// The first problem found, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::invalid("max_body_bytes", "must be at least 1"));
        }
        if self.unhealthy_threshold == 0 {
            return Err(ConfigError::invalid(
                "unhealthy_threshold",
                "must be at least 1",
            ));
        }
        if self.max_cooldown.is_zero() || self.max_cooldown > MAX_COOLDOWN_LIMIT {
            return Err(ConfigError::invalid(
                "max_cooldown",
                "must be greater than zero and at most 24h",
            ));
        }
        let budget = &self.retry_budget;
        if !(0.0..=1000.0).contains(&budget.percent) {
            return Err(ConfigError::invalid(
                "retry_budget.percent",
                "must be between 0 and 1000",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&budget.ttl) {
            return Err(ConfigError::invalid(
                "retry_budget.ttl",
                "must be between 1s and 60s",
            ));
        }
        if self.client.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "client.connect_timeout",
                "must be greater than zero",
            ));
        }
        self.build_endpoints().map(drop)
    }

    /// Validates and builds every endpoint, in order.
    ///
    /// # Errors
    ///
    /// No endpoints, a duplicate id, or the first invalid endpoint.
    pub fn build_endpoints(&self) -> Result<Vec<Endpoint>, ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::invalid(
                "endpoints",
                "at least one endpoint is required",
            ));
        }
        let mut seen = HashMap::with_capacity(self.endpoints.len());
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            if let Some(first) = seen.insert(endpoint.id.as_str(), index) {
                return Err(ConfigError::invalid(
                    format!("endpoints[{index}].id"),
                    format!(
                        "duplicate id `{}` (already used by endpoints[{first}])",
                        endpoint.id
                    ),
                ));
            }
        }
        self.endpoints.iter().map(EndpointConfig::build).collect()
    }
}

#[derive(Clone, Copy)]
enum Format {
    Yaml,
    Toml,
}

/// Reads a YAML or TOML file (by extension) into a generic document with `${VAR}` references
/// replaced from the environment. Callers that extend the schema (such as the gateway's
/// `listen` and `mount`) take their own keys out and pass the rest to [`Config::from_value`].
///
/// # Errors
///
/// [`ConfigError::Io`], [`ConfigError::UnknownFormat`], [`ConfigError::Parse`] or
/// [`ConfigError::MissingEnv`].
pub fn read_document(path: &Path) -> Result<serde_json::Value, ConfigError> {
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => Format::Yaml,
        Some("toml") => Format::Toml,
        _ => {
            return Err(ConfigError::UnknownFormat {
                path: path.to_owned(),
            });
        }
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_document(&text, format)
}

fn parse_document(text: &str, format: Format) -> Result<serde_json::Value, ConfigError> {
    let parse_error = |message: String| ConfigError::Parse {
        field: String::new(),
        message,
    };
    let mut value: serde_json::Value = match format {
        Format::Yaml => serde_yaml_ng::from_str(text).map_err(|e| parse_error(e.to_string()))?,
        Format::Toml => toml::from_str(text).map_err(|e| parse_error(e.to_string()))?,
    };
    interpolate_value(&mut value, &mut String::new(), &|var| {
        std::env::var(var).ok()
    })?;
    Ok(value)
}

fn deserialize_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|err| ConfigError::Parse {
        field: err.path().to_string(),
        message: err.into_inner().to_string(),
    })
}

fn interpolate_value(
    value: &mut serde_json::Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains('$') => {
            *text = interpolate_env(text, lookup).map_err(|err| match err {
                InterpolationError::Unset(var) => ConfigError::MissingEnv {
                    field: path.clone(),
                    var,
                },
                // The text may be a key: it is not repeated in the message.
                InterpolationError::Unterminated => {
                    ConfigError::invalid(path.clone(), "has a `${` without its closing `}`")
                }
            })?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                interpolate_value(item, path, lookup)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                interpolate_value(item, path, lookup)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Why [`interpolate_env`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterpolationError {
    /// This variable is not set and has no default.
    Unset(String),
    /// A `${` has no closing `}`.
    Unterminated,
}

/// Replaces `${VAR}` with `lookup(VAR)`, `${VAR:-default}` with the default when `VAR` is
/// unset or empty, and `$${` with a literal `${`. Other `$` signs are left alone.
///
/// # Errors
///
/// The first variable that is unset and has no default, or an unterminated `${`.
pub fn interpolate_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(InterpolationError::Unterminated)?;
            let expr = &after[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            match (
                lookup(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(InterpolationError::Unset(name.to_owned())),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CountBased, ExponentialBackoff};

    const YAML: &str = r#"
strategy: weighted
when_all_unhealthy: fail
max_body_bytes: 1048576
unhealthy_threshold: 2
max_cooldown: 30s
retry_budget: { percent: 25, min_per_second: 5, ttl: 5s }
client: { connect_timeout: 2s, pool_idle_timeout: 30s }
endpoints:
  - id: openai-main
    base_url: https://api.openai.com/v1
    provider: openai
    api_key: ${LLM_TOWER_TEST_KEY}
    priority: 0
    weight: 3
    fallback: true
    health_check_interval: 2500
    timeout: 60s
    first_byte_timeout: 10s
    retry_policy:
      name: ExponentialBackoff
      config: { times: 3, initial_interval: 50ms, max_interval: 2s, multiplier: 1.5 }
  - id: claude
    base_url: https://api.anthropic.com/v1
    provider: anthropic
    api_key: sk-ant-literal
    priority: 1
    retry_policy: { name: CountBased, config: { times: 1 } }
  - id: local
    base_url: http://127.0.0.1:11434/v1
    provider: custom
    auth_header: x-token
    auth_prefix: "Token "
    api_key: "${LLM_TOWER_UNSET_VAR:-fallback-key}"
    fallback: false
    timeout: null
    retry_policy: { name: NoRetry }
"#;

    const TOML: &str = r#"
strategy = "weighted"
when_all_unhealthy = "fail"
max_body_bytes = 1048576
unhealthy_threshold = 2
max_cooldown = "30s"
retry_budget = { percent = 25, min_per_second = 5, ttl = "5s" }
client = { connect_timeout = "2s", pool_idle_timeout = "30s" }

[[endpoints]]
id = "openai-main"
base_url = "https://api.openai.com/v1"
provider = "openai"
api_key = "${LLM_TOWER_TEST_KEY}"
priority = 0
weight = 3
fallback = true
health_check_interval = 2500
timeout = "60s"
first_byte_timeout = "10s"
retry_policy = { name = "ExponentialBackoff", config = { times = 3, initial_interval = "50ms", max_interval = "2s", multiplier = 1.5 } }

[[endpoints]]
id = "claude"
base_url = "https://api.anthropic.com/v1"
provider = "anthropic"
api_key = "sk-ant-literal"
priority = 1
retry_policy = { name = "CountBased", config = { times = 1 } }

[[endpoints]]
id = "local"
base_url = "http://127.0.0.1:11434/v1"
provider = "custom"
auth_header = "x-token"
auth_prefix = "Token "
api_key = "${LLM_TOWER_UNSET_VAR:-fallback-key}"
fallback = false
retry_policy = { name = "NoRetry" }
"#;

    fn parse_with_env(
        text: &str,
        format: Format,
        env: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let mut value: serde_json::Value = match format {
            Format::Yaml => serde_yaml_ng::from_str(text).unwrap(),
            Format::Toml => toml::from_str(text).unwrap(),
        };
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        interpolate_value(&mut value, &mut String::new(), &lookup)?;
        Config::from_value(value)
    }

    fn yaml(text: &str) -> Result<Config, ConfigError> {
        parse_with_env(text, Format::Yaml, &[("LLM_TOWER_TEST_KEY", "sk-from-env")])
    }

    #[test]
    fn yaml_and_toml_read_the_same() {
        let env = [("LLM_TOWER_TEST_KEY", "sk-from-env")];
        let from_yaml = parse_with_env(YAML, Format::Yaml, &env).unwrap();
        let mut from_toml = parse_with_env(TOML, Format::Toml, &env).unwrap();
        // TOML has no null: the YAML file disables the timeout of `local` with `timeout: null`.
        assert_eq!(
            from_toml.endpoints[2].timeout,
            Some(Endpoint::DEFAULT_TIMEOUT)
        );
        from_toml.endpoints[2].timeout = None;
        assert_eq!(from_yaml, from_toml);

        let c = from_yaml;
        assert_eq!(c.strategy, Strategy::Weighted);
        assert_eq!(c.when_all_unhealthy, WhenAllUnhealthy::Fail);
        assert_eq!(c.max_cooldown, Duration::from_secs(30));
        assert_eq!(c.retry_budget.ttl, Duration::from_secs(5));
        assert_eq!(c.client.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.client.pool_max_idle_per_host, 64);
        let eps = c.build_endpoints().unwrap();
        assert_eq!(eps[0].credential().unwrap().1, "Bearer sk-from-env");
        assert_eq!(eps[0].health_check_interval(), Duration::from_millis(2500));
        assert_eq!(eps[0].first_byte_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(
            eps[0].retry_policy(),
            &RetryPolicy::ExponentialBackoff(ExponentialBackoff {
                times: 3,
                initial_interval: Duration::from_millis(50),
                max_interval: Duration::from_secs(2),
                multiplier: 1.5
            })
        );
        assert_eq!(eps[1].credential().unwrap().0, "x-api-key");
        assert_eq!(
            eps[1].retry_policy(),
            &RetryPolicy::CountBased(CountBased { times: 1 })
        );
        assert_eq!(eps[1].weight(), 1);
        assert!(eps[1].fallback());
        let (name, value) = eps[2].credential().unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-token", "Token fallback-key")
        );
        assert!(!eps[2].fallback());
        assert_eq!(eps[2].timeout(), None);
        assert_eq!(eps[2].retry_policy(), &RetryPolicy::NoRetry);
        // Nothing secret in Debug or serialisation.
        let shown = format!("{c:?} {eps:?} {}", serde_json::to_string(&c).unwrap());
        for secret in ["sk-from-env", "sk-ant-literal", "fallback-key"] {
            assert!(!shown.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn defaults() {
        let c = yaml("endpoints: [{ id: a, base_url: 'http://localhost:1' }]").unwrap();
        assert_eq!(
            c,
            Config::with_endpoints(vec![EndpointConfig::new("a", "http://localhost:1")])
        );
        let e = &c.build_endpoints().unwrap()[0];
        assert_eq!(e.health_check_interval(), Duration::from_secs(5));
        assert_eq!(e.retry_policy(), &RetryPolicy::default());
        assert_eq!(e.timeout(), Some(Duration::from_secs(600)));
        assert!(e.credential().is_none());
        assert_eq!(c.max_body_bytes, 32 * 1024 * 1024);
    }

    fn err(text: &str) -> String {
        yaml(text).unwrap_err().to_string()
    }

    #[test]
    fn invalid_cases_name_the_field() {
        let cases: &[(&str, &[&str])] = &[
            (
                "endpoints: [{ id: a, base_url: 'http://h' }, { id: a, base_url: 'http://h' }]",
                &["endpoints[1].id", "duplicate id `a`"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'not a url' }]",
                &["endpoint `a`: base_url"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'ftp://h/' }]",
                &["endpoint `a`: base_url", "http or https"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', api_key: '' }]",
                &["endpoint `a`: api_key", "empty"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', api_key: \"sk\\r\\nx: y\" }]",
                &["endpoint `a`: api_key", "control character"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', provider: bedrock }]",
                &["endpoints[0].provider", "unknown variant `bedrock`"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', retry_policy: { name: Sometimes } }]",
                &["endpoints[0].retry_policy", "unknown variant `Sometimes`"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', api_key: 12345678901234 }]",
                &["endpoints[0].api_key", "quoted string"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', api_key: 'sk-${X' }]",
                &["endpoints[0].api_key", "closing"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', weight: 0 }]",
                &["endpoint `a`: weight", "at least 1"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', wieght: 2 }]",
                &["endpoints[0]", "unknown field `wieght`"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', timeout: 'soon' }]",
                &["endpoints[0].timeout", "invalid duration"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', provider: custom }]",
                &["endpoint `a`: auth_header", "required"],
            ),
            ("endpoints: []", &["endpoints", "at least one"]),
            (
                "unhealthy_threshold: 0\nendpoints: [{ id: a, base_url: 'http://h' }]",
                &["unhealthy_threshold"],
            ),
            (
                "max_cooldown: 5000000000000h\nendpoints: [{ id: a, base_url: 'http://h' }]",
                &["max_cooldown", "24h"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', health_check_interval: 48h }]",
                &["endpoint `a`: health_check_interval", "24h"],
            ),
            (
                "retry_budget: { ttl: 2m }\nendpoints: [{ id: a, base_url: 'http://h' }]",
                &["retry_budget.ttl"],
            ),
            (
                "strategy: random\nendpoints: [{ id: a, base_url: 'http://h' }]",
                &["strategy", "unknown variant"],
            ),
            (
                "endpoints: [{ id: a, base_url: 'http://h', api_key: '${LLM_TOWER_SURELY_UNSET}' }]",
                &["endpoints[0].api_key", "LLM_TOWER_SURELY_UNSET", "not set"],
            ),
        ];
        for (text, needles) in cases {
            let message = err(text);
            for needle in *needles {
                assert!(
                    message.contains(needle),
                    "{text}\n  -> {message}\n  missing {needle}"
                );
            }
            assert!(!message.contains("sk\r\n"), "{message}");
            assert!(
                !message.contains("12345678901234") && !message.contains("sk-"),
                "{message}"
            );
        }
    }

    #[test]
    fn interpolation() {
        let env = |name: &str| match name {
            "A" => Some("alpha".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(interpolate_env("x-${A}-y", &env).unwrap(), "x-alpha-y");
        assert_eq!(interpolate_env("${B:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(interpolate_env("${EMPTY:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(interpolate_env("${EMPTY}", &env).unwrap(), "");
        assert_eq!(interpolate_env("$${A} $5 $", &env).unwrap(), "${A} $5 $");
        assert_eq!(
            interpolate_env("${B}", &env).unwrap_err(),
            InterpolationError::Unset("B".into())
        );
        assert_eq!(
            interpolate_env("sk-secret${A", &env).unwrap_err(),
            InterpolationError::Unterminated
        );
    }

    #[test]
    fn files_by_extension() {
        let dir = std::env::temp_dir().join(format!("llm-tower-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("c.toml");
        std::fs::write(
            &toml_path,
            "[[endpoints]]\nid = \"a\"\nbase_url = \"http://h\"\n",
        )
        .unwrap();
        assert_eq!(Config::from_path(&toml_path).unwrap().endpoints[0].id, "a");
        let yaml_path = dir.join("c.yml");
        std::fs::write(
            &yaml_path,
            "endpoints:\n  - id: b\n    base_url: http://h\n",
        )
        .unwrap();
        assert_eq!(Config::from_path(&yaml_path).unwrap().endpoints[0].id, "b");
        let json_path = dir.join("c.json");
        std::fs::write(&json_path, "{}").unwrap();
        assert!(matches!(
            Config::from_path(&json_path),
            Err(ConfigError::UnknownFormat { .. })
        ));
        assert!(matches!(
            Config::from_path(dir.join("missing.yaml")),
            Err(ConfigError::Io { .. })
        ));
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "endpoints: [ {").unwrap();
        assert!(matches!(
            Config::from_path(&bad),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
