//! What the gateway allows of web browsers: which `Host` names it answers (against DNS
//! rebinding), which `Origin`s may send it requests (against cross-site request forgery), and
//! the CORS answers it gives them.
//!
//! A browser is the one client that sends requests on someone else's behalf: any page the
//! operator opens can make it send requests to `http://127.0.0.1:8080`, with the credentials
//! the browser holds for that address (a Basic password given to `/ui`). So:
//!
//! - **Host.** A listener without client keys answers only the `Host` names it is known by:
//!   the loopback names, its own address and `allowed_hosts`. A page on `evil.example` whose
//!   name was rebound to `127.0.0.1` sends `Host: evil.example` and is refused (403).
//! - **Origin.** A request that names an `Origin` (browsers do for every cross-origin
//!   request, and for same-origin ones but `GET`/`HEAD`) is refused (403) unless the origin is
//!   the gateway's own (the same host and port as the request's) or listed in
//!   `cors.allow_origins`. SDKs and other programs send no `Origin` and are not affected.
//! - **CORS.** The upstream's `access-control-*` headers never reach the client (its policy
//!   is for its own pages, not the gateway's). The gateway answers preflights and adds
//!   `access-control-allow-origin` for the origins listed in `cors`, and only for them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use llm_tower::{ConfigError, Error, ErrorKind};
use serde::Deserialize;

/// `cors:` in the file: the web origins whose pages may call the gateway from a browser.
///
/// ```
/// use llm_tower_gateway::CorsSettings;
///
/// let cors: CorsSettings = serde_json::from_str(r#"{"allow_origins": ["https://app.example.com"]}"#).unwrap();
/// cors.validate().unwrap();
/// let bad: CorsSettings = serde_json::from_str(r#"{"allow_origins": ["*"]}"#).unwrap();
/// assert!(bad.validate().unwrap_err().to_string().starts_with("cors.allow_origins[0]"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins exactly as browsers send them: `scheme://host[:port]`, no path (a port that is
    /// the scheme's default is left out, as browsers do). No `*`: each origin is named.
    pub allow_origins: Vec<String>,
    /// How long a browser may keep a preflight's answer (default 10 min).
    #[serde(
        default = "default_max_age",
        with = "llm_tower::llm_tower_core::duration"
    )]
    pub max_age: Duration,
}

fn default_max_age() -> Duration {
    Duration::from_secs(600)
}

impl CorsSettings {
    /// Checks every origin.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the entry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, origin) in self.allow_origins.iter().enumerate() {
            if !is_origin(origin) {
                return Err(ConfigError::invalid(
                    format!("cors.allow_origins[{i}]"),
                    format!(
                        "`{origin}` is not an origin such as https://app.example.com \
                         (scheme, host and port only; `*` and `null` are not accepted)"
                    ),
                ));
            }
        }
        ConfigError::check_timeout("cors.max_age", Some(self.max_age))
    }
}

/// `scheme://host[:port]` with an http(s) scheme and nothing after the authority.
fn is_origin(text: &str) -> bool {
    let Some((scheme, authority)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && !authority.contains(['/', '?', '#', '@', '*'])
        && authority.parse::<http::uri::Authority>().is_ok()
}

/// Checks `allowed_hosts` entries: host names or IP addresses, without a scheme or port.
pub(crate) fn validate_hosts(hosts: &[String]) -> Result<(), ConfigError> {
    for (i, host) in hosts.iter().enumerate() {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let valid = !host.is_empty()
            && (bare.parse::<IpAddr>().is_ok()
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        if !valid {
            return Err(ConfigError::invalid(
                format!("allowed_hosts[{i}]"),
                format!("`{host}` is not a host name or IP address (no scheme, no port)"),
            ));
        }
    }
    Ok(())
}

/// One listener's rules for browsers, built from the configuration; `Clone` shares them.
#[derive(Clone, Default)]
pub(crate) struct BrowserGuard(Option<Arc<Rules>>);

struct Rules {
    /// `None`: any `Host` is answered (the listener has client keys, or is reached under
    /// names the configuration does not list).
    hosts: Option<Vec<String>>,
    /// Origins allowed besides the gateway's own, as header values to answer with.
    origins: Vec<HeaderValue>,
    max_age: HeaderValue,
}

impl fmt::Debug for BrowserGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules = self.0.as_deref();
        f.debug_struct("BrowserGuard")
            .field("hosts", &rules.and_then(|r| r.hosts.as_ref()))
            .field("origins", &rules.map_or(0, |r| r.origins.len()))
            .finish()
    }
}

/// What the guard says of a request.
pub(crate) enum Verdict {
    /// Serve it; an allowed cross-origin request's origin comes back for the response.
    Serve(Option<HeaderValue>),
    /// Answer this instead (a refusal, or a CORS preflight's answer).
    Answer(Response<Body>),
}

impl BrowserGuard {
    /// The rules of a listener on `listen`: `Host` is checked when the listener has no
    /// client keys and is on loopback, or whenever `allowed_hosts` lists names.
    pub(crate) fn new(
        listen: SocketAddr,
        client_keys: bool,
        allowed_hosts: &[String],
        cors: Option<&CorsSettings>,
    ) -> Self {
        let loopback = listen.ip().to_canonical().is_loopback();
        let hosts = (!allowed_hosts.is_empty() || (!client_keys && loopback)).then(|| {
            let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
                .into_iter()
                .map(str::to_owned)
                .chain(
                    allowed_hosts
                        .iter()
                        .map(|h| bare_host(h).to_ascii_lowercase()),
                )
                .collect();
            if !listen.ip().is_unspecified() {
                hosts.push(listen.ip().to_string());
            }
            hosts
        });
        if hosts.is_none() && !client_keys {
            tracing::warn!(
                %listen,
                "no client keys and no allowed_hosts: any Host name is answered on {listen}; \
                 list the names clients use in allowed_hosts to refuse DNS-rebinding pages"
            );
        }
        let origins: Vec<HeaderValue> = cors
            .map(|c| c.allow_origins.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        let max_age = cors.map_or(600, |c| c.max_age.as_secs());
        Self(Some(Arc::new(Rules {
            hosts,
            origins,
            max_age: HeaderValue::from(max_age),
        })))
    }

    /// Whether `request` may be served, and how.
    pub(crate) fn check<B>(&self, request: &Request<B>) -> Verdict {
        let Some(rules) = &self.0 else {
            return Verdict::Serve(None);
        };
        let host = request_host(request);
        if let (Some(allowed), Some(host)) = (&rules.hosts, host) {
            let name = bare_host(host);
            // No browser sends user information in `Host`; a name with it is none of ours.
            let allowed_name = !host.contains('@')
                && (allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) || is_loopback_ip(name));
            if !allowed_name {
                return Verdict::Answer(refusal(format!(
                    "this gateway does not answer to the host name `{}`; add it to allowed_hosts",
                    shortened(name)
                )));
            }
        }
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return Verdict::Serve(None);
        };
        let listed = rules.origins.iter().any(|o| o == origin);
        if !listed && !host.is_some_and(|host| same_origin(origin, host)) {
            return Verdict::Answer(refusal(format!(
                "requests from the web origin `{}` are not allowed; list it in cors.allow_origins",
                shortened(origin.to_str().unwrap_or("?"))
            )));
        }
        if !listed {
            return Verdict::Serve(None);
        }
        if request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Verdict::Answer(preflight(rules, origin, request.headers()));
        }
        Verdict::Serve(Some(origin.clone()))
    }

    /// The response head as the client gets it: the upstream's CORS headers removed, and
    /// the gateway's added for an allowed cross-origin request.
    pub(crate) fn finish(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
        strip_cors(headers);
        if let Some(origin) = origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.append(header::VARY, HeaderValue::from_static("origin"));
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED),
            );
        }
    }
}

/// What a page may read of an answer besides the CORS-safelisted headers.
const EXPOSED: &str = "x-request-id, x-llm-tower-endpoint, x-llm-tower-attempts, \
                       x-llm-tower-model, retry-after";

/// The host the request is addressed to: the target's authority (absolute form, HTTP/2's
/// `:authority`), else `Host`.
fn request_host<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
}

/// `name` of `name:port`, `[v6]:port` or `[v6]`, without the brackets. Every request's host is
/// read so: a plain look at its bytes, not `str`'s pattern searches.
fn bare_host(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    let bytes = host.as_bytes();
    match bytes.iter().rposition(|&b| b == b':') {
        // One colon: a port. More: an IPv6 address without brackets.
        Some(colon) if !bytes[..colon].contains(&b':') => &host[..colon],
        _ => host,
    }
}

fn is_loopback_ip(name: &str) -> bool {
    name.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Whether `origin` is the one a page served by this very host would have.
fn same_origin(origin: &HeaderValue, host: &str) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// Quoted text from a request, cut short: it can be as long as a header.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(100) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn refusal(message: String) -> Response<Body> {
    tracing::info!(target: "llm_tower::access", status = 403, "request refused: {message}");
    Error::new(ErrorKind::Forbidden, message).to_response()
}

/// The answer to a preflight from a listed origin; it is never forwarded.
fn preflight(rules: &Rules, origin: &HeaderValue, request: &HeaderMap) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    // The SDKs' own headers (`x-stainless-*`, `anthropic-version`, ...) vary by version:
    // whatever the page asks to send is allowed, as the key still has to be valid.
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, rules.max_age.clone());
    headers.insert(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    response
}

/// Removes every `access-control-*` header. One pass over the names, which are few; the
/// removal only when one is there.
fn strip_cors(headers: &mut HeaderMap) {
    const PREFIX: &str = "access-control-";
    if !headers.keys().any(|name| name.as_str().starts_with(PREFIX)) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_compared_without_their_port_or_brackets() {
        assert_eq!(bare_host("localhost:8080"), "localhost");
        assert_eq!(bare_host("[::1]:8080"), "::1");
        assert_eq!(bare_host("[::1]"), "::1");
        assert_eq!(bare_host("::1"), "::1");
        assert_eq!(bare_host("example.com"), "example.com");
        assert_eq!(bare_host("example.com:"), "example.com");
        assert_eq!(bare_host("::1:8080"), "::1:8080");
        assert_eq!(bare_host(""), "");
        assert_eq!(bare_host(":80"), "");
        assert!(is_loopback_ip("127.0.0.2"));
        assert!(is_loopback_ip("::ffff:127.0.0.1"));
        assert!(!is_loopback_ip("localhost.evil.example"));
    }

    #[test]
    fn origins_and_hosts_are_checked_at_load() {
        for good in [
            "https://app.example.com",
            "http://127.0.0.1:3000",
            "http://[::1]:80",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://app.example.com/",
            "ftp://app.example.com",
            "https://user@app.example.com",
            "https://*.example.com",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
        assert!(validate_hosts(&["gw.internal".into(), "10.0.0.5".into(), "[::1]".into()]).is_ok());
        for bad in ["", "http://gw", "gw:8080", "gw/x"] {
            let err = validate_hosts(&["ok".into(), bad.into()]).unwrap_err();
            assert!(err.to_string().starts_with("allowed_hosts[1]"), "{err}");
        }
    }
}
