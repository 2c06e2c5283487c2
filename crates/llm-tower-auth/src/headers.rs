//! Which headers carry credentials, and how a request's are replaced.

use http::header::{PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use llm_tower_core::{Endpoint, Provider, header_names, percent_decode, remove_where};

header_names! {
    /// Inbound headers that carry credentials and are always removed (the header forms the
    /// OpenAI, Azure, Anthropic and Google SDKs send, and their common misspellings).
    pub static CREDENTIAL_HEADERS: [
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x_api_key",
        "api-key",
        "api_key",
        "apikey",
        "anthropic-api-key",
        "x-anthropic-api-key",
        "x-goog-api-key",
        "x-goog-iam-authorization-token",
        "ocp-apim-subscription-key",
        "x-auth-token",
        "x-amz-security-token",
        "x-api-token",
    ];
}

header_names! {
    /// Inbound headers that pick whose account a key bills or carry the client's session;
    /// removed like credentials (kept in bring-your-own-key mode, where the account is the
    /// client's).
    pub static ACCOUNT_HEADERS: [
        "cookie",
        "openai-organization",
        "openai-project",
        "x-goog-user-project",
    ];
}

/// Query parameters that carry credentials (compared after percent-decoding, ignoring case
/// and a trailing `[]` or `[...]`), always removed.
pub const CREDENTIAL_PARAMETERS: [&str; 8] = [
    "key",
    "api_key",
    "api-key",
    "apikey",
    "access_token",
    "token",
    "subscription-key",
    "client_secret",
];

/// The `anthropic-version` sent to Anthropic endpoints when the client sent none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub(crate) fn rewrite_headers(
    headers: &mut HeaderMap,
    endpoint: Option<&Endpoint>,
    keep_client: bool,
    user_agent: Option<&HeaderValue>,
) {
    if keep_client {
        headers.remove(PROXY_AUTHORIZATION);
    } else {
        let custom = match endpoint.map(Endpoint::provider) {
            Some(Provider::Custom { header, .. }) => Some(header),
            _ => None,
        };
        remove_where(headers, |name| {
            CREDENTIAL_HEADERS.contains(name)
                || ACCOUNT_HEADERS.contains(name)
                || custom == Some(name)
        });
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

/// Removes the query parameters that carry credentials ([`CREDENTIAL_PARAMETERS`], by
/// decoded name: `?KEY=`, `?%6bey=`, `?key[]=` too); every other parameter stays as it was,
/// byte for byte.
pub(crate) fn strip_key_query(uri: &mut Uri) {
    let Some(query) = uri.query() else { return };
    if !query.split('&').any(is_credential_parameter) {
        return;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !is_credential_parameter(pair))
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

/// Whether a `name=value` pair (or several, joined by `;` as some servers read them) carries
/// a credential. Names are compared as lenient servers read them: decoded, case ignored,
/// surrounding blanks and control characters dropped, and a `[...]` suffix cut.
fn is_credential_parameter(pair: &str) -> bool {
    pair.split(';').any(|part| {
        let raw = part.split_once('=').map_or(part, |(name, _)| name);
        let decoded = String::from_utf8_lossy(&percent_decode(raw)).to_ascii_lowercase();
        let name = decoded.split('[').next().unwrap_or_default();
        let name = name.trim_matches(|c: char| c.is_ascii_whitespace() || c.is_ascii_control());
        CREDENTIAL_PARAMETERS.contains(&name)
    })
}
