//! [`ClientApi`]: which provider API a client speaks, read from its request path, and how an
//! error is said in that API's stream.

use bytes::Bytes;
use serde::Serialize;

use crate::error::Error;
use crate::sse::write_sse_event;

/// The API a client speaks, from the end of its request path (a gateway mounts the APIs under
/// any prefix: `/v1/chat/completions`, `/openai/v1/chat/completions`).
///
/// ```
/// use llm_tower_core::ClientApi;
///
/// assert_eq!(ClientApi::of_path("/v1/chat/completions"), ClientApi::OpenAiChat);
/// assert_eq!(ClientApi::of_path("/v1/messages"), ClientApi::AnthropicMessages);
/// assert_eq!(ClientApi::of_path("/v1/responses"), ClientApi::OpenAiResponses);
/// assert_eq!(ClientApi::of_path("/v1/embeddings"), ClientApi::Other);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientApi {
    /// OpenAI chat completions (`…/chat/completions`), and what else is not named below.
    OpenAiChat,
    /// Anthropic messages (`…/messages`).
    AnthropicMessages,
    /// OpenAI Responses (`…/responses`).
    OpenAiResponses,
    /// Any other path: its errors are said as OpenAI's.
    #[default]
    Other,
}

impl ClientApi {
    /// The API of a request to `path`.
    pub fn of_path(path: &str) -> Self {
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Self::OpenAiChat
        } else if path.ends_with("/messages") {
            Self::AnthropicMessages
        } else if path.ends_with("/responses") {
            Self::OpenAiResponses
        } else {
            Self::Other
        }
    }

    /// The JSON body of an error answer in this API's shape: Anthropic's `{"type": "error",
    /// "error": {"type", "message"}}` to an Anthropic messages client (its SDKs read the
    /// message from there), OpenAI's `{"error": {"message", "type", "code"}}` to the others.
    ///
    /// ```
    /// use llm_tower_core::{ClientApi, Error, ErrorKind};
    ///
    /// let err = Error::new(ErrorKind::RateLimited, "rate limit reached");
    /// let anthropic: serde_json::Value =
    ///     serde_json::from_slice(&ClientApi::AnthropicMessages.error_body(&err)).unwrap();
    /// assert_eq!(anthropic["error"]["type"], "rate_limit_error");
    /// let openai: serde_json::Value = serde_json::from_slice(&ClientApi::OpenAiChat.error_body(&err)).unwrap();
    /// assert_eq!(openai["error"]["code"], "rate_limit_exceeded");
    /// ```
    pub fn error_body(self, error: &Error) -> Bytes {
        match self {
            Self::AnthropicMessages => json_bytes(&anthropic_error(error)),
            Self::OpenAiChat | Self::OpenAiResponses | Self::Other => error.to_json(),
        }
    }

    /// One server-sent event saying `error` in this API's stream format, for a stream that
    /// fails after its head was sent: SDKs raise it as an error instead of presenting the
    /// text so far as a complete answer.
    ///
    /// | API | event |
    /// |---|---|
    /// | OpenAI chat (and others) | `data: {"error": {"message", "type", "code"}}` (the OpenAI SDKs raise `APIError`) |
    /// | Anthropic messages | `event: error` / `data: {"type": "error", "error": {"type": "api_error", "message"}}` |
    /// | OpenAI Responses | `event: error` / `data: {"type": "error", "code", "message", "param": null}` |
    ///
    /// ```
    /// use llm_tower_core::{ClientApi, Error, ErrorKind};
    ///
    /// let err = Error::new(ErrorKind::StreamIdleTimeout, "the upstream stream stalled");
    /// let openai = ClientApi::OpenAiChat.stream_error_event(&err);
    /// assert!(openai.starts_with(b"data: {\"error\":"));
    /// let anthropic = ClientApi::AnthropicMessages.stream_error_event(&err);
    /// assert!(anthropic.starts_with(b"event: error\ndata: {\"type\":\"error\""));
    /// assert!(anthropic.ends_with(b"\n\n"));
    /// ```
    pub fn stream_error_event(self, error: &Error) -> Bytes {
        let (event, data) = match self {
            Self::OpenAiChat | Self::Other => (None, error.to_json()),
            Self::AnthropicMessages => (Some("error"), json_bytes(&anthropic_error(error))),
            Self::OpenAiResponses => (
                Some("error"),
                json_bytes(&ResponsesError {
                    kind: "error",
                    code: error.kind().code(),
                    message: error.message(),
                    param: None,
                }),
            ),
        };
        let mut out = Vec::with_capacity(data.len() + 24);
        write_sse_event(&mut out, event, &data);
        out.into()
    }
}

/// Anthropic's error event, fields in the order its documentation shows them.
#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicDetail<'a>,
}

#[derive(Serialize)]
struct AnthropicDetail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

/// The error `type` Anthropic gives an answer of `status` (`rate_limit_error` for 429, ...):
/// what an Anthropic client's SDK expects whoever made the error.
///
/// ```
/// use http::StatusCode;
/// use llm_tower_core::anthropic_error_type;
///
/// assert_eq!(anthropic_error_type(StatusCode::TOO_MANY_REQUESTS), "rate_limit_error");
/// assert_eq!(anthropic_error_type(StatusCode::BAD_GATEWAY), "api_error");
/// ```
pub fn anthropic_error_type(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// Anthropic's error document for `error`.
fn anthropic_error(error: &Error) -> AnthropicError<'_> {
    AnthropicError {
        kind: "error",
        error: AnthropicDetail {
            kind: anthropic_error_type(error.status()),
            message: error.message(),
        },
    }
}

/// The Responses API's `error` event.
#[derive(Serialize)]
struct ResponsesError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    message: &'a str,
    param: Option<&'a str>,
}

fn json_bytes(value: &impl Serialize) -> Bytes {
    serde_json::to_vec(value)
        .expect("strings and options serialise")
        .into()
}
