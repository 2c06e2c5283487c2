//! Secrets: the validated [`ApiKey`] and the configuration-side [`Secret`].

use std::fmt;

use http::HeaderValue;
use serde::{Deserialize, Serialize};

/// An API key. It is validated once (non-empty, printable ASCII, no control characters) and
/// never revealed by `Debug`, `Display` or serialisation, which all print `***`.
///
/// ```
/// use llm_tower_core::ApiKey;
///
/// let key = ApiKey::new("sk-secret").unwrap();
/// assert_eq!(format!("{key:?} {key}"), "ApiKey(***) ***");
/// assert!(ApiKey::new("sk\r\nx-injected: 1").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(HeaderValue);

impl ApiKey {
    /// Validates a key.
    ///
    /// # Errors
    ///
    /// A message (which never contains the key) when the key is empty, has surrounding
    /// whitespace, or contains a control or non-ASCII character.
    pub fn new(key: &str) -> Result<Self, &'static str> {
        if key.is_empty() {
            return Err("the key is empty");
        }
        if key.bytes().any(|b| b.is_ascii_control()) {
            return Err("the key contains a control character (such as CR, LF or TAB)");
        }
        if !key.is_ascii() {
            return Err("the key contains a non-ASCII character");
        }
        if key.trim() != key {
            return Err("the key has leading or trailing whitespace");
        }
        let mut value =
            HeaderValue::from_str(key).map_err(|_| "the key is not a valid header value")?;
        value.set_sensitive(true);
        Ok(Self(value))
    }

    /// The secret bytes. Handle with care: never log them.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// A form safe to show, for an upstream message that echoes the key: `sk-...abcd` (the
    /// first three and last four characters) for keys of 16 characters or more, `***` for
    /// shorter ones, which those seven characters would give away.
    ///
    /// ```
    /// use llm_tower_core::ApiKey;
    ///
    /// assert_eq!(ApiKey::new("sk-proj-0123456789abcdef").unwrap().masked(), "sk-...cdef");
    /// assert_eq!(ApiKey::new("short-key").unwrap().masked(), "***");
    /// ```
    pub fn masked(&self) -> String {
        let key = self.0.as_bytes();
        if key.len() < 16 {
            return "***".to_owned();
        }
        // Keys are validated ASCII, so byte slices are character slices.
        let head = String::from_utf8_lossy(&key[..3]);
        let tail = String::from_utf8_lossy(&key[key.len() - 4..]);
        format!("{head}...{tail}")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for ApiKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// A secret string from configuration: `Debug` and serialisation print `***`, and a value
/// of the wrong type is rejected without being repeated in the error.
///
/// ```
/// use llm_tower_core::Secret;
///
/// let secret: Secret = serde_json::from_str("\"sk-from-a-file\"").unwrap();
/// assert_eq!(format!("{secret:?}"), "***");
/// assert_eq!(secret.expose_secret(), "sk-from-a-file");
/// ```
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
