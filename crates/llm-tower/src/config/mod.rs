//! Configuration files: YAML (feature `yaml`), TOML (feature `toml`) or JSON, with `${VAR}`
//! interpolation and validation at load. The file's top-level keys belong to the settings
//! structs of the layers ([`FallbackSettings`], [`RetrySettings`], [`ClientSettings`]); this
//! module only reads them, so every default and range check has one owner.

mod document;
mod env;

use std::path::Path;

use llm_tower_core::{ConfigError, Endpoint, EndpointConfig};
use llm_tower_fallback::{FallbackSettings, ModelFallbacks};
use llm_tower_retry::RetrySettings;
use llm_tower_usage::Prices;
use serde::{Deserialize, Serialize};

pub use document::{Document, Format};
pub use env::{InterpolationError, interpolate_env};

use crate::ClientSettings;
use crate::health_store::HealthStoreSettings;

/// The upstream configuration: what the stack needs. Load it with [`Config::from_path`],
/// `Config::from_yaml_str` (feature `yaml`), `Config::from_toml_str` (feature `toml`) or [`Config::from_json_str`]; all of
/// them validate. Every part is a typed settings struct that code can build directly.
///
/// ```
/// use llm_tower::{Config, EndpointConfig, Strategy};
///
/// let config = Config::from_json_str(r#"{
///     "strategy": "weighted",
///     "retry_budget": { "percent": 10 },
///     "endpoints": [{ "id": "main", "base_url": "https://api.openai.com/v1" }]
/// }"#)?;
/// assert_eq!(config.fallback.strategy, Strategy::Weighted);
/// assert_eq!(config.retry.budget.percent, 10.0);
/// assert_eq!(config, Config {
///     fallback: config.fallback,
///     retry: config.retry,
///     ..Config::with_endpoints(vec![EndpointConfig::new("main", "https://api.openai.com/v1")])
/// });
/// # Ok::<(), llm_tower::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The balancer's settings (top-level `strategy`, `when_all_unhealthy`,
    /// `max_body_bytes`, `unhealthy_threshold`, `max_cooldown`, `latency_decay`).
    #[serde(flatten)]
    pub fallback: FallbackSettings,
    /// The retry layer's settings (top-level `retry_budget`, `max_retry_after`).
    #[serde(flatten)]
    pub retry: RetrySettings,
    /// The HTTP client's settings (`client`).
    pub client: ClientSettings,
    /// Model fallback chains (`models: {gpt-4o: {fallback: [gpt-4o-mini]}}`).
    pub models: ModelFallbacks,
    /// The endpoints, in order (`endpoints`).
    pub endpoints: Vec<EndpointConfig>,
    /// Where replicas share health (`health_store`; default none: this process's own
    /// registry). Started by whoever runs the stack, with
    /// `llm_tower::health_store::HealthStore::start` (feature `redis`).
    pub health_store: Option<HealthStoreSettings>,
    /// Whether the tokens of every answer are accounted for (`usage`, default `true`; see
    /// [`Upstream::usage`](crate::Upstream::usage)).
    pub usage: bool,
    /// The price table, USD per million tokens by model (`prices: {gpt-4o: {input: 2.5,
    /// output: 10, cached_input: 1.25}}`; default none).
    pub prices: Prices,
}

/// The keys [`Config`] itself owns.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnKeys {
    #[serde(default)]
    client: ClientSettings,
    #[serde(default)]
    models: ModelFallbacks,
    endpoints: Vec<EndpointConfig>,
    #[serde(default)]
    health_store: Option<HealthStoreSettings>,
    #[serde(default = "yes")]
    usage: bool,
    #[serde(default)]
    prices: Prices,
}

fn yes() -> bool {
    true
}

impl Config {
    /// A configuration with these endpoints and every other setting at its default.
    pub fn with_endpoints(endpoints: Vec<EndpointConfig>) -> Self {
        Self {
            fallback: FallbackSettings::default(),
            retry: RetrySettings::default(),
            client: ClientSettings::default(),
            models: ModelFallbacks::default(),
            endpoints,
            health_store: None,
            usage: true,
            prices: Prices::default(),
        }
    }

    /// Reads a `.yaml`/`.yml`, `.toml` or `.json` file, interpolates `${VAR}` and validates.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`], naming the field.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_whole_document(Document::read(path.as_ref())?)
    }

    /// Parses YAML text (with `${VAR}` interpolation) and validates.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`], naming the field.
    #[cfg(feature = "yaml")]
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_whole_document(Document::parse(text, Format::Yaml)?)
    }

    /// Parses TOML text (with `${VAR}` interpolation) and validates.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`], naming the field.
    #[cfg(feature = "toml")]
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_whole_document(Document::parse(text, Format::Toml)?)
    }

    /// Parses JSON text (with `${VAR}` interpolation) and validates.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`], naming the field.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_whole_document(Document::parse(text, Format::Json)?)
    }

    /// Takes this configuration's keys out of a document that may hold more (the gateway's
    /// file does), and validates them.
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`], naming the field.
    pub fn from_document(document: &mut Document) -> Result<Self, ConfigError> {
        let fallback = document.take()?;
        let retry = document.take()?;
        let OwnKeys {
            client,
            models,
            endpoints,
            health_store,
            usage,
            prices,
        } = document.take()?;
        let config = Self {
            fallback,
            retry,
            client,
            models,
            endpoints,
            health_store,
            usage,
            prices,
        };
        config.validate()?;
        Ok(config)
    }

    fn from_whole_document(mut document: Document) -> Result<Self, ConfigError> {
        let config = Self::from_document(&mut document)?;
        document.finish()?;
        Ok(config)
    }

    /// Checks every setting and endpoint.
    ///
    /// # Errors
    ///
    /// The first problem found, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.fallback.validate()?;
        self.retry.validate()?;
        self.client.validate()?;
        if let Some(store) = &self.health_store {
            store.validate()?;
        }
        self.prices.validate()?;
        let endpoints = self.build_endpoints()?;
        self.models.validate(&endpoints)
    }

    /// Validates and builds every endpoint, in order.
    ///
    /// # Errors
    ///
    /// No endpoints, a duplicate id, or the first invalid endpoint.
    pub fn build_endpoints(&self) -> Result<Vec<Endpoint>, ConfigError> {
        let endpoints = self
            .endpoints
            .iter()
            .map(EndpointConfig::build)
            .collect::<Result<Vec<_>, _>>()?;
        llm_tower_core::Endpoint::check_list(&endpoints)?;
        Ok(endpoints)
    }
}

#[cfg(test)]
mod tests;
