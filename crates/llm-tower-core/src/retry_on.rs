//! [`RetryOn`]: which failures an endpoint retries on itself before the balancer moves on.
//!
//! Every failure that [`classify`](crate::classify) calls retryable counts against the
//! endpoint's health and falls back; `retry_on` only says which of them are worth another
//! try on the *same* endpoint first. A timeout is not, by default: a route that accepted the
//! request and went silent stays silent, and retrying it only multiplies the wait (three
//! 30 s timeouts before the fallback answers). Connect errors, resets, 429 and 5xx are
//! often transient, and are retried.

use std::fmt;

use http::Response;
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, ErrorKind};

/// One kind of retryable failure, as `retry_on` names it.
///
/// ```
/// use llm_tower_core::RetryReason;
///
/// assert_eq!(RetryReason::FirstByteTimeout.name(), "first_byte_timeout");
/// assert_eq!("5xx".parse::<RetryReason>(), Ok(RetryReason::ServerError));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// The connection could not be made (`connect`).
    Connect,
    /// The connection was closed or failed before the response head (`reset`).
    Reset,
    /// No response head within the per-try `timeout` (`timeout`).
    Timeout,
    /// A 2xx head, but no body byte within `first_byte_timeout` (`first_byte_timeout`).
    FirstByteTimeout,
    /// A malformed answer: a 1xx or `101` instead of a response, a bad head (`protocol`).
    Protocol,
    /// 500, 502, 503, 504 or 529 (`5xx`).
    ServerError,
    /// 429 Too Many Requests (`429`).
    TooManyRequests,
    /// 408 Request Timeout (`408`).
    RequestTimeout,
}

impl RetryReason {
    /// Every reason, in the order the documentation lists them.
    pub const ALL: [Self; 8] = [
        Self::Connect,
        Self::Reset,
        Self::Timeout,
        Self::FirstByteTimeout,
        Self::Protocol,
        Self::ServerError,
        Self::TooManyRequests,
        Self::RequestTimeout,
    ];

    /// Its name in `retry_on`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::FirstByteTimeout => "first_byte_timeout",
            Self::Protocol => "protocol",
            Self::ServerError => "5xx",
            Self::TooManyRequests => "429",
            Self::RequestTimeout => "408",
        }
    }

    /// The reason of a failed try, if it is a retryable one (`None` for a success, a client
    /// error, a rejected key, or an error nobody recognised).
    ///
    /// ```
    /// use http::Response;
    /// use llm_tower_core::{BoxError, Error, ErrorKind, RetryReason};
    ///
    /// let overloaded = Ok::<_, BoxError>(Response::builder().status(529).body(()).unwrap());
    /// assert_eq!(RetryReason::of(&overloaded), Some(RetryReason::ServerError));
    /// let silent: Result<Response<()>, BoxError> = Err(Error::new(ErrorKind::Timeout, "t").into());
    /// assert_eq!(RetryReason::of(&silent), Some(RetryReason::Timeout));
    /// let bad_request = Ok::<_, BoxError>(Response::builder().status(400).body(()).unwrap());
    /// assert_eq!(RetryReason::of(&bad_request), None);
    /// ```
    pub fn of<B>(result: &Result<Response<B>, BoxError>) -> Option<Self> {
        match result {
            Ok(response) => match response.status().as_u16() {
                100..=199 => Some(Self::Protocol),
                408 => Some(Self::RequestTimeout),
                429 => Some(Self::TooManyRequests),
                500 | 502 | 503 | 504 | 529 => Some(Self::ServerError),
                _ => None,
            },
            Err(err) => match ErrorKind::of(&**err) {
                ErrorKind::Connect => Some(Self::Connect),
                ErrorKind::Closed | ErrorKind::Upstream => Some(Self::Reset),
                ErrorKind::Timeout | ErrorKind::StreamIdleTimeout => Some(Self::Timeout),
                ErrorKind::FirstByteTimeout => Some(Self::FirstByteTimeout),
                ErrorKind::Protocol => Some(Self::Protocol),
                _ => None,
            },
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RetryReason {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|r| r.name()).collect();
                format!("unknown `{name}`: expected one of {}", names.join(", "))
            })
    }
}

/// The failures an endpoint retries on itself (`retry_on: [connect, reset, 429, 5xx, ...]`);
/// the others move to the next deployment at once (they still count against health). By
/// default every retryable failure but the two timeouts.
///
/// ```
/// use llm_tower_core::{RetryOn, RetryReason};
///
/// let default = RetryOn::default();
/// assert!(default.contains(RetryReason::ServerError) && default.contains(RetryReason::Connect));
/// assert!(!default.contains(RetryReason::Timeout) && !default.contains(RetryReason::FirstByteTimeout));
///
/// // In a configuration file, a list of names (status codes may be numbers).
/// let only: RetryOn = serde_json::from_str(r#"["connect", 429]"#).unwrap();
/// assert_eq!(only.to_string(), "[connect, 429]");
/// assert!(serde_json::from_str::<RetryOn>(r#"["sometimes"]"#).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryOn(u8);

impl RetryOn {
    /// Nothing is retried on the same endpoint.
    pub const NONE: Self = Self(0);

    /// Every retryable failure is retried on the same endpoint (the behaviour before
    /// `retry_on`).
    pub const ALL: Self = Self(0xff);

    /// `reasons`, and nothing else.
    pub fn of(reasons: impl IntoIterator<Item = RetryReason>) -> Self {
        Self(reasons.into_iter().fold(0, |bits, r| bits | r.bit()))
    }

    /// Whether failures of `reason` are retried on the same endpoint.
    pub fn contains(self, reason: RetryReason) -> bool {
        self.0 & reason.bit() != 0
    }

    /// Whether the failed try `result` is retried on the same endpoint.
    pub fn allows<B>(self, result: &Result<Response<B>, BoxError>) -> bool {
        RetryReason::of(result).is_some_and(|reason| self.contains(reason))
    }

    fn reasons(self) -> impl Iterator<Item = RetryReason> {
        RetryReason::ALL
            .into_iter()
            .filter(move |r| self.contains(*r))
    }
}

impl Default for RetryOn {
    fn default() -> Self {
        Self::of(
            RetryReason::ALL
                .into_iter()
                .filter(|r| !matches!(r, RetryReason::Timeout | RetryReason::FirstByteTimeout)),
        )
    }
}

impl fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.reasons()).finish()
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.reasons().map(RetryReason::name).collect();
        write!(f, "[{}]", names.join(", "))
    }
}

impl Serialize for RetryOn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.reasons().map(RetryReason::name))
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// One name; YAML and TOML read `429` as a number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Name {
            Text(String),
            Code(u16),
        }
        let names = Vec::<Name>::deserialize(deserializer)?;
        let mut reasons = Vec::with_capacity(names.len());
        for name in names {
            let name = match name {
                Name::Text(text) => text,
                Name::Code(code) => code.to_string(),
            };
            reasons.push(name.parse().map_err(serde::de::Error::custom)?);
        }
        Ok(Self::of(reasons))
    }
}
