//! Whether a provider refused a request because its prompt does not fit the model's context
//! window: the one 400 that another model (a bigger one) can answer.
//!
//! Providers say it in their own words, in the error body of a 400:
//!
//! | provider | what it says |
//! |---|---|
//! | OpenAI, Azure OpenAI | `error.code: "context_length_exceeded"`; message "This model's maximum context length is …" |
//! | vLLM and other OpenAI-compatible servers | the same code, or the same message ("maximum context length") |
//! | Anthropic | `error.type: "invalid_request_error"`, message "prompt is too long: … tokens > … maximum" |
//! | Gemini | `error.status: "INVALID_ARGUMENT"`, message "The input token count (…) exceeds the maximum number of tokens allowed (…)" |
//!
//! A content filter's 400 (`content_policy_violation`) or any other is not an overflow.

use serde::Deserialize;

/// The messages that say the prompt does not fit, lower-cased.
const OVERFLOW_MESSAGES: [&str; 3] = [
    "maximum context length",
    "prompt is too long",
    "exceeds the maximum number of tokens",
];

/// The code OpenAI, Azure and vLLM give.
const OVERFLOW_CODE: &str = "context_length_exceeded";

/// The fields of an error body that can say so; everything else is ignored.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorObject>,
    /// vLLM's older shape: `{"object": "error", "message": …, "code": 400}`.
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: Option<serde_json::Value>,
    message: Option<String>,
}

/// Whether `body`, the body of a 400, says that the prompt is longer than the model's context
/// window.
///
/// ```
/// use llm_tower_core::is_context_overflow;
///
/// let openai = br#"{"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}"#;
/// let anthropic = br#"{"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 208310 tokens > 200000 maximum"}}"#;
/// let filtered = br#"{"error": {"message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error", "code": "content_policy_violation"}}"#;
/// assert!(is_context_overflow(openai) && is_context_overflow(anthropic));
/// assert!(!is_context_overflow(filtered) && !is_context_overflow(b"not json"));
/// ```
pub fn is_context_overflow(body: &[u8]) -> bool {
    let Ok(body) = serde_json::from_slice::<ErrorBody>(body) else {
        return false;
    };
    let (code, message) = match body.error {
        Some(error) => (error.code, error.message),
        None => (None, body.message),
    };
    if code.as_ref().and_then(serde_json::Value::as_str) == Some(OVERFLOW_CODE) {
        return true;
    }
    message.is_some_and(|message| {
        let message = message.to_lowercase();
        OVERFLOW_MESSAGES.iter().any(|m| message.contains(m))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies as the providers document them (and vLLM's two shapes).
    #[test]
    fn every_provider_s_words() {
        let overflows: [&[u8]; 4] = [
            br#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}"#,
            br#"{"error":{"message":"too long","type":"BadRequestError","param":null,"code":"context_length_exceeded"}}"#,
            br#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"Prompt is too long"}}"#,
        ];
        for body in overflows {
            assert!(
                is_context_overflow(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let others: [&[u8]; 4] = [
            br#"{"error":{"message":"Invalid 'messages': empty array.","type":"invalid_request_error","code":"empty_array"}}"#,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: field required"}}"#,
            br#"{"error":{"message":null,"code":null}}"#,
            b"",
        ];
        for body in others {
            assert!(
                !is_context_overflow(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
