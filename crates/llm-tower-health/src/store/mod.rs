//! Health shared between replicas: `health_store: { redis: "redis://…", prefix: llm-tower,
//! secret: "${LLM_TOWER_HEALTH_SECRET}" }`.
//!
//! The settings are always compiled, so that a file naming a store is read everywhere; the
//! store itself (`HealthStore`) needs the `redis` feature. What travels, and how a
//! registry applies it, is [`HealthEvent`](crate::HealthEvent)'s business; this module moves
//! it through Redis (see `handle.rs`).

#[cfg(feature = "redis")]
mod calls;
#[cfg(feature = "redis")]
mod mac;
#[cfg(feature = "redis")]
mod names;
#[cfg(feature = "redis")]
mod outage;
#[cfg(feature = "redis")]
mod rejected;
#[cfg(feature = "redis")]
mod scripts;
// Not `redis.rs`: a module of that name would shadow the `redis` crate in this one.
#[cfg(feature = "redis")]
mod handle;
#[cfg(feature = "redis")]
mod task;
#[cfg(feature = "redis")]
mod wire;

use std::fmt;

use llm_tower_core::{ConfigError, Secret};
use serde::{Deserialize, Serialize};

#[cfg(feature = "redis")]
pub use handle::{HealthStore, HealthStoreStatus};
pub use llm_tower_core::RedisUrl;

/// The shortest `health_store.secret` accepted: 32 bytes, as many as HMAC-SHA256's output
/// (`openssl rand -hex 32` gives 64).
pub const SECRET_MIN_BYTES: usize = 32;

/// Where replicas share health: a Redis server, the prefix of every key and channel this
/// gateway uses there, and the secret that signs what they say to each other.
///
/// ```
/// use llm_tower_health::store::HealthStoreSettings;
///
/// let settings: HealthStoreSettings = serde_json::from_str(
///     r#"{ "redis": "redis://:s3cret@10.0.0.5:6379/2",
///          "secret": "0123456789abcdef0123456789abcdef-hmac" }"#,
/// ).unwrap();
/// assert_eq!(settings.prefix, "llm-tower");
/// // Neither the password nor the secret ever shows.
/// assert_eq!(settings.redis.to_string(), "redis://:***@10.0.0.5:6379/2");
/// let shown = format!("{settings:?} {}", serde_json::to_string(&settings).unwrap());
/// assert!(!shown.contains("s3cret") && !shown.contains("hmac"), "{shown}");
/// // Valid, in a build that can share health (the `redis` feature).
/// assert_eq!(settings.validate().is_ok(), cfg!(feature = "redis"));
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
    /// Signs every event this replica tells, and only events signed with it are taken
    /// (HMAC-SHA256; at least [`SECRET_MIN_BYTES`] bytes, the same on every replica).
    /// Without it (the default) events are not authenticated: anyone who can write to the
    /// Redis server can eject every deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

fn default_prefix() -> String {
    "llm-tower".to_owned()
}

impl HealthStoreSettings {
    /// Settings for `url` with the default prefix.
    ///
    /// ```
    /// use llm_tower_health::store::HealthStoreSettings;
    ///
    /// let settings = HealthStoreSettings::new("redis://127.0.0.1:6379");
    /// assert_eq!(settings.prefix, "llm-tower");
    /// assert!(HealthStoreSettings::new("http://127.0.0.1").validate().is_err());
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            redis: RedisUrl::from(url.into()),
            prefix: default_prefix(),
            secret: None,
        }
    }

    /// Checks the URL's form, the prefix and the secret's length.
    ///
    /// ```
    /// use llm_tower_core::Secret;
    /// use llm_tower_health::store::HealthStoreSettings;
    ///
    /// let settings = HealthStoreSettings {
    ///     secret: Some(Secret::new("too-short")),
    ///     ..HealthStoreSettings::new("redis://127.0.0.1:6379")
    /// };
    /// let err = settings.validate().unwrap_err().to_string();
    /// // Without the `redis` feature, any store is refused first.
    /// let field = if cfg!(feature = "redis") { "health_store.secret" } else { "health_store:" };
    /// assert!(err.contains(field) && !err.contains("too-short"), "{err}");
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `health_store.redis`, `health_store.prefix` or
    /// `health_store.secret`; and, in a build without the `redis` feature, naming
    /// `health_store`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !cfg!(feature = "redis") {
            return Err(ConfigError::invalid(
                "health_store",
                "this build cannot share health: it was built without llm-tower's `redis` feature",
            ));
        }
        self.redis.validate("health_store.redis")?;
        llm_tower_core::validate_key_prefix("health_store.prefix", &self.prefix)?;
        if let Some(secret) = &self.secret {
            // A short secret can be guessed offline from one signed event read off Redis.
            let len = secret.expose_secret().len();
            if len < SECRET_MIN_BYTES {
                return Err(ConfigError::invalid(
                    "health_store.secret",
                    format!(
                        "is {len} bytes long; it must have at least {SECRET_MIN_BYTES} (for \
                         example the 64 hex digits of `openssl rand -hex 32`), the same on \
                         every replica"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for HealthStoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthStoreSettings")
            .field("redis", &self.redis)
            .field("prefix", &self.prefix)
            .field("secret", &self.secret)
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
            ("redis://:pw@h:abc", "p", "health_store.redis"),
            ("redis://h:99999/0", "p", "health_store.redis"),
            ("redis://h:0", "p", "health_store.redis"),
            ("redis://h", "", "health_store.prefix"),
            ("redis://h", "a*", "health_store.prefix"),
            ("redis://h", "two words", "health_store.prefix"),
        ] {
            let settings = HealthStoreSettings {
                redis: RedisUrl::from(url),
                prefix: prefix.to_owned(),
                secret: None,
            };
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{url} {prefix}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
        for good in [
            "redis://h",
            "redis://:pw@h:6379/0",
            "redis://[::1]:6379",
            "redis://h/1?protocol=resp3",
        ] {
            assert!(HealthStoreSettings::new(good).validate().is_ok(), "{good}");
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_secret_shorter_than_32_bytes_is_refused_without_being_shown() {
        let with = |secret: &str| HealthStoreSettings {
            secret: Some(Secret::new(secret)),
            ..HealthStoreSettings::new("redis://h")
        };
        for short in ["", "Qz", &"Q".repeat(31)] {
            let err = with(short).validate().unwrap_err().to_string();
            assert!(err.contains("health_store.secret"), "{err}");
            assert!(short.is_empty() || !err.contains(short), "{err}");
        }
        assert!(with(&"Q".repeat(32)).validate().is_ok());
    }

    #[test]
    fn the_secret_never_shows() {
        let secret = "a-secret-of-at-least-32-bytes-0123456789";
        let json = format!(r#"{{ "redis": "redis://h", "secret": "{secret}" }}"#);
        let settings: HealthStoreSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(
            settings.secret.as_ref().map(Secret::expose_secret),
            Some(secret)
        );
        let serialised = serde_json::to_string(&settings).unwrap();
        assert_eq!(
            serialised,
            r#"{"redis":"redis://h","prefix":"llm-tower","secret":"***"}"#
        );
        let debug = format!("{settings:?} {settings:#?}");
        assert!(!debug.contains(secret) && debug.contains("***"), "{debug}");
        // A value of the wrong type is refused without being repeated.
        let err = serde_json::from_str::<HealthStoreSettings>(
            r#"{ "redis": "redis://h", "secret": ["leaked-if-shown"] }"#,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("leaked"), "{err}");
        // Without one, the settings serialise as they always have.
        let plain = serde_json::to_string(&HealthStoreSettings::new("redis://h")).unwrap();
        assert_eq!(plain, r#"{"redis":"redis://h","prefix":"llm-tower"}"#);
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
