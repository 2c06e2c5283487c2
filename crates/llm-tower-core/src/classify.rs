//! Outcome classification: the one function that decides what a result means.

use std::error::Error as StdError;

use http::{Response, StatusCode};

use crate::error::{BoxError, Error, ErrorKind};

/// What an upstream outcome means for retry, health and fallback.
///
/// | outcome | retry same endpoint | counts against health | fall back |
/// |---|---|---|---|
/// | 2xx, 3xx, a `101` to an upgrade asked for | no (success) | resets | no |
/// | connect error, timeout, reset before the head, protocol fault (1xx, or a 101 nobody asked for, as the answer; malformed head), 408, 429, 500, 502, 503, 504, 529 | yes | yes | yes |
/// | 401, 403 | no | yes | yes |
/// | other 4xx and 5xx | no | no | no |
/// | an inner error no classifier recognised ([`ErrorKind::Unrecognized`]) | no | no | no |
/// | a local failure: this process ran out of fds, memory, ports ([`ErrorKind::Local`]) | no | no | no |
///
/// The same table, with the reasons, is in the repository's `ARCHITECTURE.md`.
///
/// ```
/// use http::StatusCode;
/// use llm_tower_core::{Classification, classify_status};
///
/// let class = classify_status(StatusCode::UNAUTHORIZED);
/// assert_eq!(class, Classification::BadCredentials);
/// assert!(!class.retry_same_endpoint() && class.falls_back());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    /// The endpoint answered; return the response.
    Success,
    /// A transient failure: retry on the same endpoint, then fall back.
    Retryable,
    /// The endpoint rejected its own key (401, 403): no retry, but fall back.
    BadCredentials,
    /// The client's request is at fault (400, 404, 413, 422, ...): return it as is.
    ClientError,
    /// An inner error that nothing recognised: return it, without retry, health change or
    /// fallback, since nobody can tell whether another try would help.
    Unrecognized,
    /// This process ran out of a resource: the same elsewhere, so no retry, no fallback, and
    /// no endpoint is blamed.
    Local,
}

impl Classification {
    /// Whether another attempt on the same endpoint may help.
    pub fn retry_same_endpoint(self) -> bool {
        self == Self::Retryable
    }

    /// Whether the outcome counts as a failure of the endpoint.
    pub fn counts_against_health(self) -> bool {
        matches!(self, Self::Retryable | Self::BadCredentials)
    }

    /// Whether another endpoint should be tried.
    pub fn falls_back(self) -> bool {
        self.counts_against_health()
    }
}

/// Classifies a response status.
pub fn classify_status(status: StatusCode) -> Classification {
    match status.as_u16() {
        // A `101` reaches a classification only as the answer to an upgrade that was asked
        // for (`WebSocketUpgrade`): any other is made an error first (`informational_as_error`).
        101 | 200..=399 => Classification::Success,
        // Another informational status is not an answer.
        100..=199 | 408 | 429 | 500 | 502 | 503 | 504 | 529 => Classification::Retryable,
        401 | 403 => Classification::BadCredentials,
        _ => Classification::ClientError,
    }
}

/// Classifies an error from the inner service by its [`ErrorKind`]: transport failures
/// (connect, timeout, reset before the head, ...) are retryable; errors about the client's own
/// request are not; an error nothing recognised is [`Classification::Unrecognized`].
pub fn classify_error(err: &(dyn StdError + 'static)) -> Classification {
    classify_error_kind(ErrorKind::of(err))
}

/// Classifies an error of a known [`ErrorKind`].
pub fn classify_error_kind(kind: ErrorKind) -> Classification {
    match kind {
        ErrorKind::BodyTooLarge
        | ErrorKind::InvalidRequest
        | ErrorKind::ModelNotFound
        | ErrorKind::RequestTimeout
        | ErrorKind::Unauthorized
        | ErrorKind::Forbidden
        | ErrorKind::RateLimited
        | ErrorKind::QuotaExceeded => Classification::ClientError,
        ErrorKind::Unrecognized
        | ErrorKind::Internal
        | ErrorKind::NoEndpointAvailable
        | ErrorKind::HedgeLost => Classification::Unrecognized,
        ErrorKind::Local | ErrorKind::Overloaded | ErrorKind::LimitsUnavailable => {
            Classification::Local
        }
        ErrorKind::Connect
        | ErrorKind::Closed
        | ErrorKind::Timeout
        | ErrorKind::FirstByteTimeout
        | ErrorKind::StreamIdleTimeout
        | ErrorKind::Protocol
        | ErrorKind::Upstream => Classification::Retryable,
    }
}

/// Whether `response` is the `101 Switching Protocols` that answers an upgrade the request
/// asked for (`asked`: it carries [`WebSocketUpgrade`](crate::WebSocketUpgrade)): the one
/// informational answer that is not made an error.
///
/// ```
/// use llm_tower_core::is_upgrade_answer;
///
/// let switching = http::Response::builder().status(101).body(()).unwrap();
/// assert!(is_upgrade_answer(&switching, true));
/// assert!(!is_upgrade_answer(&switching, false));
/// ```
pub fn is_upgrade_answer<B>(response: &Response<B>, asked: bool) -> bool {
    asked && response.status() == StatusCode::SWITCHING_PROTOCOLS
}

/// Turns an informational (1xx) or `101 Switching Protocols` response into an
/// [`ErrorKind::Protocol`] error: it is not an answer to the request, and must never be passed
/// on to the client as if it were one. Other results are returned unchanged.
///
/// ```
/// use http::{Response, StatusCode};
/// use llm_tower_core::{BoxError, ErrorKind, informational_as_error};
///
/// let upgrade = Response::builder().status(101).body(()).unwrap();
/// let err = informational_as_error(Ok::<_, BoxError>(upgrade)).unwrap_err();
/// assert_eq!(ErrorKind::of(&*err), ErrorKind::Protocol);
/// let ok = informational_as_error(Ok::<_, BoxError>(Response::new(()))).unwrap();
/// assert_eq!(ok.status(), StatusCode::OK);
/// ```
pub fn informational_as_error<B>(
    result: Result<Response<B>, BoxError>,
) -> Result<Response<B>, BoxError> {
    match result {
        Ok(response) if response.status().is_informational() => Err(Box::new(Error::new(
            ErrorKind::Protocol,
            format!(
                "the upstream answered with the informational status {}",
                response.status().as_u16()
            ),
        ))),
        other => other,
    }
}

/// Classifies the result of one upstream attempt.
pub fn classify<B>(result: &Result<Response<B>, BoxError>) -> Classification {
    match result {
        Ok(response) => classify_status(response.status()),
        Err(err) => classify_error(&**err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_table() {
        use Classification::*;
        for code in [101, 200, 201, 204, 301, 302, 304] {
            assert_eq!(
                classify_status(StatusCode::from_u16(code).unwrap()),
                Success,
                "{code}"
            );
        }
        for code in [100, 102, 103, 408, 429, 500, 502, 503, 504, 529] {
            let c = classify_status(StatusCode::from_u16(code).unwrap());
            assert_eq!(c, Retryable, "{code}");
            assert!(c.retry_same_endpoint() && c.counts_against_health() && c.falls_back());
        }
        for code in [401, 403] {
            let c = classify_status(StatusCode::from_u16(code).unwrap());
            assert_eq!(c, BadCredentials, "{code}");
            assert!(!c.retry_same_endpoint() && c.counts_against_health() && c.falls_back());
        }
        for code in [400, 404, 405, 409, 413, 415, 422, 451, 501, 505] {
            let c = classify_status(StatusCode::from_u16(code).unwrap());
            assert_eq!(c, ClientError, "{code}");
            assert!(!c.retry_same_endpoint() && !c.counts_against_health() && !c.falls_back());
        }
        assert!(!Success.retry_same_endpoint() && !Success.counts_against_health());
    }

    #[test]
    fn errors() {
        let connect: BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify::<()>(&Err(connect)), Classification::Retryable);
        let timeout: BoxError = Box::new(Error::new(ErrorKind::Timeout, "t"));
        assert_eq!(classify::<()>(&Err(timeout)), Classification::Retryable);
        let reset: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify::<()>(&Err(reset)), Classification::Retryable);
        let too_big: BoxError = Box::new(Error::body_too_large(1));
        assert_eq!(classify::<()>(&Err(too_big)), Classification::ClientError);
        // An error of a type nobody recognises is not retried, whatever its message says.
        let unknown: BoxError = "connect error: connection refused (Connect)".into();
        let class = classify::<()>(&Err(unknown));
        assert_eq!(class, Classification::Unrecognized);
        assert!(!class.retry_same_endpoint() && !class.counts_against_health());
        assert!(!class.falls_back());
        // Our own exhaustion blames nobody.
        let emfile: BoxError = Box::new(std::io::Error::from_raw_os_error(libc::EMFILE));
        let class = classify::<()>(&Err(emfile));
        assert_eq!(class, Classification::Local);
        assert!(!class.retry_same_endpoint() && !class.counts_against_health());
        assert!(!class.falls_back());
        let ok = Ok(Response::new(()));
        assert_eq!(classify(&ok), Classification::Success);
    }
}
