//! [`Continuation`]: how an endpoint may carry on a stream another deployment broke off.

use serde::{Deserialize, Serialize};

/// How an endpoint continues a stream that another deployment of its model broke off after
/// bytes reached the client (`continuation: prefill`).
///
/// ```
/// use llm_tower_core::{Continuation, EndpointConfig};
///
/// let endpoint: EndpointConfig = serde_json::from_str(
///     r#"{"id": "vllm", "base_url": "http://10.0.0.5:8000/v1", "continuation": "prefill"}"#,
/// ).unwrap();
/// assert_eq!(endpoint.continuation, Some(Continuation::Prefill));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Continuation {
    /// The original request with one more message, the assistant's text so far, which the
    /// model continues rather than answers (Anthropic's assistant prefill; OpenAI-compatible
    /// servers such as vLLM with `continue_final_message`). Only the rest of the answer comes
    /// back, and goes on in the client's stream.
    Prefill,
}
