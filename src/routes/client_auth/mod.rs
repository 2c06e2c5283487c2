//! Client authentication: which clients may spend the operator's provider keys. This file
//! holds the keys and how a request's key is checked; [`layer`] puts the check on the request
//! path.

mod layer;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderName, Method, Request, Response};
use llm_tower::limits::{Limits, LimitsTable};
use llm_tower::{Caller, ConfigError, Error, ErrorKind, Secret};
use serde::Deserialize;
use subtle::ConstantTimeEq;

pub(crate) use layer::{ClientKeyLayer, RequireClientKey};

/// One client key: a name for logs and metrics, and the key itself (usually `${ENV}`).
///
/// ```
/// use llm_tower_gateway::ClientKey;
///
/// let key: ClientKey = serde_json::from_str(
///     r#"{"name": "team-a", "key": "gw-team-a-0123456789abcdef", "limits": {"rpm": 600}}"#,
/// ).unwrap();
/// assert_eq!(key.name, "team-a");
/// assert_eq!(key.limits.as_ref().unwrap().rpm, Some(600));
/// assert!(!format!("{key:?}").contains("gw-team-a"));
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKey {
    /// Shown in the access log and as the `client` metrics label.
    pub name: String,
    /// What the client sends. Never logged, shown or echoed.
    pub key: Secret,
    /// What the key may do (default: `client_auth.default_limits`, else anything).
    #[serde(default)]
    pub limits: Option<Limits>,
}

impl ClientKey {
    /// A key `key` named `name`, held to the default limits.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: Secret::new(key.into()),
            limits: None,
        }
    }
}

/// `client_auth:` in the file: the keys clients must present, in `Authorization: Bearer`,
/// `x-api-key` or `api-key` (what the OpenAI, Anthropic and Azure SDKs send), or as the
/// password of `Authorization: Basic` (what a browser sends for `/ui` after asking; the
/// user name is ignored).
///
/// ```
/// use llm_tower_gateway::{ClientAuth, ClientKey};
///
/// let auth = ClientAuth {
///     keys: vec![ClientKey::new("team-a", "gw-key-team-a-0123456789")],
///     default_limits: None,
/// };
/// auth.validate().unwrap();
/// assert!(!format!("{auth:?}").contains("gw-key"));
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// The accepted keys (at least one).
    pub keys: Vec<ClientKey>,
    /// The limits of keys without their own (default: none).
    #[serde(default)]
    pub default_limits: Option<Limits>,
}

/// Shorter keys can be guessed.
const MIN_KEY_LEN: usize = 16;

impl ClientAuth {
    /// Checks the keys: at least one; names valid and unique; keys long enough, printable
    /// and unique.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field (never the key).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.keys.is_empty() {
            return Err(ConfigError::invalid(
                "client_auth.keys",
                "at least one key is required",
            ));
        }
        for (i, entry) in self.keys.iter().enumerate() {
            let field = |name: &str| format!("client_auth.keys[{i}].{name}");
            ConfigError::check_name(field("name"), &entry.name)?;
            let key = entry.key.expose_secret();
            if key.len() < MIN_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::invalid(
                    field("key"),
                    format!("must be at least {MIN_KEY_LEN} printable characters without spaces"),
                ));
            }
            let earlier = &self.keys[..i];
            if earlier.iter().any(|e| e.name == entry.name) {
                return Err(ConfigError::invalid(field("name"), "is used twice"));
            }
            if earlier.iter().any(|e| e.key == entry.key) {
                return Err(ConfigError::invalid(field("key"), "is used twice"));
            }
            if let Some(limits) = &entry.limits {
                limits.validate(&field("limits"))?;
            }
        }
        if let Some(limits) = &self.default_limits {
            limits.validate("client_auth.default_limits")?;
        }
        Ok(())
    }

    /// Every key's limits, by its name.
    pub fn limits(&self) -> LimitsTable {
        LimitsTable::new(
            self.keys
                .iter()
                .filter_map(|entry| Some((entry.name.as_str().into(), entry.limits.clone()?))),
            self.default_limits.clone(),
        )
    }

    /// Whether some key is limited in tokens or spend (which are settled from the usage of
    /// each answer).
    pub(crate) fn limits_tokens_or_spend(&self) -> bool {
        self.keys
            .iter()
            .filter_map(|entry| entry.limits.as_ref())
            .chain(&self.default_limits)
            .any(|limits| limits.tpm.is_some() || limits.budget.is_some())
    }
}

/// Fewer different characters than this, and a key is a pattern rather than a random string
/// (`aaaaaaaaaaaaaaaa`, `passwordpassword`); a random 16-character key has about 14.
const MIN_DISTINCT_CHARACTERS: usize = 10;

impl ClientAuth {
    /// The names of keys that look easy to guess: few different characters. They are
    /// accepted (a key is the operator's to choose), and the gateway warns about them.
    ///
    /// ```
    /// use llm_tower_gateway::{ClientAuth, ClientKey};
    ///
    /// let auth = ClientAuth {
    ///     keys: vec![ClientKey::new("weak", "aaaaaaaaaaaaaaaa"), ClientKey::new("strong", "gw-7Hq2xLp9Vc4Rt8Zm")],
    ///     default_limits: None,
    /// };
    /// assert_eq!(auth.weak_keys().collect::<Vec<_>>(), ["weak"]);
    /// ```
    pub fn weak_keys(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .filter(|entry| {
                let mut seen = [false; 256];
                let key = entry.key.expose_secret().as_bytes();
                key.iter()
                    .filter(|&&b| !std::mem::replace(&mut seen[usize::from(b)], true))
                    .count()
                    < MIN_DISTINCT_CHARACTERS
            })
            .map(|entry| entry.name.as_str())
    }
}

/// The request validator: the presented key is compared in constant time with every
/// configured key; a match puts the key's name on the request as [`Caller`].
#[derive(Clone)]
pub(crate) struct ClientKeys {
    keys: Arc<[(Caller, Box<[u8]>)]>,
    /// `llm_tower_requests_total{client="-",status="401"}`, registered once.
    refused: metrics::Counter,
}

impl fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKeys")
            .field(
                "names",
                &self.keys.iter().map(|(c, _)| c.name()).collect::<Vec<_>>(),
            )
            // The keys themselves are never shown.
            .finish_non_exhaustive()
    }
}

/// The headers a client key may come in, in order of preference.
static KEY_HEADERS: [HeaderName; 3] = [
    AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
];

impl ClientKeys {
    pub(crate) fn new(auth: &ClientAuth) -> Self {
        Self {
            keys: auth
                .keys
                .iter()
                .map(|k| {
                    let key = k.key.expose_secret().as_bytes().into();
                    (Caller::new(k.name.as_str()), key)
                })
                .collect(),
            refused: metrics::counter!(
                "llm_tower_requests_total",
                "client" => "-",
                "status" => "401"
            ),
        }
    }

    fn caller(&self, presented: &[u8]) -> Option<&Caller> {
        // Every key is compared, whichever matches, so the time taken says nothing about which.
        let mut found = None;
        for (caller, key) in self.keys.iter() {
            if bool::from(key.as_ref().ct_eq(presented)) {
                found = Some(caller);
            }
        }
        found
    }
}

/// The key a request presents, if any.
fn presented<B>(request: &Request<B>) -> Option<Presented<'_>> {
    KEY_HEADERS.iter().find_map(|name| {
        let value = request.headers().get(name)?.as_bytes();
        if name != AUTHORIZATION {
            return Some(Presented::Plain(value.trim_ascii()));
        }
        // The scheme is case-insensitive (RFC 9110, 11.1).
        let (scheme, token) = value.split_at_checked(value.iter().position(|&b| b == b' ')?)?;
        let token = token.trim_ascii();
        if scheme.eq_ignore_ascii_case(b"bearer") {
            Some(Presented::Plain(token))
        } else if scheme.eq_ignore_ascii_case(b"basic") {
            Some(Presented::Basic(basic_password(token)?))
        } else {
            None
        }
    })
}

/// A key as sent: as is, or decoded from `Authorization: Basic`.
enum Presented<'a> {
    Plain(&'a [u8]),
    Basic(Vec<u8>),
}

impl Presented<'_> {
    fn key(&self) -> &[u8] {
        match self {
            Self::Plain(key) => key,
            Self::Basic(key) => key,
        }
    }

    /// Whether this key may be used for `request`. A browser sends the Basic password it
    /// was given with every request to the gateway's address, whichever page makes it send
    /// one: it counts only for reading the operator's pages (`GET /ui`, `/upstreams`,
    /// `/metrics`, which Prometheus may scrape with Basic), never for spending the
    /// providers' keys or for anything that changes state.
    fn serves<B>(&self, request: &Request<B>) -> bool {
        match self {
            Self::Plain(_) => true,
            Self::Basic(_) => {
                matches!(*request.method(), Method::GET | Method::HEAD)
                    && BASIC_PATHS.contains(&request.uri().path())
            }
        }
    }
}

/// The pages a Basic password opens.
const BASIC_PATHS: [&str; 4] = ["/ui", "/upstreams", "/limits", "/metrics"];

/// The password of a Basic credential: base64 of `user:password` (RFC 7617).
fn basic_password(token: &[u8]) -> Option<Vec<u8>> {
    let decoded = base64_decode(token)?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

/// Standard base64 with padding; `None` for anything else.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (i, chunk) in text.chunks(4).enumerate() {
        let last = i == text.len() / 4 - 1;
        let padding = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut bits = 0u32;
        for &c in &chunk[..4 - padding] {
            bits = (bits << 6) | value(c)?;
        }
        bits <<= 6 * padding as u32;
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - padding]);
    }
    Some(out)
}

impl ClientKeys {
    /// Lets `request` through with its [`Caller`] when it presents one of the keys; otherwise
    /// the 401 to answer it with (logged and counted).
    // The refusal is the response itself, and rare: boxing it would only move it.
    #[allow(clippy::result_large_err)]
    pub(crate) fn check<B>(&self, request: &mut Request<B>) -> Result<(), Response<Bytes>> {
        let caller = presented(request)
            .filter(|key| key.serves(request))
            .and_then(|key| self.caller(key.key()))
            .cloned();
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
            return Ok(());
        }
        // Refusals are on the access log and in the metrics: key guessing leaves a trace.
        tracing::info!(
            target: "llm_tower::access",
            status = 401,
            client = "-",
            "request refused: no valid client key"
        );
        self.refused.increment(1);
        let message = match presented(request) {
            None => {
                "this gateway needs a key: send it as `Authorization: Bearer <key>`, `x-api-key` \
                 or `api-key` (or, from a browser, as the password it asks for)"
            }
            Some(key) if !key.serves(request) => {
                "a key sent as a Basic password opens only `GET /ui`, `/upstreams` and \
                 `/metrics`: send it as `Authorization: Bearer <key>`, `x-api-key` or `api-key`"
            }
            Some(_) => "the key sent is not one of this gateway's keys",
        };
        let mut response: Response<Bytes> =
            Error::new(ErrorKind::Unauthorized, message).to_response();
        // Bearer for the SDKs; Basic so that a browser opening `/ui` asks for the key.
        let challenges = response.headers_mut();
        challenges.insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        challenges.append(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(r#"Basic realm="llm-tower gateway", charset="UTF-8""#),
        );
        Err(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(header: &str, value: &str) -> Option<Vec<u8>> {
        let request = Request::builder().header(header, value).body(()).unwrap();
        presented(&request).map(|key| key.key().to_vec())
    }

    #[test]
    fn keys_come_as_bearer_as_headers_of_their_own_or_as_a_basic_password() {
        assert_eq!(key_of("authorization", "Bearer k1"), Some(b"k1".to_vec()));
        assert_eq!(
            key_of("authorization", "bearer   k1 "),
            Some(b"k1".to_vec())
        );
        assert_eq!(key_of("x-api-key", " k2"), Some(b"k2".to_vec()));
        // "ops:k3" and ":k:4" (a password may hold colons; the user name may be empty).
        assert_eq!(
            key_of("authorization", "Basic b3BzOmsz"),
            Some(b"k3".to_vec())
        );
        assert_eq!(
            key_of("authorization", "basic Oms6NA=="),
            Some(b"k:4".to_vec())
        );
        for refused in [
            "Basic",
            "Basic b3BzOmsz=",
            "Basic !!!!",
            "Basic azM=",
            "Digest x",
            "Bearer",
        ] {
            assert_eq!(key_of("authorization", refused), None, "{refused}");
        }
    }

    #[test]
    fn base64_is_decoded_with_its_padding_only_at_the_end() {
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert_eq!(base64_decode(b"YQ==").unwrap(), b"a");
        assert_eq!(base64_decode(b"YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode(b"YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode(b"YWJjZA==").unwrap(), b"abcd");
        for bad in [&b"YQ=="[..3], b"YQ==YWJj", b"Y===", b"YW J"] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }
}
