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
#[cfg(feature = "redis")]
mod wire;

use std::fmt;

use llm_tower_core::ConfigError;
use serde::{Deserialize, Serialize};

#[cfg(feature = "redis")]
pub use self::redis::{HealthStore, HealthStoreStatus};

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

/// A Redis URL, which may hold a password: shown (`Display`, `Debug`) and serialised with
/// the password replaced by `***`.
///
/// ```
/// use llm_tower::health_store::RedisUrl;
///
/// let url = RedisUrl::from("redis://app:hunter2@cache:6379");
/// assert_eq!(url.to_string(), "redis://app:***@cache:6379");
/// assert_eq!(serde_json::to_string(&url).unwrap(), r#""redis://app:***@cache:6379""#);
/// assert_eq!(url.expose(), "redis://app:hunter2@cache:6379");
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(String);

impl Serialize for RedisUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl RedisUrl {
    /// The URL as written, password included: for connecting, never for showing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RedisUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("", &self.0));
        // The authority ends at the path, query or fragment; only there can a password be.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let Some((user_info, host)) = authority.rsplit_once('@') else {
            return f.write_str(&self.0);
        };
        // A lone name is shown as a password too: redis URLs put either there.
        let user = user_info.split_once(':').map_or("", |(user, _)| user);
        write!(f, "{scheme}://{user}:***@{host}{tail}")
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
            ("redis://user:p@ss@h", "redis://user:***@h"),
            ("redis://pw-as-user@h", "redis://:***@h"),
            ("redis://s3cret@h:1/?a@b", "redis://:***@h:1/?a@b"),
            ("redis://h:1/0?user=a@b", "redis://h:1/0?user=a@b"),
        ] {
            let url = RedisUrl::from(url);
            assert_eq!(url.to_string(), shown);
            assert_eq!(format!("{url:?}"), format!("\"{shown}\""));
        }
    }

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
