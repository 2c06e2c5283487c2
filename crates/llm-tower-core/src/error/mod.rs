//! The error type shared by the layers, and its client-facing OpenAI-style JSON form; its
//! kinds, and how they are read from other errors, are in `kind.rs`.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::attempt::Attempts;

mod kind;

pub use kind::ErrorKind;

/// The boxed error type passed between layers (the tower convention).
///
/// ```
/// use llm_tower_core::{BoxError, Error, ErrorKind};
///
/// let err: BoxError = Error::new(ErrorKind::Timeout, "slow").into();
/// assert_eq!(ErrorKind::of(&*err), ErrorKind::Timeout);
/// ```
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// An llm-tower error: a kind, a message safe to show a client, the attempts made, and an
/// optional `Retry-After` hint. Renders as an OpenAI-style JSON error response with
/// [`Error::to_response`].
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use llm_tower_core::{Error, ErrorKind};
///
/// let err = Error::new(ErrorKind::NoEndpointAvailable, "all cooling down")
///     .with_retry_after(Duration::from_millis(1500));
/// let response: http::Response<Bytes> = err.to_response();
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "2");
/// let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
/// assert_eq!(json["error"]["code"], "no_endpoint_available");
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
    attempts: Option<Attempts>,
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind` with a message (never put secrets in it).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
            attempts: None,
            source: None,
        }
    }

    /// Wraps an upstream/transport error, classifying it with [`ErrorKind::of`].
    pub fn upstream(source: BoxError) -> Self {
        match source.downcast::<Error>() {
            Ok(err) => *err,
            Err(source) => Self::classified(ErrorKind::of(&*source), source),
        }
    }

    /// Wraps `source` as an error of `kind`, with a client-safe message for that kind. This is
    /// how a classifier (see [`ClassifyErrorsLayer`](crate::ClassifyErrorsLayer)) tells the
    /// retry and fallback layers what an error of its own means.
    pub fn classified(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        let what = match kind {
            ErrorKind::Connect => "could not connect to the upstream",
            ErrorKind::Closed => "the upstream closed the connection before responding",
            ErrorKind::Timeout => "the upstream did not respond in time",
            ErrorKind::FirstByteTimeout => "the upstream sent no body in time",
            ErrorKind::Protocol => "the upstream sent a response that breaks the HTTP protocol",
            ErrorKind::StreamIdleTimeout => "the upstream stopped sending its response",
            ErrorKind::Local => {
                "the gateway ran out of a local resource (connections, memory); retry later"
            }
            _ => "the upstream request failed",
        };
        // The cause stays out of the client's message (it can name internal hosts or
        // certificate details); `detail()` has it for logs.
        Self {
            source: Some(source.into()),
            ..Self::new(kind, what)
        }
    }

    /// The message followed by the whole chain of causes, for logs (never sent to clients).
    pub fn detail(&self) -> String {
        let mut detail = self.message.clone();
        let mut current = StdError::source(self);
        while let Some(e) = current {
            detail.push_str(": ");
            detail.push_str(&e.to_string());
            current = e.source();
        }
        detail
    }

    /// The request body exceeded `limit` bytes.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::BodyTooLarge,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 404 `model_not_found` for a model nobody serves, naming the models that are. The
    /// client's name is quoted shortened to 100 characters: it can be as long as a body.
    ///
    /// ```
    /// use llm_tower_core::{Error, ErrorKind};
    ///
    /// let err = Error::model_not_found(&"x".repeat(500), &["gpt-4o", "o1"]);
    /// assert_eq!(err.kind(), ErrorKind::ModelNotFound);
    /// assert!(err.to_string().len() < 200);
    /// assert!(err.to_string().ends_with("Available models: gpt-4o, o1"));
    /// ```
    pub fn model_not_found(model: &str, known: &[&str]) -> Self {
        let shortened = match model.char_indices().nth(100) {
            Some((end, _)) => format!("{}…", &model[..end]),
            None => model.to_owned(),
        };
        Self::new(
            ErrorKind::ModelNotFound,
            format!(
                "The model `{shortened}` does not exist or is not served here. Available models: {}",
                known.join(", ")
            ),
        )
    }

    /// Attaches a `Retry-After` hint (sent to the client as whole seconds, rounded up).
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Attaches the attempt log.
    #[must_use]
    pub fn with_attempts(mut self, attempts: Attempts) -> Self {
        self.attempts = Some(attempts);
        self
    }

    /// The first llm-tower error in `err`'s chain of causes, as a new error of the same kind,
    /// message and `Retry-After` (without its causes): how a layer passes on what a body or
    /// service further in said went wrong, through wrappers such as axum's body error.
    ///
    /// ```
    /// use llm_tower_core::{BoxError, Error, ErrorKind};
    ///
    /// let timed_out: BoxError = Error::new(ErrorKind::RequestTimeout, "too slow").into();
    /// let found = Error::find_in(&*timed_out).unwrap();
    /// assert_eq!((found.kind(), found.to_string()), (ErrorKind::RequestTimeout, "too slow".into()));
    /// assert!(Error::find_in(&std::io::Error::other("plain")).is_none());
    /// ```
    pub fn find_in(err: &(dyn StdError + 'static)) -> Option<Self> {
        let mut current = Some(err);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<Error>() {
                return Some(Self {
                    retry_after: found.retry_after,
                    ..Self::new(found.kind, found.message.clone())
                });
            }
            current = e.source();
        }
        None
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The client-safe message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The status code a client sees.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
    /// The `Retry-After` hint, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    /// The attempts made before failing, if recorded.
    pub fn attempts(&self) -> Option<&Attempts> {
        self.attempts.as_ref()
    }

    /// The JSON body: `{"error":{"message":...,"type":...,"code":...}}`.
    pub fn to_json(&self) -> Bytes {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind.error_type(),
                "code": self.kind.code(),
            }
        })
        .to_string()
        .into()
    }

    /// A complete response: status, `content-type: application/json`, `Retry-After` when
    /// known, the JSON body, and the [`Attempts`] in the extensions.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        self.to_response_in(crate::ClientApi::Other)
    }

    /// [`to_response`](Self::to_response), its body in the shape of the API the client
    /// speaks ([`ClientApi::error_body`](crate::ClientApi::error_body)).
    pub fn to_response_in<B: From<Bytes>>(&self, api: crate::ClientApi) -> Response<B> {
        let mut response = Response::new(B::from(api.error_body(self)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(attempts) = &self.attempts {
            response.extensions_mut().insert(attempts.clone());
        }
        response
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("retry_after", &self.retry_after)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_and_status() {
        let err = Error::body_too_large(10).with_retry_after(Duration::from_millis(1500));
        let resp: Response<Bytes> = err.to_response();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(resp.headers()["retry-after"], "2");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["error"]["code"], "request_too_large");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("10 bytes"));
    }

    #[test]
    fn kinds_from_io_errors() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "internal.host");
        let err = Error::upstream(Box::new(refused));
        assert_eq!(err.kind(), ErrorKind::Connect);
        assert_eq!(err.message(), "could not connect to the upstream");
        assert!(!String::from_utf8_lossy(&err.to_json()).contains("internal.host"));
        assert!(err.detail().contains("internal.host"), "{}", err.detail());
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(ErrorKind::of(&reset), ErrorKind::Closed);
        let inner = Error::new(ErrorKind::Timeout, "slow");
        assert_eq!(Error::upstream(Box::new(inner)).kind(), ErrorKind::Timeout);
        assert_eq!(ErrorKind::Timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            ErrorKind::NoEndpointAvailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
