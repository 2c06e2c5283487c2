//! Limits shared between replicas: `limits_store: { redis: "redis://…", prefix: llm-tower,
//! on_store_down: allow }`.
//!
//! The settings are always compiled, so that a file naming a store is read everywhere; the
//! store itself ([`LimitsStore`]) needs the `redis` feature. Every admission is one Lua
//! script in Redis that refills, checks and takes from every limit of the client at once
//! (`scripts.rs`), and every true-up is one more: no count is read in one round trip and
//! written in another, so replicas cannot both take the last request of a minute. Buckets
//! are kept with Redis's clock, not the replicas', and their keys expire when they are full
//! again; a budget's key expires after its period.

#[cfg(feature = "redis")]
mod connection;
#[cfg(feature = "redis")]
mod handle;
#[cfg(feature = "redis")]
mod scripts;
#[cfg(feature = "redis")]
mod settle;

use std::time::Duration;

use llm_tower_core::{ConfigError, RedisUrl, validate_key_prefix};
use serde::{Deserialize, Serialize};

#[cfg(feature = "redis")]
pub(crate) use handle::count_unreachable;
#[cfg(feature = "redis")]
pub use handle::{LimitsStore, LimitsStoreStatus};

/// What admission does while the store cannot be reached (or does not answer within
/// `timeout`).
///
/// ```
/// use llm_tower_limits::store::OnStoreDown;
///
/// assert_eq!(OnStoreDown::default(), OnStoreDown::Allow);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreDown {
    /// Admit on this replica's own counts (each replica then holds a client to its whole
    /// limit: a fleet of `n` may admit up to `n` times it until the store is back), with a
    /// warning and a metric.
    #[default]
    Allow,
    /// Refuse: 503 `limits_unavailable` with `Retry-After`, nothing sent upstream.
    Deny,
}

/// Where replicas share their clients' limits: a Redis server, the prefix of every key, what
/// to do when it is down, and how long an admission waits for it.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_limits::store::{LimitsStoreSettings, OnStoreDown};
///
/// let settings: LimitsStoreSettings = serde_json::from_str(
///     r#"{ "redis": "redis://:s3cret@10.0.0.5:6379/2", "on_store_down": "deny" }"#,
/// ).unwrap();
/// assert_eq!(settings.prefix, "llm-tower");
/// assert_eq!(settings.on_store_down, OnStoreDown::Deny);
/// assert_eq!(settings.timeout, Duration::from_millis(50));
/// assert!(!format!("{settings:?}").contains("s3cret"));
/// // Valid, in a build that can share limits (the `redis` feature).
/// assert_eq!(settings.validate().is_ok(), cfg!(feature = "redis"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsStoreSettings {
    /// The server: `redis://[user[:password]@]host[:port][/db]`.
    pub redis: RedisUrl,
    /// Put before every key (default `llm-tower`): replicas that share limits share a prefix.
    /// Letters, digits, `.`, `_`, `-`, `:`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// What admission does while the store is down (default `allow`).
    #[serde(default)]
    pub on_store_down: OnStoreDown,
    /// How long an admission waits for the store's answer before deciding as
    /// `on_store_down` says (default 50 ms; at most 1 s).
    #[serde(default = "default_timeout", with = "llm_tower_core::duration")]
    pub timeout: Duration,
}

fn default_prefix() -> String {
    "llm-tower".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_millis(50)
}

/// The longest `limits_store.timeout`: an admission is on every request's path.
const MAX_TIMEOUT: Duration = Duration::from_secs(1);

impl LimitsStoreSettings {
    /// Settings for `url`, with the defaults.
    ///
    /// ```
    /// use llm_tower_limits::store::LimitsStoreSettings;
    ///
    /// let settings = LimitsStoreSettings::new("redis://127.0.0.1:6379");
    /// assert_eq!(settings.prefix, "llm-tower");
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            redis: RedisUrl::from(url.into()),
            prefix: default_prefix(),
            on_store_down: OnStoreDown::default(),
            timeout: default_timeout(),
        }
    }

    /// Checks the URL's form, the prefix and the timeout.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `limits_store.redis`, `limits_store.prefix` or
    /// `limits_store.timeout`; and, in a build without the `redis` feature, naming
    /// `limits_store`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !cfg!(feature = "redis") {
            return Err(ConfigError::invalid(
                "limits_store",
                "this build cannot share limits: it was built without llm-tower's `redis` feature",
            ));
        }
        self.redis.validate("limits_store.redis")?;
        validate_key_prefix("limits_store.prefix", &self.prefix)?;
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(ConfigError::invalid(
                "limits_store.timeout",
                format!(
                    "must be above 0 and at most {MAX_TIMEOUT:?}: every admission may wait \
                     this long"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "redis")]
    #[test]
    fn bad_settings_name_their_field() {
        let with = |f: fn(&mut LimitsStoreSettings)| {
            let mut settings = LimitsStoreSettings::new("redis://:pw@h:6379");
            f(&mut settings);
            settings.validate().unwrap_err().to_string()
        };
        let err = with(|s| s.redis = RedisUrl::from("rediss://:pw@h"));
        assert!(
            err.contains("limits_store.redis") && !err.contains("pw"),
            "{err}"
        );
        assert!(with(|s| s.prefix = "a b".into()).contains("limits_store.prefix"));
        assert!(with(|s| s.timeout = Duration::ZERO).contains("limits_store.timeout"));
        assert!(with(|s| s.timeout = Duration::from_secs(2)).contains("limits_store.timeout"));
        assert!(LimitsStoreSettings::new("redis://h").validate().is_ok());
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn without_the_feature_a_store_is_refused_at_load() {
        let err = LimitsStoreSettings::new("redis://h")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("`redis` feature"), "{err}");
    }
}
