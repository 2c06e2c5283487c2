//! An endpoint's active health check: what to ask, how often, and what counts as healthy.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, StatusCode, Uri};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::BaseUrl;

/// An active health check of one endpoint (`health_check` in configuration).
///
/// With a check configured, the balancer's checker (one background task per stack) sends
/// `method path` to the endpoint, through its auth and the same HTTP client as traffic, and
/// never through retry:
///
/// - when an ejected endpoint's cooldown ends, the checker is its half-open probe (no user
///   request is): a check that fails ejects it again with the usual doubling (and at least
///   the response's `Retry-After`); one that passes restores it on probation, where
///   requests are single tries until one succeeds and the first failure ejects it again,
///   escalating (a check can pass while completions fail);
/// - with `interval`, healthy endpoints are checked too, and `unhealthy_threshold`
///   consecutive failed checks eject an endpoint before users reach it.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::{ExpectStatus, HealthCheck};
///
/// let check: HealthCheck = serde_json::from_str(
///     r#"{"path": "/models", "interval": "30s", "timeout": "2s", "expect": "2xx"}"#,
/// ).unwrap();
/// assert_eq!(check.interval, Some(Duration::from_secs(30)));
/// assert_eq!(check.expect, ExpectStatus::Class(2));
/// assert!(check.expect.matches(http::StatusCode::NO_CONTENT));
/// // Every field has a default: `GET /models` within 5 s, any 2xx, on cooldown end only.
/// assert_eq!(HealthCheck::default().method, http::Method::GET);
/// assert_eq!(HealthCheck::default().path, "/models");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheck {
    /// The path (with an optional query) joined to the endpoint's `base_url`
    /// (default `/models`, which OpenAI-compatible servers, Anthropic and Gemini serve).
    pub path: String,
    /// The method (default `GET`); the check sends no body.
    #[serde(with = "method")]
    pub method: Method,
    /// How often a healthy endpoint is checked (default: never; ejected endpoints are
    /// checked when their cooldown ends either way).
    #[serde(
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    /// How long a check may take, response head included (default 5 s).
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// The statuses that pass (default any 2xx).
    pub expect: ExpectStatus,
}

impl HealthCheck {
    /// The default timeout of one check: 5 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Checks every field; the message names the field (`path`, `interval`, ...).
    ///
    /// ```
    /// use llm_tower_core::HealthCheck;
    ///
    /// let bad = HealthCheck { path: "models".into(), ..HealthCheck::default() };
    /// assert_eq!(bad.validate().unwrap_err(), "path: `models` must start with `/`");
    /// ```
    ///
    /// # Errors
    ///
    /// A message starting with the field's name.
    pub fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/') {
            return Err(format!("path: `{}` must start with `/`", self.path));
        }
        PathAndQuery::from_str(&self.path)
            .map_err(|_| format!("path: `{}` is not a valid path", self.path))?;
        // The range check every timeout has (its one owner), as a message naming the field.
        let positive = |name: &str, d: Duration| {
            crate::ConfigError::check_timeout(name, Some(d)).map_err(|err| err.to_string())
        };
        positive("timeout", self.timeout)?;
        if let Some(interval) = self.interval {
            positive("interval", interval)?;
        }
        Ok(())
    }

    /// The URI a check of the endpoint at `base_url` is sent to: `path` joined to it as a
    /// request's target would be (so a path with dot segments is refused the same way).
    ///
    /// ```
    /// use llm_tower_core::{BaseUrl, HealthCheck};
    ///
    /// let base = BaseUrl::parse("https://api.openai.com/v1").unwrap();
    /// let uri = HealthCheck::default().uri(&base).unwrap();
    /// assert_eq!(uri, "https://api.openai.com/v1/models");
    /// ```
    ///
    /// # Errors
    ///
    /// A message for a path that does not make a valid URI under `base_url`.
    pub fn uri(&self, base_url: &BaseUrl) -> Result<Uri, String> {
        let target = Uri::from_str(&self.path).map_err(|e| e.to_string())?;
        base_url.join(&target)
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: "/models".to_owned(),
            method: Method::GET,
            interval: None,
            timeout: Self::DEFAULT_TIMEOUT,
            expect: ExpectStatus::default(),
        }
    }
}

/// The statuses a health check accepts: one status (`expect: 200`) or a class
/// (`expect: 2xx`).
///
/// ```
/// use http::StatusCode;
/// use llm_tower_core::ExpectStatus;
///
/// let exact: ExpectStatus = serde_json::from_str("204").unwrap();
/// assert!(exact.matches(StatusCode::NO_CONTENT) && !exact.matches(StatusCode::OK));
/// let class: ExpectStatus = "2xx".parse().unwrap();
/// assert!(class.matches(StatusCode::OK) && !class.matches(StatusCode::FOUND));
/// assert_eq!(class.to_string(), "2xx");
/// assert!("6xx".parse::<ExpectStatus>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectStatus {
    /// Exactly this status.
    Status(StatusCode),
    /// Any status of this class (`2` for 2xx).
    Class(u8),
}

impl Default for ExpectStatus {
    fn default() -> Self {
        Self::Class(2)
    }
}

impl ExpectStatus {
    /// Whether `status` passes.
    pub fn matches(self, status: StatusCode) -> bool {
        match self {
            Self::Status(expected) => status == expected,
            Self::Class(class) => status.as_u16() / 100 == u16::from(class),
        }
    }
}

impl fmt::Display for ExpectStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "{}", status.as_u16()),
            Self::Class(class) => write!(f, "{class}xx"),
        }
    }
}

impl FromStr for ExpectStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("`{text}` is neither a status (such as 200) nor a class (such as 2xx)");
        let lower = text.trim().to_ascii_lowercase();
        if let Some(class) = lower.strip_suffix("xx") {
            return match class.parse::<u8>() {
                Ok(class @ 1..=5) => Ok(Self::Class(class)),
                _ => Err(bad()),
            };
        }
        let code: u16 = lower.parse().map_err(|_| bad())?;
        Self::status(code).ok_or_else(bad)
    }
}

impl ExpectStatus {
    fn status(code: u16) -> Option<Self> {
        (100..=599)
            .contains(&code)
            .then(|| StatusCode::from_u16(code).ok().map(Self::Status))
            .flatten()
    }
}

impl Serialize for ExpectStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Status(status) => serializer.serialize_u16(status.as_u16()),
            Self::Class(_) => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for ExpectStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Code(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Code(code) => u16::try_from(code)
                .ok()
                .and_then(Self::status)
                .ok_or_else(|| serde::de::Error::custom(format!("`{code}` is not a status"))),
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `http::Method` as its name.
mod method {
    use std::str::FromStr;

    use http::Method;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(method: &Method, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(method.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        let name = String::deserialize(d)?;
        Method::from_str(&name.to_ascii_uppercase())
            .map_err(|_| serde::de::Error::custom(format!("`{name}` is not an HTTP method")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_configuration_files_write() {
        let check: HealthCheck = serde_json::from_str(
            r#"{"path": "/v1/models?limit=1", "method": "head", "interval": 1500, "expect": 200}"#,
        )
        .unwrap();
        assert_eq!(check.method, Method::HEAD);
        assert_eq!(check.interval, Some(Duration::from_millis(1500)));
        assert_eq!(check.expect, ExpectStatus::Status(StatusCode::OK));
        assert_eq!(check.timeout, HealthCheck::DEFAULT_TIMEOUT);
        check.validate().unwrap();
        let again: HealthCheck =
            serde_json::from_value(serde_json::to_value(&check).unwrap()).unwrap();
        assert_eq!(again, check);
        for (bad, field) in [
            (r#"{"expect": "7xx"}"#, "7xx"),
            (r#"{"expect": 999}"#, "999"),
            (r#"{"method": "GE T"}"#, "GE T"),
            (r#"{"intervall": "1s"}"#, "intervall"),
        ] {
            let err = serde_json::from_str::<HealthCheck>(bad).unwrap_err();
            assert!(err.to_string().contains(field), "{bad}: {err}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let zero = HealthCheck {
            interval: Some(Duration::ZERO),
            ..HealthCheck::default()
        };
        assert!(zero.validate().unwrap_err().starts_with("interval:"));
        let zero = HealthCheck {
            timeout: Duration::ZERO,
            ..HealthCheck::default()
        };
        assert!(zero.validate().unwrap_err().starts_with("timeout:"));
        let spaced = HealthCheck {
            path: "/mo dels".into(),
            ..HealthCheck::default()
        };
        assert!(spaced.validate().unwrap_err().starts_with("path:"));
    }
}
