//! [`ErrorKind`]: what went wrong, coarsely, read from an error's types (never its text):
//! the status a client sees, the code in its JSON, and what retry and fallback make of it.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

use super::Error;
use crate::transport::Known;

/// What went wrong, coarsely. Decides the status code a client sees.
///
/// ```
/// use http::StatusCode;
/// use llm_tower_core::ErrorKind;
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert_eq!(ErrorKind::of(&refused), ErrorKind::Connect);
/// assert_eq!(ErrorKind::Connect.status(), StatusCode::BAD_GATEWAY);
/// assert_eq!(ErrorKind::Timeout.code(), "upstream_timeout");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The upstream could not be connected to (refused, unreachable, DNS, TLS). 502.
    Connect,
    /// The connection closed or reset before a complete response head. 502.
    Closed,
    /// The per-try timeout passed before the response head arrived. 504.
    Timeout,
    /// A 2xx head arrived but no body byte within `first_byte_timeout`. 504.
    FirstByteTimeout,
    /// Another recognised upstream or transport failure (an I/O error on the connection). 502.
    Upstream,
    /// The upstream broke the protocol before any byte reached the client: a malformed or
    /// oversized response head, an informational or `101` status as the final answer, or an
    /// invalid body framing before the first byte. 502.
    Protocol,
    /// The response body stopped: no frame for `stream_idle_timeout` after the head was sent.
    /// The client's stream is aborted (the status was already sent). 504 when it is not.
    StreamIdleTimeout,
    /// A resource of this process ran out (file descriptors, memory, socket buffers, local
    /// ports): not the upstream's fault, so nothing is retried, no endpoint is blamed and
    /// nothing falls back. 503.
    Local,
    /// An error of the inner service that no classifier recognised. It is not retried, does
    /// not count against the endpoint and does not fall back: llm-tower cannot tell whether
    /// another try would help. Map your own errors to a kind with
    /// [`ClassifyErrorsLayer`](crate::ClassifyErrorsLayer) to change that. 502.
    Unrecognized,
    /// The request body is larger than the buffer cap. 413; nothing was sent upstream.
    BodyTooLarge,
    /// The request could not be read or forwarded as sent. 400.
    InvalidRequest,
    /// The request asks for a model no endpoint serves. 404 (`model_not_found`, as OpenAI
    /// answers); nothing was sent upstream.
    ModelNotFound,
    /// The client did not send its request body in time. 408; nothing was sent upstream.
    RequestTimeout,
    /// The client presented no key, or not one of the gateway's. 401; nothing was sent
    /// upstream.
    Unauthorized,
    /// The request is not allowed here, whoever sends it (a `Host` or `Origin` the gateway
    /// does not serve). 403; nothing was sent upstream.
    Forbidden,
    /// No endpoint may be tried now (all cooling down, `when_all_unhealthy: fail`). 503.
    NoEndpointAvailable,
    /// The gateway holds as many request bytes as it may (its budget for buffered request
    /// bodies is spent): the request is refused before its body is read, with a
    /// `Retry-After`. 503; nothing was sent upstream.
    Overloaded,
    /// The client is over one of its rate limits (requests or tokens per minute). 429
    /// (`rate_limit_exceeded`, as OpenAI answers) with `Retry-After`; nothing was sent
    /// upstream.
    RateLimited,
    /// The client has spent its budget for the period. 429 (`insufficient_quota`) with
    /// `Retry-After` (the period's end); nothing was sent upstream.
    QuotaExceeded,
    /// The client's limits could not be checked: the store they are shared through is
    /// unreachable, and it is configured to refuse then (`on_store_down: deny`). 503
    /// (`limits_unavailable`) with `Retry-After`; nothing was sent upstream.
    LimitsUnavailable,
    /// The attempt was given up because another one, sent as a hedge, answered first (or the
    /// hedge, because the first answered). Only in the attempt log: never a client's answer,
    /// never against the deployment's health.
    HedgeLost,
    /// A bug or misuse inside the stack. 500.
    Internal,
}

impl ErrorKind {
    /// The HTTP status a client sees for this kind.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Connect | Self::Closed | Self::Upstream | Self::Unrecognized => {
                StatusCode::BAD_GATEWAY
            }
            Self::Protocol | Self::HedgeLost => StatusCode::BAD_GATEWAY,
            Self::Timeout | Self::FirstByteTimeout | Self::StreamIdleTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::ModelNotFound => StatusCode::NOT_FOUND,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NoEndpointAvailable
            | Self::Local
            | Self::Overloaded
            | Self::LimitsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited | Self::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code (`"upstream_timeout"`, ...), used as the JSON `code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Connect => "upstream_connect_failed",
            Self::Closed => "upstream_connection_closed",
            Self::Timeout => "upstream_timeout",
            Self::FirstByteTimeout => "upstream_first_byte_timeout",
            Self::Upstream => "upstream_error",
            Self::Protocol => "upstream_protocol_error",
            Self::StreamIdleTimeout => "upstream_stream_idle_timeout",
            Self::Local => "gateway_resource_exhausted",
            Self::Unrecognized => "unrecognized_upstream_error",
            Self::BodyTooLarge => "request_too_large",
            Self::InvalidRequest => "invalid_request",
            Self::ModelNotFound => "model_not_found",
            Self::RequestTimeout => "request_timeout",
            Self::Unauthorized => "invalid_api_key",
            Self::Forbidden => "forbidden",
            Self::NoEndpointAvailable => "no_endpoint_available",
            Self::Overloaded => "gateway_overloaded",
            Self::RateLimited => "rate_limit_exceeded",
            Self::QuotaExceeded => "insufficient_quota",
            Self::LimitsUnavailable => "limits_unavailable",
            Self::HedgeLost => "hedge_lost",
            Self::Internal => "internal_error",
        }
    }

    pub(super) fn error_type(self) -> &'static str {
        match self {
            Self::BodyTooLarge
            | Self::InvalidRequest
            | Self::ModelNotFound
            | Self::RequestTimeout
            | Self::Unauthorized => "invalid_request_error",
            Self::Forbidden => "permission_error",
            Self::RateLimited => "rate_limit_error",
            Self::QuotaExceeded => "insufficient_quota",
            Self::NoEndpointAvailable | Self::Overloaded | Self::LimitsUnavailable => {
                "service_unavailable"
            }
            Self::Internal | Self::Local => "server_error",
            _ => "upstream_error",
        }
    }

    /// Classifies any error by walking its source chain: an llm-tower [`Error`] keeps its
    /// kind, hyper's and hyper-util's client errors say what they are (a connect failure,
    /// a connection closed before the head, a timeout, a malformed head), and an
    /// [`std::io::Error`] maps by its [`std::io::ErrorKind`]. Anything else is
    /// [`Unrecognized`](Self::Unrecognized): errors are classified from their types, never
    /// from their messages. So a hyper-util client of your own below the stack is retried
    /// and falls back like llm-tower's.
    ///
    /// ```
    /// use llm_tower_core::ErrorKind;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Nothing listens on that port: a hyper-util client's connect error.
    /// let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    /// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
    ///     .build_http::<http_body_util::Empty<bytes::Bytes>>();
    /// let err = client.get(format!("http://{refused}/").parse().unwrap()).await.unwrap_err();
    /// assert_eq!(ErrorKind::of(&err), ErrorKind::Connect);
    /// assert_eq!(ErrorKind::of(&std::fmt::Error), ErrorKind::Unrecognized);
    /// # }
    /// ```
    pub fn of(err: &(dyn StdError + 'static)) -> Self {
        let mut transport = false;
        let mut current = Some(err);
        while let Some(e) = current {
            if let Some(e) = e.downcast_ref::<Error>() {
                return e.kind();
            }
            match crate::transport::known(e) {
                Some(Known::Kind(kind)) => return kind,
                Some(Known::Transport) => transport = true,
                None => {}
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return Self::of_io(io);
            }
            current = e.source();
        }
        // hyper-util's own conditions without a cause (a pooled connection closed before the
        // request was sent) are transport failures like the others.
        if transport {
            Self::Upstream
        } else {
            Self::Unrecognized
        }
    }

    /// The kind of a failed I/O operation on an upstream connection. Running out of this
    /// process's own resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, `EADDRNOTAVAIL`) is
    /// [`Local`](Self::Local), never the upstream's fault.
    pub fn of_io(err: &std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        if is_local_exhaustion(err) {
            return Self::Local;
        }
        match err.kind() {
            Io::ConnectionRefused | Io::NotFound => Self::Connect,
            Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => {
                Self::Closed
            }
            Io::TimedOut => Self::Timeout,
            Io::OutOfMemory => Self::Local,
            _ => Self::Upstream,
        }
    }
}

/// Whether `err` says this process ran out of something: file descriptors (`EMFILE`,
/// `ENFILE`), socket buffers (`ENOBUFS`), memory (`ENOMEM`) or local ports
/// (`EADDRNOTAVAIL`, which a connect returns when no ephemeral port is free).
fn is_local_exhaustion(err: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            err.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
        ) || err.kind() == std::io::ErrorKind::AddrNotAvailable
    }
    #[cfg(not(unix))]
    {
        err.kind() == std::io::ErrorKind::AddrNotAvailable
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
