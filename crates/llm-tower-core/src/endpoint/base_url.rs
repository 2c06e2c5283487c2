//! Base URLs and how request targets are joined to them.

use std::fmt;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};

use super::path_check::check_path;

/// A parsed endpoint base URL: scheme, authority and a path prefix without trailing slash.
///
/// ```
/// use http::Uri;
/// use llm_tower_core::BaseUrl;
///
/// let base = BaseUrl::parse("https://api.openai.com/v1/").unwrap();
/// let target: Uri = "/chat/completions?x=1".parse().unwrap();
/// assert_eq!(base.join(&target).unwrap(), "https://api.openai.com/v1/chat/completions?x=1");
/// let escape: Uri = "/../admin".parse().unwrap();
/// assert!(base.join(&escape).is_err());
/// ```
#[derive(Clone, Eq)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    path: String,
    /// The `host` header of requests to it, made once (see [`host`](Self::host)).
    host: HeaderValue,
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
        if !port_is_valid(&authority) {
            return Err(format!(
                "`{url}` has a port that is not a number from 1 to 65535"
            ));
        }
        if uri.query().is_some() {
            return Err(format!("`{url}` must not have a query string"));
        }
        let path = uri.path().trim_end_matches('/').to_owned();
        let host = host_header(&scheme, &authority);
        Ok(Self {
            scheme,
            authority,
            path,
            host,
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

    /// The `host` header of an HTTP/1.1 request to this URL: its host, and its port unless it
    /// is the scheme's own, as hyper-util's client writes it (with a `format!` per request).
    ///
    /// ```
    /// use llm_tower_core::BaseUrl;
    ///
    /// for (url, host) in [
    ///     ("http://127.0.0.1:8000/v1", "127.0.0.1:8000"),
    ///     ("http://models.internal:80", "models.internal"),
    ///     ("https://api.openai.com/v1", "api.openai.com"),
    ///     ("https://[::1]:8443", "[::1]:8443"),
    /// ] {
    ///     assert_eq!(BaseUrl::parse(url).unwrap().host(), host, "{url}");
    /// }
    /// // The header is written as the URL is; the URLs are the same up to the host's case.
    /// let (upper, lower) = (BaseUrl::parse("http://Models:1").unwrap(), BaseUrl::parse("http://models:1").unwrap());
    /// assert_eq!(upper.host(), "Models:1");
    /// assert_eq!(upper, lower);
    /// ```
    pub fn host(&self) -> &HeaderValue {
        &self.host
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
        // Nearly every request of a gateway has the same target on one of a few endpoints:
        // each thread keeps the last join of each base (a few slots, picked by the base's
        // address), and a request whose base and target are byte for byte a kept one's gets
        // a clone of it: its path passed the checks below, which depend on nothing else. A
        // target with a query is joined anew and not kept: a query may carry a credential
        // (`?key=`), which must not outlive its request in a thread's memory.
        let Some(target) = uri.path_and_query().filter(|_| uri.query().is_none()) else {
            return self.join_checked(uri);
        };
        // Fibonacci hashing: the address's bits mixed into the top ones, which pick the slot.
        let slot = (std::ptr::from_ref(self) as usize)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize)
            >> (usize::BITS - SLOTS.trailing_zeros());
        // (`try_with`: a join in a thread-local destructor, after this one's, goes without.)
        let kept = LAST_JOINED.try_with(|kept| {
            kept.borrow()[slot]
                .as_ref()
                .filter(|(joined, target_at)| self.joined(joined, *target_at, target.as_str()))
                .map(|(joined, _)| joined.clone())
        });
        if let Ok(Some(joined)) = kept {
            return Ok(joined);
        }
        let joined = self.join_checked(uri)?;
        let keep = (joined.clone(), self.path.len());
        let _ = LAST_JOINED.try_with(|kept| kept.borrow_mut()[slot] = Some(keep));
        Ok(joined)
    }

    /// Whether `joined`, whose target began at `target_at`, is what this base and the request
    /// target `target` join into: the same scheme, authority and path as written (not up to
    /// case), then `target`. The split is compared too: `/v1` + `/v2/x` and `/v1/v2` + `/x`
    /// make one URI, but only the first target was checked.
    fn joined(&self, joined: &Uri, target_at: usize, target: &str) -> bool {
        target_at == self.path.len()
            && joined.scheme_str() == Some(self.scheme.as_str())
            && joined.authority().map(Authority::as_str) == Some(self.authority.as_str())
            && joined.path_and_query().is_some_and(|joined| {
                joined.as_str().strip_prefix(self.path.as_str()) == Some(target)
            })
    }

    fn join_checked(&self, uri: &Uri) -> Result<Uri, String> {
        if let Err(what) = check_path(uri.path()) {
            return Err(format!("the request path `{}` has {what}", uri.path()));
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
        // From parts rather than `Uri::builder()`, whose every step re-wraps a `Result`.
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).map_err(|e| e.to_string())
    }
}

/// How many bases' last joins each thread keeps (a power of two).
const SLOTS: usize = 8;

thread_local! {
    /// The last URIs [`BaseUrl::join`] made on this thread, in the slots of their bases, and
    /// where their request targets begin in their paths.
    static LAST_JOINED: std::cell::RefCell<[Option<(Uri, usize)>; SLOTS]> =
        const { std::cell::RefCell::new([const { None }; SLOTS]) };
}

/// The `host` header for `authority` reached over `scheme`: the port left out when it is the
/// scheme's default.
fn host_header(scheme: &Scheme, authority: &Authority) -> HeaderValue {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let host = match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    HeaderValue::try_from(host).expect("a URI's host and port make a header value")
}

/// Whether `authority` has no port, or a port from 1 to 65535 (`http` parses `host:abc` and
/// `host:99999` as authorities, with no port).
///
/// ```
/// use llm_tower_core::port_is_valid;
///
/// for (authority, valid) in [("h", true), ("h:8080", true), ("[::1]:1", true), ("h:abc", false), ("h:99999", false), ("h:0", false), ("h:", false), ("h:+1", false)] {
///     assert_eq!(port_is_valid(&authority.parse().unwrap()), valid, "{authority}");
/// }
/// ```
pub fn port_is_valid(authority: &Authority) -> bool {
    let after_host = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, host)| host)
        .strip_prefix(authority.host())
        .unwrap_or(":");
    // Digits only: Rust's integer parsing also takes a sign (`+19000`).
    let digits = after_host
        .strip_prefix(':')
        .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    after_host.is_empty() || (digits && authority.port_u16().is_some_and(|port| port > 0))
}

/// Equal when they name the same URL (the authority up to case); the `host` header made from
/// it is not compared.
impl PartialEq for BaseUrl {
    fn eq(&self, other: &Self) -> bool {
        (&self.scheme, &self.authority, &self.path)
            == (&other.scheme, &other.authority, &other.path)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_join_is_reused_only_for_the_same_base_and_target() {
        let bases = [
            "http://h:1/v1",
            "http://h:1/v1/",
            "http://H:1/v1",
            "http://h:2/v1",
            "https://h:1/v1",
            "http://h:1/v",
            "http://h:1",
            "http://h:1/v1/v2",
        ]
        .map(|base| BaseUrl::parse(base).unwrap());
        let targets = [
            "/chat/completions",
            "/chat/completions?a=1",
            "/1/chat/completions",
            "/v2/x",
            "/x",
        ]
        .map(|target| target.parse::<Uri>().unwrap());
        let written = |base: &BaseUrl| {
            (
                base.scheme.as_str().to_owned(),
                base.authority.as_str().to_owned(),
                base.path.clone(),
            )
        };
        for kept_base in &bases {
            for kept_target in &targets {
                let joined = kept_base.join_checked(kept_target).unwrap();
                for base in &bases {
                    for target in &targets {
                        let same = written(base) == written(kept_base) && target == kept_target;
                        let target = target.path_and_query().unwrap().as_str();
                        assert_eq!(
                            base.joined(&joined, kept_base.path.len(), target),
                            same,
                            "{joined} kept, {base:?} + {target}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_join_made_before_is_reused_only_for_the_same_base_and_target() {
        let v1 = BaseUrl::parse("http://h:1/v1").unwrap();
        let v1_upper = BaseUrl::parse("http://H:1/v1").unwrap();
        let other_port = BaseUrl::parse("http://h:2/v1").unwrap();
        let tls = BaseUrl::parse("https://h:1/v1").unwrap();
        let prefix = BaseUrl::parse("http://h:1/v").unwrap();
        let root = BaseUrl::parse("http://h:1").unwrap();
        let chat: Uri = "/chat/completions".parse().unwrap();
        let query: Uri = "/chat/completions?a=1".parse().unwrap();
        let one: Uri = "/1/chat/completions".parse().unwrap();
        // Each join right after another, so that each finds the one before it kept.
        for (base, target, expected) in [
            (&v1, &chat, "http://h:1/v1/chat/completions"),
            (&v1, &chat, "http://h:1/v1/chat/completions"),
            (&v1_upper, &chat, "http://H:1/v1/chat/completions"),
            (&v1, &chat, "http://h:1/v1/chat/completions"),
            (&tls, &chat, "https://h:1/v1/chat/completions"),
            (&other_port, &chat, "http://h:2/v1/chat/completions"),
            (&v1, &query, "http://h:1/v1/chat/completions?a=1"),
            (&v1, &query, "http://h:1/v1/chat/completions?a=1"),
            (&v1, &chat, "http://h:1/v1/chat/completions"),
            (&prefix, &one, "http://h:1/v/1/chat/completions"),
            (&v1, &one, "http://h:1/v1/1/chat/completions"),
            (&root, &chat, "http://h:1/chat/completions"),
        ] {
            assert_eq!(base.join(target).unwrap().to_string(), expected);
        }
        // One URI from two splits of base and target.
        let v1_v2 = BaseUrl::parse("http://h:1/v1/v2").unwrap();
        assert_eq!(
            v1.join(&"/v2/x".parse().unwrap()).unwrap().to_string(),
            "http://h:1/v1/v2/x"
        );
        assert_eq!(
            v1_v2.join(&"/x".parse().unwrap()).unwrap().to_string(),
            "http://h:1/v1/v2/x"
        );
        // A target with a query is not kept (it may carry a credential).
        v1.join(&"/x?key=secret".parse().unwrap()).unwrap();
        LAST_JOINED.with_borrow(|kept| {
            assert!(
                kept.iter()
                    .flatten()
                    .all(|(joined, _)| joined.query().is_none())
            );
        });
        // A target the checks refuse is refused right after an accepted one.
        v1.join(&chat).unwrap();
        assert!(v1.join(&"/chat/../admin".parse().unwrap()).is_err());
        assert!(v1.join(&"/chat/%2e%2e/admin".parse().unwrap()).is_err());
    }

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
    fn forms_that_servers_normalise_are_refused() {
        let base = BaseUrl::parse("https://res.example/v1").unwrap();
        for (path, why) in [
            ("/..;/admin", "`;`"),
            ("/.;/admin", "`;`"),
            ("/chat;jsessionid=1", "`;`"),
            ("/%252e%252e/admin", "%25"),
            ("/%c0%ae%c0%ae/admin", "UTF-8"),
            ("/..%00/admin", "control"),
            ("/a%0d%0ab", "control"),
            ("/a%7f", "control"),
            ("/..%3b/admin", "`;`"),
            ("/%2e%2e%3b/admin", "`;`"),
            ("/..%20/admin", "segments"),
            ("/%20..%20/admin", "segments"),
            ("/%u002e%u002e/admin", "two hex digits"),
            ("/a%2", "two hex digits"),
            ("/%ef%bc%8e%ef%bc%8e/admin", "normalisation"),
            ("/%e2%80%a5/admin", "normalisation"),
            ("/a%ef%bc%8fb", "normalisation"),
            ("/%ef%b8%b0/admin", "normalisation"),
            ("/a%ef%b8%94b", "normalisation"),
            ("/%e2%84%80/admin", "normalisation"),
            ("/..%c2%a0/admin", "segments"),
            ("/..%e3%80%80/admin", "segments"),
            ("/..%ef%bb%bf/admin", "invisible"),
            ("/.%e2%80%8b./admin", "invisible"),
            // The same characters written unencoded: no ASCII byte of them says `.` or `%`.
            ("/\u{ff0e}\u{ff0e}/admin", "normalisation"),
            ("/\u{fe30}/admin", "normalisation"),
            ("/a\u{ff0f}b", "normalisation"),
            ("/\u{ff0e}\u{200b}\u{ff0e}/admin", "invisible"),
        ] {
            let uri: Uri = path.parse().unwrap();
            let err = base.join(&uri).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
        // Plain encodings of printable and non-ASCII text pass untouched.
        for path in [
            "/models/gemini-1.5:generateContent",
            "/files/%E2%9C%93.txt",
            "/a%20b",
            // Letters NFKC changes, with no separator in what they become.
            "/models/%EF%BD%87pt",
            "/caf%C3%A9.json",
            "/caf\u{e9}",
        ] {
            let uri: Uri = path.parse().unwrap();
            assert!(
                base.join(&uri).unwrap().path().ends_with(&path[1..]),
                "{path}"
            );
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
        for port in ["abc", "99999", "0"] {
            let err = BaseUrl::parse(&format!("http://127.0.0.1:{port}/v1")).unwrap_err();
            assert!(err.contains("port"), "{port}: {err}");
        }
        assert!(BaseUrl::parse("http://[::1]:8080/v1").is_ok());
    }
}
