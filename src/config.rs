//! The gateway's configuration file: the library's [`Config`] plus the gateway's own keys
//! (`listen`, `mount`), all at the top level of one YAML, TOML or JSON file.

use std::net::SocketAddr;
use std::path::Path;

use llm_tower::config::Document;
use llm_tower::{Config, ConfigError};
use serde::Deserialize;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default mount path.
pub const DEFAULT_MOUNT: &str = "/v1";

/// The gateway's configuration: the upstream [`Config`] plus `listen` and `mount`.
///
/// ```
/// use llm_tower::{Config, EndpointConfig};
/// use llm_tower_gateway::GatewayConfig;
///
/// let mut config = GatewayConfig::new(Config::with_endpoints(vec![EndpointConfig::new(
///     "local",
///     "http://127.0.0.1:11434/v1",
/// )]));
/// config.set_listen("127.0.0.1:9000").unwrap();
/// assert!(config.set_listen("localhost").is_err());
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    /// Where to listen (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Path prefix that is forwarded (default `/v1`); replaced by each endpoint's `base_url`.
    pub mount: String,
    /// The upstream configuration.
    pub upstream: Config,
}

/// The keys the gateway owns in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayKeys {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    mount: Option<String>,
}

impl GatewayConfig {
    /// Defaults for `listen` and `mount` around an upstream configuration.
    pub fn new(upstream: Config) -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            mount: DEFAULT_MOUNT.to_owned(),
            upstream,
        }
    }

    /// Reads a YAML, TOML or JSON file (the library's schema plus `listen` and `mount`).
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`], naming the field.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let mut document = Document::read(path.as_ref())?;
        let upstream = Config::from_document(&mut document)?;
        let GatewayKeys { listen, mount } = document.take()?;
        document.finish()?;
        let mut config = Self::new(upstream);
        if let Some(listen) = listen {
            config.set_listen(&listen)?;
        }
        if let Some(mount) = mount {
            config.mount = mount;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets `listen` from text such as `127.0.0.1:8080`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for `listen` when it is not `IP:PORT`.
    pub fn set_listen(&mut self, listen: &str) -> Result<(), ConfigError> {
        self.listen = listen.parse().map_err(|_| {
            ConfigError::invalid(
                "listen",
                format!("`{listen}` is not an address such as 127.0.0.1:8080"),
            )
        })?;
        Ok(())
    }

    /// Checks `mount` and the upstream configuration.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.mount.starts_with('/') || self.mount.contains(['?', '#', '{', '}', '*']) {
            return Err(ConfigError::invalid(
                "mount",
                format!("`{}` must be a plain path starting with `/`", self.mount),
            ));
        }
        self.upstream.validate()
    }
}
