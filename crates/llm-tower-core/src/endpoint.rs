//! The endpoint model: identity, address, provider, credential and per-endpoint policy.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Uri};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::policy::RetryPolicy;

/// Identifier of an endpoint, unique within a configuration. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EndpointId(Arc<str>);

impl EndpointId {
    /// Creates an id from any string.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for EndpointId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for EndpointId {
    fn from(id: &str) -> Self {
        Self(id.into())
    }
}

impl From<String> for EndpointId {
    fn from(id: String) -> Self {
        Self(id.into())
    }
}

/// The provider an endpoint speaks to; decides how its key is sent.
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

    fn credential_prefix(&self) -> &str {
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

/// An API key. It is validated once (non-empty, printable ASCII, no control characters) and
/// never revealed by `Debug`, `Display` or serialisation, which all print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(HeaderValue);

impl ApiKey {
    /// Validates a key.
    ///
    /// # Errors
    ///
    /// A message (which never contains the key) when the key is empty, has surrounding
    /// whitespace, or contains a control or non-ASCII character.
    pub fn new(key: &str) -> Result<Self, &'static str> {
        if key.is_empty() {
            return Err("the key is empty");
        }
        if key.bytes().any(|b| b.is_ascii_control()) {
            return Err("the key contains a control character (such as CR, LF or TAB)");
        }
        if !key.is_ascii() {
            return Err("the key contains a non-ASCII character");
        }
        if key.trim() != key {
            return Err("the key has leading or trailing whitespace");
        }
        let mut value =
            HeaderValue::from_str(key).map_err(|_| "the key is not a valid header value")?;
        value.set_sensitive(true);
        Ok(Self(value))
    }

    /// The secret bytes. Handle with care: never log them.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for ApiKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// A parsed endpoint base URL: scheme, authority and a path prefix without trailing slash.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    path: String,
}

impl BaseUrl {
    /// Parses an absolute `http` or `https` URL without query or fragment.
    ///
    /// # Errors
    ///
    /// A message naming what is wrong with the URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("`{url}` has no scheme (expected http:// or https://)"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!("`{url}` must use http or https, not {scheme}"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("`{url}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{url}` must not carry user information; use api_key for credentials"
            ));
        }
        if uri.query().is_some() {
            return Err(format!("`{url}` must not have a query string"));
        }
        let path = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            scheme,
            authority,
            path,
        })
    }

    /// The scheme (`http` or `https`).
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Host and port.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The path prefix, without trailing slash (empty for the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `base + path_and_query` of `uri`. Only the path and query of `uri` are used: its scheme
    /// and authority (absolute-form requests) never change the destination, and a path with
    /// `.` or `..` segments (also percent-encoded, or behind an encoded slash or a backslash)
    /// is refused, so a client cannot climb out of the base URL's path prefix.
    ///
    /// # Errors
    ///
    /// A message for a path with dot segments, or one that does not make a valid URI.
    pub fn join(&self, uri: &Uri) -> Result<Uri, String> {
        if has_dot_segment(uri.path()) {
            return Err(format!(
                "the request path `{}` has `.` or `..` segments",
                uri.path()
            ));
        }
        let tail = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let path_and_query = if self.path.is_empty() {
            PathAndQuery::try_from(tail)
        } else {
            let mut joined = String::with_capacity(self.path.len() + tail.len());
            joined.push_str(&self.path);
            joined.push_str(tail);
            PathAndQuery::try_from(joined)
        }
        .map_err(|e| e.to_string())?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// Whether a path has a `.` or `..` segment once `%2e`, `%2f`, `%5c` and `\` are decoded the
/// way lenient servers do.
fn has_dot_segment(path: &str) -> bool {
    if !path.contains('.') && !path.contains('%') {
        return false;
    }
    let decoded = path
        .to_ascii_lowercase()
        .replace("%2e", ".")
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace('\\', "/");
    decoded
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// One upstream: where it is, how to authenticate, and how to treat its failures.
///
/// Build it with [`Endpoint::builder`] or from configuration
/// ([`Config::build_endpoints`](crate::Config::build_endpoints)). Its credential header is
/// built once here, marked sensitive, and only cloned per request.
#[derive(Clone, Debug)]
pub struct Endpoint {
    id: EndpointId,
    base_url: BaseUrl,
    provider: Provider,
    api_key: Option<ApiKey>,
    credential: Option<(HeaderName, HeaderValue)>,
    priority: u32,
    weight: u32,
    fallback: bool,
    health_check_interval: Duration,
    timeout: Option<Duration>,
    first_byte_timeout: Option<Duration>,
    retry_policy: RetryPolicy,
}

impl Endpoint {
    /// Default cooldown after an ejection (pixiu's `health_check_interval`): 5 s.
    pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
    /// Default per-try timeout until the response head: 600 s (what OpenAI's SDKs use; long
    /// non-streaming completions send their head only when done).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

    /// Starts building an endpoint. Defaults: provider `OpenAi`, no key, priority 0, weight 1,
    /// fallback on, 5 s cooldown, 600 s per-try timeout, no first-byte timeout,
    /// `ExponentialBackoff` retries with pixiu's defaults.
    pub fn builder(id: impl Into<EndpointId>, base_url: impl Into<String>) -> EndpointBuilder {
        EndpointBuilder {
            id: id.into(),
            base_url: base_url.into(),
            provider: Provider::OpenAi,
            api_key: None,
            priority: 0,
            weight: 1,
            fallback: true,
            health_check_interval: Self::DEFAULT_HEALTH_CHECK_INTERVAL,
            timeout: Some(Self::DEFAULT_TIMEOUT),
            first_byte_timeout: None,
            retry_policy: RetryPolicy::default(),
        }
    }

    /// The endpoint's id.
    pub fn id(&self) -> &EndpointId {
        &self.id
    }
    /// The base URL requests are sent under.
    pub fn base_url(&self) -> &BaseUrl {
        &self.base_url
    }
    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }
    /// The API key, if any.
    pub fn api_key(&self) -> Option<&ApiKey> {
        self.api_key.as_ref()
    }
    /// The prebuilt credential header (name and sensitive value), if the endpoint has a key.
    pub fn credential(&self) -> Option<(&HeaderName, &HeaderValue)> {
        self.credential.as_ref().map(|(n, v)| (n, v))
    }
    /// Lower is tried first.
    pub fn priority(&self) -> u32 {
        self.priority
    }
    /// Relative share for the weighted strategy (at least 1).
    pub fn weight(&self) -> u32 {
        self.weight
    }
    /// Whether a failure here may fall back to another endpoint.
    pub fn fallback(&self) -> bool {
        self.fallback
    }
    /// Base cooldown after an ejection.
    pub fn health_check_interval(&self) -> Duration {
        self.health_check_interval
    }
    /// Per-try timeout until the response head.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// Optional wait for the first body byte of a 2xx response.
    pub fn first_byte_timeout(&self) -> Option<Duration> {
        self.first_byte_timeout
    }
    /// The retry policy for this endpoint.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry_policy
    }
}

/// Builder for [`Endpoint`]; see [`Endpoint::builder`].
#[derive(Clone, Debug)]
pub struct EndpointBuilder {
    id: EndpointId,
    base_url: String,
    provider: Provider,
    api_key: Option<ApiKey>,
    priority: u32,
    weight: u32,
    fallback: bool,
    health_check_interval: Duration,
    timeout: Option<Duration>,
    first_byte_timeout: Option<Duration>,
    retry_policy: RetryPolicy,
}

impl EndpointBuilder {
    /// Sets the provider.
    #[must_use]
    pub fn provider(mut self, provider: Provider) -> Self {
        self.provider = provider;
        self
    }
    /// Sets the API key.
    #[must_use]
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }
    /// Sets the priority (lower first).
    #[must_use]
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }
    /// Sets the weight (must be at least 1).
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
    /// Allows or forbids falling back to another endpoint after this one failed.
    #[must_use]
    pub fn fallback(mut self, fallback: bool) -> Self {
        self.fallback = fallback;
        self
    }
    /// Sets the base cooldown after an ejection.
    #[must_use]
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval = interval;
        self
    }
    /// Sets (or removes) the per-try timeout until the response head.
    #[must_use]
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets (or removes) the first-byte timeout for 2xx responses.
    #[must_use]
    pub fn first_byte_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.first_byte_timeout = timeout;
        self
    }
    /// Sets the retry policy.
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Validates and builds the endpoint.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field: empty id, bad base URL, zero weight, a
    /// custom header that is not a valid header name, an invalid retry policy.
    pub fn build(self) -> Result<Endpoint, ConfigError> {
        let field = |name: &str| format!("endpoint `{}`: {name}", self.id);
        if self.id.as_str().trim().is_empty() {
            return Err(ConfigError::invalid("id", "must not be empty"));
        }
        let base_url = BaseUrl::parse(&self.base_url)
            .map_err(|msg| ConfigError::invalid(field("base_url"), msg))?;
        if self.weight == 0 {
            return Err(ConfigError::invalid(field("weight"), "must be at least 1"));
        }
        if self.health_check_interval.is_zero()
            || self.health_check_interval > crate::config::MAX_COOLDOWN_LIMIT
        {
            return Err(ConfigError::invalid(
                field("health_check_interval"),
                "must be greater than zero and at most 24h",
            ));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::invalid(
                field("timeout"),
                "must be greater than zero",
            ));
        }
        if self.first_byte_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::invalid(
                field("first_byte_timeout"),
                "must be greater than zero",
            ));
        }
        self.retry_policy
            .validate()
            .map_err(|msg| ConfigError::invalid(field("retry_policy"), msg))?;
        let credential = match &self.api_key {
            None => None,
            Some(key) => {
                let prefix = self.provider.credential_prefix();
                let mut bytes = Vec::with_capacity(prefix.len() + key.expose_secret().len());
                bytes.extend_from_slice(prefix.as_bytes());
                bytes.extend_from_slice(key.expose_secret());
                let mut value = HeaderValue::from_bytes(&bytes).map_err(|_| {
                    ConfigError::invalid(field("auth_prefix"), "is not a valid header value")
                })?;
                value.set_sensitive(true);
                Some((self.provider.credential_header(), value))
            }
        };
        Ok(Endpoint {
            id: self.id,
            base_url,
            provider: self.provider,
            api_key: self.api_key,
            credential,
            priority: self.priority,
            weight: self.weight,
            fallback: self.fallback,
            health_check_interval: self.health_check_interval,
            timeout: self.timeout,
            first_byte_timeout: self.first_byte_timeout,
            retry_policy: self.retry_policy,
        })
    }
}

/// Request extension naming the endpoint a request is sent to. The balancer inserts it; the
/// retry and auth layers read it.
#[derive(Clone, Debug)]
pub struct Selected(pub Arc<Endpoint>);

impl Deref for Selected {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_ignores_client_scheme_and_authority() {
        let base = BaseUrl::parse("https://api.openai.com/v1/").unwrap();
        let uri: Uri = "http://evil.example/chat/completions?x=1".parse().unwrap();
        assert_eq!(
            base.join(&uri).unwrap().to_string(),
            "https://api.openai.com/v1/chat/completions?x=1"
        );
        let uri: Uri = "//evil.example/x"
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        assert_eq!(
            base.join(&uri).unwrap().authority().unwrap(),
            "api.openai.com"
        );
    }

    #[test]
    fn dot_segments_cannot_climb_out_of_the_base_path() {
        let base = BaseUrl::parse("https://res.example/openai/deployments/small").unwrap();
        for path in [
            "/../large/chat/completions",
            "/./x",
            "/a/..",
            "/%2e%2e/large",
            "/%2E%2e/large",
            "/.%2e/large",
            "/a%2f..%2flarge",
            "/a%5c..%5clarge",
        ] {
            let uri: Uri = path.parse().unwrap();
            assert!(base.join(&uri).unwrap_err().contains("segments"), "{path}");
        }
        for path in [
            "/chat/completions",
            "/v1.2/x.json",
            "/a..b/c",
            "/...",
            "/%41",
        ] {
            let uri: Uri = path.parse().unwrap();
            assert!(base.join(&uri).is_ok(), "{path}");
        }
    }

    #[test]
    fn base_url_rejections() {
        assert!(
            BaseUrl::parse("ftp://x/")
                .unwrap_err()
                .contains("http or https")
        );
        assert!(
            BaseUrl::parse("/relative")
                .unwrap_err()
                .contains("no scheme")
        );
        assert!(
            BaseUrl::parse("https://u:p@host/")
                .unwrap_err()
                .contains("user information")
        );
        assert!(
            BaseUrl::parse("https://host/?a=1")
                .unwrap_err()
                .contains("query")
        );
        assert!(BaseUrl::parse("not a url").is_err());
    }

    #[test]
    fn credential_is_prebuilt_and_sensitive() {
        let ep = Endpoint::builder("a", "https://h/v1")
            .api_key(ApiKey::new("sk-secret").unwrap())
            .build()
            .unwrap();
        let (name, value) = ep.credential().unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer sk-secret");
        assert!(value.is_sensitive());
        let dbg = format!("{ep:?} {:?} {}", ep.api_key(), ep.api_key().unwrap());
        assert!(!dbg.contains("sk-secret"), "{dbg}");
    }

    #[test]
    fn api_key_validation() {
        assert!(ApiKey::new("").is_err());
        assert!(ApiKey::new("abc\r\nx-evil: 1").is_err());
        assert!(ApiKey::new("abc\n").is_err());
        assert!(ApiKey::new("ab\tc").is_err());
        assert!(ApiKey::new(" abc").is_err());
        assert!(ApiKey::new("abcé").is_err());
        assert!(ApiKey::new("sk-proj_AZaz09-._~+/=").is_ok());
    }
}
