//! The error every settings check and configuration loader returns: it names the field.

use std::path::PathBuf;
use std::time::Duration;

/// A configuration error. Its message names the offending field (and endpoint), never a key.
///
/// ```
/// use llm_tower_core::{ConfigError, Endpoint};
///
/// let err = Endpoint::builder("a", "ftp://example.com").build().unwrap_err();
/// assert!(matches!(err, ConfigError::Invalid { .. }));
/// assert!(err.to_string().starts_with("endpoint `a`: base_url:"));
/// ```
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
    /// An [`Invalid`](Self::Invalid) error for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The longest cooldown that may be configured (`max_cooldown`, `health_check_interval`).
pub const MAX_COOLDOWN_LIMIT: Duration = Duration::from_secs(24 * 3600);

impl ConfigError {
    /// Checks that a cooldown setting is greater than zero and at most [`MAX_COOLDOWN_LIMIT`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `field`.
    pub fn check_cooldown(field: impl Into<String>, cooldown: Duration) -> Result<(), Self> {
        if cooldown.is_zero() || cooldown > MAX_COOLDOWN_LIMIT {
            return Err(Self::invalid(
                field,
                "must be greater than zero and at most 24h",
            ));
        }
        Ok(())
    }

    /// Checks a name that will appear in logs, metric labels, headers and health keys (an
    /// endpoint id, a client key's name): 1 to 64 characters of `A-Z`, `a-z`, `0-9`, `.`, `_`
    /// and `-`, so that it can never forge a log line or a label.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `field`; the name is shown escaped.
    pub fn check_name(field: impl Into<String>, name: &str) -> Result<(), Self> {
        const MAX: usize = 64;
        let valid = !name.is_empty()
            && name.len() <= MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            return Ok(());
        }
        Err(Self::invalid(
            field,
            format!(
                "{:?} must be 1 to {MAX} characters of A-Z, a-z, 0-9, `.`, `_` and `-`",
                name.chars().take(MAX + 1).collect::<String>()
            ),
        ))
    }

    /// Checks that an optional timeout, when set, is greater than zero and at most
    /// [`MAX_COOLDOWN_LIMIT`] (24 h): a longer one would overflow the clock it is added to.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `field`.
    pub fn check_timeout(field: impl Into<String>, timeout: Option<Duration>) -> Result<(), Self> {
        if timeout.is_some_and(|t| t.is_zero() || t > MAX_COOLDOWN_LIMIT) {
            return Err(Self::invalid(
                field,
                "must be greater than zero and at most 24h",
            ));
        }
        Ok(())
    }
}
