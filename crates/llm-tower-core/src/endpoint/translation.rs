//! [`Translation`]: what an endpoint says about requests translated into its API.

/// How requests translated into an endpoint's API (an OpenAI-format client on an Anthropic
/// endpoint, ...) fill in what their client left out, and which fields the endpoint cannot
/// honour are dropped instead of refused. In a configuration file, the endpoint's
/// `default_max_tokens` and `drop_unsupported`.
///
/// ```
/// use llm_tower_core::EndpointConfig;
///
/// let endpoint: EndpointConfig = serde_json::from_str(
///     r#"{"id": "claude", "base_url": "https://api.anthropic.com/v1", "provider": "anthropic",
///         "default_max_tokens": 1024, "drop_unsupported": ["logprobs", "seed"]}"#,
/// ).unwrap();
/// let endpoint = endpoint.build().unwrap();
/// assert_eq!(endpoint.translation().default_max_tokens, 1024);
/// assert!(endpoint.translation().drops("seed") && !endpoint.translation().drops("n"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The `max_tokens` a translated request gets when its client gave none (Anthropic
    /// requires one). Default 4096.
    pub default_max_tokens: u32,
    /// Fields of the client's request this endpoint cannot honour that are dropped without a
    /// word rather than refused with a 400 naming them. Default none.
    pub drop_unsupported: Vec<String>,
}

impl Translation {
    /// The default `default_max_tokens`.
    pub const DEFAULT_MAX_TOKENS: u32 = 4096;

    /// Whether `field` is dropped when this endpoint cannot honour it.
    pub fn drops(&self, field: &str) -> bool {
        self.drop_unsupported.iter().any(|f| f == field)
    }
}

impl Default for Translation {
    fn default() -> Self {
        Self {
            default_max_tokens: Self::DEFAULT_MAX_TOKENS,
            drop_unsupported: Vec::new(),
        }
    }
}
