//! Providers and how each one reads its key.

use http::HeaderName;

/// The provider an endpoint speaks to; decides how its key is sent.
///
/// ```
/// use llm_tower_core::Provider;
///
/// assert_eq!(Provider::Azure.credential_header(), "api-key");
/// assert_eq!(Provider::Anthropic.name(), "anthropic");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI and every OpenAI-compatible server (vLLM, Ollama, ...): `authorization: Bearer <key>`.
    OpenAi,
    /// Azure OpenAI: `api-key: <key>`.
    Azure,
    /// Anthropic: `x-api-key: <key>` (the auth layer also adds `anthropic-version`).
    Anthropic,
    /// Google Gemini: `x-goog-api-key: <key>` (never a `?key=` query parameter).
    Gemini,
    /// Any other scheme: `header: <prefix><key>`.
    Custom {
        /// The header that carries the key.
        header: HeaderName,
        /// Text put before the key, such as `"Token "`.
        prefix: Option<String>,
    },
}

impl Provider {
    /// The header this provider reads its key from.
    pub fn credential_header(&self) -> HeaderName {
        match self {
            Self::OpenAi => http::header::AUTHORIZATION,
            Self::Azure => HeaderName::from_static("api-key"),
            Self::Anthropic => HeaderName::from_static("x-api-key"),
            Self::Gemini => HeaderName::from_static("x-goog-api-key"),
            Self::Custom { header, .. } => header.clone(),
        }
    }

    pub(crate) fn credential_prefix(&self) -> &str {
        match self {
            Self::OpenAi => "Bearer ",
            Self::Custom {
                prefix: Some(prefix),
                ..
            } => prefix,
            _ => "",
        }
    }

    /// A short lowercase name (`openai`, `azure`, `anthropic`, `gemini`, `custom`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Custom { .. } => "custom",
        }
    }
}
