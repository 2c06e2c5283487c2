//! [`Outcome`]: how one attempt ended, as its record, the metrics and the logs say it.

use std::fmt;

use http::{Response, StatusCode};
use serde::Serialize;

use crate::error::{BoxError, ErrorKind};

/// How an attempt ended.
///
/// ```
/// use http::StatusCode;
/// use llm_tower_core::{ErrorKind, Outcome};
///
/// assert_eq!(Outcome::Status(StatusCode::TOO_MANY_REQUESTS).to_string(), "429");
/// assert_eq!(Outcome::Error(ErrorKind::Connect).to_string(), "upstream_connect_failed");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A response head arrived with this status.
    Status(#[serde(serialize_with = "ser_status")] StatusCode),
    /// No response: a transport failure of this kind.
    Error(ErrorKind),
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn ser_status<S: serde::Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

impl Outcome {
    /// The outcome of a result from an inner service.
    pub fn of<B>(result: &Result<Response<B>, BoxError>) -> Self {
        match result {
            Ok(response) => Self::Status(response.status()),
            Err(err) => Self::Error(ErrorKind::of(&**err)),
        }
    }

    /// Whether a 2xx answer came.
    pub fn is_success(self) -> bool {
        // A `101` is recorded only as the answer to an upgrade that was asked for.
        matches!(self, Self::Status(status)
            if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "{}", status.as_u16()),
            Self::Error(kind) => write!(f, "{kind}"),
        }
    }
}
