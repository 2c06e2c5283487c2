//! Health shared between replicas: `health_store: { redis: "redis://…", prefix: llm-tower }`.
//!
//! The settings are always compiled, so that a file naming a store is read everywhere; the
//! store itself ([`HealthStore`]) needs the `redis` feature. What travels, and how a
//! registry applies it, is `llm_tower_fallback::HealthEvent`'s business; this module moves
//! it through Redis (see `redis.rs`).

#[cfg(feature = "redis")]
mod calls;
#[cfg(feature = "redis")]
mod outage;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod scripts;
#[cfg(feature = "redis")]
mod task;
mod url;
#[cfg(feature = "redis")]
mod wire;

use std::fmt;

use llm_tower_core::ConfigError;
use serde::{Deserialize, Serialize};

#[cfg(feature = "redis")]
pub use self::redis::{HealthStore, HealthStoreStatus};
pub use self::url::RedisUrl;

/// Where replicas share health: a Redis server, and the prefix of every key and channel
/// this gateway uses there.
///
/// ```
/// use llm_tower::health_store::HealthStoreSettings;
///
/// let settings: HealthStoreSettings = serde_json::from_str(
///     r#"{ "redis": "redis://:s3cret@10.0.0.5:6379/2" }"#,
/// ).unwrap();
/// assert_eq!(settings.prefix, "llm-tower");
/// // The password never shows.
/// assert_eq!(settings.redis.to_string(), "redis://:***@10.0.0.5:6379/2");
/// assert!(!format!("{settings:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthStoreSettings {
    /// The server: `redis://[user[:password]@]host[:port][/db]`.
    pub redis: RedisUrl,
    /// Put before every key and channel (default `llm-tower`): replicas that share health
    /// share a prefix; two fleets on one server use two. Letters, digits, `.`, `_`, `-`, `:`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "llm-tower".to_owned()
}

impl HealthStoreSettings {
    /// Settings for `url` with the default prefix.
    ///
    /// ```
    /// use llm_tower::health_store::HealthStoreSettings;
    ///
    /// let settings = HealthStoreSettings::new("redis://127.0.0.1:6379");
    /// assert_eq!(settings.prefix, "llm-tower");
    /// assert!(HealthStoreSettings::new("http://127.0.0.1").validate().is_err());
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            redis: RedisUrl(url.into()),
            prefix: default_prefix(),
        }
    }

    /// Checks the URL's form and the prefix.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `health_store.redis` or `health_store.prefix`; and,
    /// in a build without the `redis` feature, naming `health_store`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !cfg!(feature = "redis") {
            return Err(ConfigError::invalid(
                "health_store",
                "this build cannot share health: it was built without llm-tower's `redis` feature",
            ));
        }
        let rest = self.redis.0.strip_prefix("redis://").ok_or_else(|| {
            ConfigError::invalid(
                "health_store.redis",
                format!(
                    "`{}` is not a redis:// URL (TLS, rediss://, and Redis Cluster are not supported)",
                    self.redis
                ),
            )
        })?;
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        if host.is_empty() || host.starts_with(['/', ':']) {
            return Err(ConfigError::invalid(
                "health_store.redis",
                format!("`{}` names no host", self.redis),
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
        if self.prefix.is_empty() || !self.prefix.chars().all(allowed) {
            return Err(ConfigError::invalid(
                "health_store.prefix",
                format!(
                    "`{}` must be letters, digits, `.`, `_`, `-` or `:`, and not empty",
                    self.prefix
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for HealthStoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthStoreSettings")
            .field("redis", &self.redis)
            .field("prefix", &self.prefix)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "redis")]
    #[test]
    fn bad_settings_name_their_field() {
        for (url, prefix, field) in [
            ("rediss://h", "p", "health_store.redis"),
            ("redis://", "p", "health_store.redis"),
            ("redis://:pw@", "p", "health_store.redis"),
            ("redis://h", "", "health_store.prefix"),
            ("redis://h", "a*", "health_store.prefix"),
            ("redis://h", "two words", "health_store.prefix"),
        ] {
            let settings = HealthStoreSettings {
                redis: RedisUrl::from(url),
                prefix: prefix.to_owned(),
            };
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{url} {prefix}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn without_the_feature_a_store_is_refused_at_load() {
        let err = HealthStoreSettings::new("redis://h")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("`redis` feature"), "{err}");
    }
}
