//! Scriptable behaviours and their pre-compiled form.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};

use crate::assets::Assets;

/// What the mock does with one `POST …/chat/completions` request.
///
/// Behaviours are queued with [`MockProvider::push`](crate::MockProvider::push) /
/// [`MockProvider::script`](crate::MockProvider::script) (one-shot, FIFO) or installed as the
/// fallback with [`MockProvider::set_default`](crate::MockProvider::set_default) /
/// [`MockProvider::set_cycle`](crate::MockProvider::set_cycle).
///
/// ```
/// use std::time::Duration;
/// use llm_tower_mock::Behavior;
///
/// // Rate limited with a wait, then a slow stream, then a reset mid-stream.
/// let script = [
///     Behavior::retry_after(429, "2"),
///     Behavior::Stream { chunks: 5, interval: Duration::from_millis(50) },
///     Behavior::delay(Duration::from_secs(1), Behavior::status(503)),
/// ];
/// # let _ = script;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Behavior {
    /// Normal OpenAI-style reply: a JSON `chat.completion` object, or an SSE stream of
    /// `chat.completion.chunk` events (3 chunks, no delay, then `data: [DONE]`) when the JSON
    /// request body has `"stream": true`.
    Reply,
    /// Like [`Behavior::Reply`] but always answers with SSE: `chunks` content chunks with
    /// `interval` between them (before each chunk after the first), then `data: [DONE]`.
    Stream {
        /// Number of content chunks sent before `data: [DONE]`.
        chunks: usize,
        /// Pause before each chunk after the first.
        interval: Duration,
    },
    /// Answer with this status code.
    ///
    /// The response carries a `retry-after` header with the verbatim value of `retry_after` (if
    /// any), then the extra `headers` (a header named here replaces the mock's own header of
    /// the same name, e.g. `content-type`), and `body` (by default an OpenAI-style error JSON
    /// `{"error":{"message":..,"type":..,"code":..}}` appropriate to the status; for a 2xx
    /// status the default body is the normal chat completion JSON).
    Status {
        /// HTTP status code (100–999).
        status: u16,
        /// Verbatim value of the `retry-after` header, if one should be sent.
        retry_after: Option<String>,
        /// Extra response headers `(name, value)`.
        headers: Vec<(String, String)>,
        /// Response body; `None` selects the default body described above.
        body: Option<String>,
    },
    /// Wait this long, then behave as the inner behaviour (the delay happens before the
    /// response head is sent).
    Delay(Duration, Box<Behavior>),
    /// Read the whole request, then close the TCP connection without sending any response.
    CloseBeforeHead,
    /// Send a `200` SSE head and this many SSE chunks, then abort the connection abruptly
    /// (the client sees an error while reading the body, not a clean end). The answer was cut
    /// short: no chunk has a `finish_reason`.
    ResetAfterChunks(usize),
    /// Send a `200` head (SSE or JSON content type, as requested) and then never send any body
    /// bytes, until the client goes away or the mock shuts down.
    StallBody,
    /// Never send a response head (hang until the client goes away or the mock shuts down).
    StallHead,
}

impl Behavior {
    /// An error reply with the given status code and the default OpenAI-style error body.
    ///
    /// ```
    /// use llm_tower_mock::Behavior;
    /// let b = Behavior::status(503);
    /// assert!(matches!(b, Behavior::Status { status: 503, .. }));
    /// ```
    pub fn status(code: u16) -> Self {
        Behavior::Status {
            status: code,
            retry_after: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// An error reply with the given status code and a `retry-after` header (sent verbatim,
    /// so both `"2"` and HTTP-date values can be tested).
    ///
    /// ```
    /// use llm_tower_mock::Behavior;
    /// let b = Behavior::retry_after(429, "2");
    /// assert!(matches!(b, Behavior::Status { status: 429, retry_after: Some(_), .. }));
    /// ```
    pub fn retry_after(code: u16, value: impl Into<String>) -> Self {
        Behavior::Status {
            status: code,
            retry_after: Some(value.into()),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Wait `d` before behaving as `then`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use llm_tower_mock::Behavior;
    /// let b = Behavior::delay(Duration::from_millis(10), Behavior::Reply);
    /// assert!(matches!(b, Behavior::Delay(_, _)));
    /// ```
    pub fn delay(d: Duration, then: Behavior) -> Self {
        Behavior::Delay(d, Box::new(then))
    }
}

/// A [`Behavior`] with everything that can be built ahead of time already built, so serving a
/// request only clones reference-counted data.
#[derive(Debug)]
pub(crate) enum Plan {
    Reply,
    Stream {
        chunks: usize,
        interval: Duration,
    },
    Status {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    Delay(Duration, Box<Plan>),
    CloseBeforeHead,
    ResetAfterChunks(usize),
    StallBody,
    StallHead,
}

impl Plan {
    /// Compiles a behaviour.
    ///
    /// Panics on an invalid status code or header, so that a broken test script fails where
    /// it is written rather than at request time.
    pub(crate) fn compile(behavior: Behavior, assets: &Assets) -> Plan {
        match behavior {
            Behavior::Reply => Plan::Reply,
            Behavior::Stream { chunks, interval } => Plan::Stream { chunks, interval },
            Behavior::Status {
                status,
                retry_after,
                headers,
                body,
            } => compile_status(status, retry_after.as_deref(), &headers, body, assets),
            Behavior::Delay(d, inner) => Plan::Delay(d, Box::new(Plan::compile(*inner, assets))),
            Behavior::CloseBeforeHead => Plan::CloseBeforeHead,
            Behavior::ResetAfterChunks(n) => Plan::ResetAfterChunks(n),
            Behavior::StallBody => Plan::StallBody,
            Behavior::StallHead => Plan::StallHead,
        }
    }
}

fn compile_status(
    status: u16,
    retry_after: Option<&str>,
    extra: &[(String, String)],
    body: Option<String>,
    assets: &Assets,
) -> Plan {
    let status = StatusCode::from_u16(status)
        .unwrap_or_else(|_| panic!("llm-tower-mock: invalid HTTP status code {status}"));
    let (body, content_type) = match body {
        Some(b) => {
            let trimmed = b.trim_start();
            let ct = if trimmed.starts_with('{') || trimmed.starts_with('[') {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            (Bytes::from(b), ct)
        }
        None if status.is_success() => (assets.completion.clone(), "application/json"),
        None => (Bytes::from(error_body(status)), "application/json"),
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(value) = retry_after {
        headers.insert(RETRY_AFTER, header_value(value));
    }
    let extra: Vec<(HeaderName, HeaderValue)> = extra
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .unwrap_or_else(|_| panic!("llm-tower-mock: invalid header name {name:?}"));
            (name, header_value(value))
        })
        .collect();
    for (name, _) in &extra {
        headers.remove(name);
    }
    for (name, value) in extra {
        headers.append(name, value);
    }
    Plan::Status {
        status,
        headers,
        body,
    }
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value)
        .unwrap_or_else(|_| panic!("llm-tower-mock: invalid header value {value:?}"))
}

/// The default OpenAI-style error JSON for a status code.
pub(crate) fn error_body(status: StatusCode) -> Vec<u8> {
    let (message, kind, error_code) = known_error(status.as_u16()).unwrap_or_else(|| {
        if status.is_client_error() {
            (
                "Request failed (mock).",
                "invalid_request_error",
                "client_error",
            )
        } else if status.is_server_error() {
            ("Server error (mock).", "server_error", "server_error")
        } else {
            (
                "Unexpected status (mock).",
                "mock_error",
                "unexpected_status",
            )
        }
    });
    let value = serde_json::json!({
        "error": {
            "message": message,
            "type": kind,
            "param": null,
            "code": error_code,
        }
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Message, type and code for well-known error statuses.
fn known_error(code: u16) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match code {
        400 => (
            "Invalid request (mock).",
            "invalid_request_error",
            "invalid_request",
        ),
        401 => (
            "Incorrect API key provided (mock).",
            "invalid_request_error",
            "invalid_api_key",
        ),
        403 => (
            "You are not allowed to access this resource (mock).",
            "invalid_request_error",
            "permission_denied",
        ),
        404 => (
            "The requested resource does not exist (mock).",
            "invalid_request_error",
            "not_found",
        ),
        408 => ("Request timed out (mock).", "timeout", "timeout"),
        409 => ("Conflict (mock).", "invalid_request_error", "conflict"),
        413 => (
            "Request too large (mock).",
            "invalid_request_error",
            "request_too_large",
        ),
        422 => (
            "Unprocessable request (mock).",
            "invalid_request_error",
            "unprocessable_entity",
        ),
        429 => (
            "Rate limit reached for requests (mock).",
            "requests",
            "rate_limit_exceeded",
        ),
        500 => (
            "The server had an error while processing your request (mock).",
            "server_error",
            "internal_error",
        ),
        502 => ("Bad gateway (mock).", "server_error", "bad_gateway"),
        503 => (
            "The engine is currently overloaded, please try again later (mock).",
            "server_error",
            "service_unavailable",
        ),
        504 => ("Gateway timeout (mock).", "server_error", "gateway_timeout"),
        529 => ("Overloaded (mock).", "server_error", "overloaded"),
        _ => return None,
    })
}
