//! Which headers carry credentials, and how a request's are replaced.

use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use llm_tower_core::{Endpoint, Provider};

/// Inbound headers that carry credentials and are always removed.
pub const CREDENTIAL_HEADERS: [HeaderName; 5] = [
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-goog-api-key"),
];

/// Inbound headers that pick whose account a key bills or carry the client's session; removed
/// like credentials (kept in bring-your-own-key mode, where the account is the client's).
pub const ACCOUNT_HEADERS: [HeaderName; 3] = [
    COOKIE,
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
];

/// The `anthropic-version` sent to Anthropic endpoints when the client sent none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub(crate) fn rewrite_headers(
    headers: &mut HeaderMap,
    endpoint: Option<&Endpoint>,
    keep_client: bool,
    user_agent: Option<&HeaderValue>,
) {
    headers.remove(PROXY_AUTHORIZATION);
    if !keep_client {
        for name in CREDENTIAL_HEADERS.iter().chain(&ACCOUNT_HEADERS) {
            headers.remove(name);
        }
        if let Some(Provider::Custom { header, .. }) = endpoint.map(Endpoint::provider) {
            headers.remove(header);
        }
    }
    if let Some(endpoint) = endpoint {
        if let Some((name, value)) = endpoint.credential() {
            headers.insert(name.clone(), value.clone());
        }
        if endpoint.provider() == &Provider::Anthropic {
            headers
                .entry(HeaderName::from_static("anthropic-version"))
                .or_insert(HeaderValue::from_static(ANTHROPIC_VERSION));
        }
    }
    if let Some(user_agent) = user_agent {
        headers.insert(USER_AGENT, user_agent.clone());
    }
}

/// Removes `key=` query parameters (Gemini-style credentials in the URL).
pub(crate) fn strip_key_query(uri: &mut Uri) {
    let Some(query) = uri.query() else { return };
    if !query
        .split('&')
        .any(|pair| pair == "key" || pair.starts_with("key="))
    {
        return;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !(pair.is_empty() || *pair == "key" || pair.starts_with("key=")))
        .collect();
    let mut path_and_query = uri.path().to_owned();
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    *uri = Uri::from_parts(parts).unwrap_or_default();
}
