//! Header sets matched by name, and the removal of hop-by-hop and other unwanted headers.

use http::header::CONNECTION;
use http::{HeaderMap, HeaderName};

/// A fixed set of header names, listed (for documentation and iteration) and matched by a
/// `match` on the name rather than by comparing it with every entry: the request path asks
/// "is this header in the set?" for each of a message's headers, several sets per request.
/// Built with [`header_names!`](crate::header_names).
///
/// ```
/// use http::HeaderName;
/// use llm_tower_core::HOP_BY_HOP;
///
/// assert!(HOP_BY_HOP.contains(&HeaderName::from_static("keep-alive")));
/// assert!(!HOP_BY_HOP.contains(&http::header::CONTENT_TYPE));
/// assert_eq!(HOP_BY_HOP.iter().count(), 9);
/// ```
pub struct HeaderNames {
    names: &'static [HeaderName],
    matches: fn(&str) -> bool,
}

impl HeaderNames {
    #[doc(hidden)] // Through `header_names!`, which keeps the list and the match equal.
    pub const fn new(names: &'static [HeaderName], matches: fn(&str) -> bool) -> Self {
        Self { names, matches }
    }

    /// Whether `name` is in the set.
    pub fn contains(&self, name: &HeaderName) -> bool {
        (self.matches)(name.as_str())
    }

    /// The names, in the order listed.
    pub fn iter(&self) -> std::slice::Iter<'static, HeaderName> {
        self.names.iter()
    }
}

impl IntoIterator for &HeaderNames {
    type Item = &'static HeaderName;
    type IntoIter = std::slice::Iter<'static, HeaderName>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::fmt::Debug for HeaderNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names).finish()
    }
}

/// Defines a `static` [`HeaderNames`] from lowercase header names, written once.
///
/// ```
/// llm_tower_core::header_names! {
///     /// Headers that say who is asking.
///     pub static WHO: ["x-user", "x-team"];
/// }
/// assert!(WHO.contains(&http::HeaderName::from_static("x-team")));
/// assert!(!WHO.contains(&http::header::HOST));
/// ```
#[macro_export]
macro_rules! header_names {
    ($(#[$meta:meta])* $vis:vis static $set:ident: [$($name:literal),+ $(,)?];) => {
        $(#[$meta])*
        $vis static $set: $crate::HeaderNames = {
            static NAMES: [$crate::__http::HeaderName; [$($name),+].len()] =
                [$($crate::__http::HeaderName::from_static($name)),+];
            $crate::HeaderNames::new(&NAMES, |name| matches!(name, $($name)|+))
        };
    };
}

header_names! {
    /// Headers that describe one connection, not the message; never forwarded either way.
    pub static HOP_BY_HOP: [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    ];
}

/// Removes hop-by-hop headers and every header that `connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_hop_by_hop_and(headers, |_| false);
}

/// Removes hop-by-hop headers, every header that `connection` names, and every header for
/// which `also` says so, in one pass over the message's headers.
pub fn strip_hop_by_hop_and(headers: &mut HeaderMap, also: impl Fn(&HeaderName) -> bool) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    remove_where(headers, |name| HOP_BY_HOP.contains(name) || also(name));
}

/// Whether `headers` say the body is a stream of server-sent events (`text/event-stream`,
/// parameters and case aside).
///
/// ```
/// use http::HeaderMap;
/// use llm_tower_core::is_event_stream;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("content-type", "Text/Event-Stream; charset=utf-8".parse().unwrap());
/// assert!(is_event_stream(&headers));
/// headers.insert("content-type", " text/event-stream ".parse().unwrap());
/// assert!(is_event_stream(&headers));
/// headers.insert("content-type", "text/event-streams".parse().unwrap());
/// assert!(!is_event_stream(&headers));
/// let not_ascii = http::HeaderValue::from_bytes(b"text/event-stream; charset=\xe9").unwrap();
/// headers.insert("content-type", not_ascii);
/// assert!(!is_event_stream(&headers));
/// headers.insert("content-type", "application/json".parse().unwrap());
/// assert!(!is_event_stream(&headers));
/// ```
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    const EVENT_STREAM: &[u8] = b"text/event-stream";
    // Compared as bytes, from the front: every answer is asked, by several layers, and most
    // are `application/json`, told apart by their first letter; a search for the parameters'
    // `;` or a UTF-8 check would cost more than the comparison.
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| {
            let bytes = value.as_bytes().trim_ascii_start();
            let Some((mime, rest)) = bytes.split_at_checked(EVENT_STREAM.len()) else {
                return false;
            };
            let rest = rest.trim_ascii_start();
            mime.eq_ignore_ascii_case(EVENT_STREAM)
                && (rest.is_empty() || rest[0] == b';')
                // A value that is not all visible ASCII names no type, whatever it starts with.
                && value.to_str().is_ok()
        })
}

/// Removes every header for which `unwanted` says so. The message's headers (a handful) are
/// asked once each; only the ones found are removed by name.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use llm_tower_core::remove_where;
///
/// let mut headers = HeaderMap::new();
/// headers.append("x-api-key", HeaderValue::from_static("a"));
/// headers.append("x-api-key", HeaderValue::from_static("b"));
/// headers.insert("accept", HeaderValue::from_static("*/*"));
/// remove_where(&mut headers, |name| name == "x-api-key");
/// assert_eq!(headers.len(), 1);
/// ```
pub fn remove_where(headers: &mut HeaderMap, unwanted: impl Fn(&HeaderName) -> bool) {
    while let Some(name) = headers.keys().find(|name| unwanted(name)).cloned() {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn an_event_stream_is_its_type_before_any_parameters_in_any_case() {
        // What the type means, written plainly: the part before the first `;`, trimmed.
        let plainly = |value: &HeaderValue| {
            let text = value.to_str().ok()?;
            Some(
                text.split(';')
                    .next()?
                    .trim()
                    .eq_ignore_ascii_case("text/event-stream"),
            )
        };
        for value in [
            "text/event-stream",
            "TEXT/Event-Stream",
            "text/event-stream;charset=utf-8",
            "text/event-stream ; charset=utf-8",
            "text/event-stream\t;x=y",
            " \ttext/event-stream  ",
            "text/event-stream;",
            "text/event-streams",
            "text/event-stream x",
            "text/event-stream, text/plain",
            "text/event-strea",
            "text/event",
            "application/json",
            "",
            ";text/event-stream",
            "x text/event-stream",
        ] {
            let value = HeaderValue::from_str(value).unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, value.clone());
            assert_eq!(
                Some(is_event_stream(&headers)),
                plainly(&value),
                "{value:?}"
            );
        }
        let mut headers = HeaderMap::new();
        let not_ascii = HeaderValue::from_bytes(b"text/event-stream;x=\xff").unwrap();
        headers.insert(http::header::CONTENT_TYPE, not_ascii);
        assert!(!is_event_stream(&headers));
        assert!(!is_event_stream(&HeaderMap::new()));
    }

    #[test]
    fn strips_hop_by_hop_and_named_headers() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("connection", "upgrade"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-authenticate", "Basic"),
            ("proxy-connection", "keep-alive"),
            ("content-type", "application/json"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type"]);
    }
}
