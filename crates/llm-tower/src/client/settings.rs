//! [`ClientSettings`]: the pooled HTTP client's settings.

use std::time::Duration;

use llm_tower_core::ConfigError;
use serde::{Deserialize, Serialize};

/// Settings of the pooled HTTP client at the bottom of the stack (`client:` in a
/// configuration file).
///
/// ```
/// use std::time::Duration;
/// use llm_tower::ClientSettings;
///
/// let settings = ClientSettings { connect_timeout: Duration::from_secs(2), ..ClientSettings::default() };
/// settings.validate().unwrap();
/// assert_eq!(settings.pool_max_idle_per_host, 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSettings {
    /// Limit for establishing a TCP connection (default 5 s).
    #[serde(with = "llm_tower_core::duration")]
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long (default 90 s).
    #[serde(with = "llm_tower_core::duration")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host (default 64).
    pub pool_max_idle_per_host: usize,
    /// Largest upstream response head (default 64 KiB, at least 8 KiB): a larger one fails
    /// the attempt as a malformed response instead of being relayed.
    pub max_response_head_bytes: usize,
    /// Speak HTTP/2 to every upstream without negotiating it (default off). For self-hosted
    /// servers that take HTTP/2 over plain `http://` (h2c, "prior knowledge"); `https://`
    /// endpoints negotiate HTTP/2 through ALPN without this. With it on, an endpoint that
    /// only speaks HTTP/1 fails every request: turn it on only when all of them speak HTTP/2.
    pub http2_only: bool,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
            max_response_head_bytes: 64 * 1024,
            http2_only: false,
        }
    }
}

impl ClientSettings {
    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "client.connect_timeout",
                "must be greater than zero",
            ));
        }
        if self.max_response_head_bytes < MIN_HEAD_BYTES {
            return Err(ConfigError::invalid(
                "client.max_response_head_bytes",
                format!("must be at least {MIN_HEAD_BYTES}"),
            ));
        }
        Ok(())
    }
}

/// hyper reads at least this much at a time; a smaller cap cannot be enforced.
const MIN_HEAD_BYTES: usize = 8 * 1024;
