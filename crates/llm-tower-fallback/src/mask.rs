//! An upstream that echoes the key it received (in an error body or header) must not hand it
//! to the client: error responses are checked, and the key is masked (`sk-...abcd`).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use llm_tower_core::ApiKey;

/// The largest error body checked for the endpoint's key. A longer body streams through
/// unchanged (an upstream error page of that size is rare; buffering more would cost memory
/// per failing request).
pub const MASK_LIMIT: usize = llm_tower_core::ERROR_BODY_LIMIT;

/// Masks every occurrence of `key` in the header values.
pub(crate) fn mask_headers(headers: &mut HeaderMap, key: &ApiKey) {
    let secret = key.expose_secret();
    for value in headers.values_mut() {
        if let Some(masked) = replace(value.as_bytes(), secret, key) {
            if let Ok(masked) = HeaderValue::from_bytes(&masked) {
                *value = masked;
            }
        }
    }
}

/// `text` with every occurrence of `secret` replaced by the key's masked form, or `None` when
/// it holds none.
fn replace(text: &[u8], secret: &[u8], key: &ApiKey) -> Option<Vec<u8>> {
    let first = find(text, secret, 0)?;
    let masked = key.masked();
    let mut out = Vec::with_capacity(text.len());
    let mut start = 0;
    let mut at = Some(first);
    while let Some(found) = at {
        out.extend_from_slice(&text[start..found]);
        out.extend_from_slice(masked.as_bytes());
        start = found + secret.len();
        at = find(text, secret, start);
    }
    out.extend_from_slice(&text[start..]);
    Some(out)
}

fn find(text: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || text.len() < needle.len() {
        return None;
    }
    (from..=text.len() - needle.len()).find(|&i| text[i..].starts_with(needle))
}

/// The body side: bytes are held back (up to [`MASK_LIMIT`]) until the body ends, then sent
/// masked; past the limit, what was held back goes out unchanged and the rest streams.
pub(crate) struct KeyMask {
    key: ApiKey,
    held: BytesMut,
}

/// What to do with a frame of the upstream body while masking.
pub(crate) enum Held {
    /// Keep reading.
    More,
    /// Over the limit: send these bytes unchanged, then stream the rest.
    Overflow(Bytes),
}

impl KeyMask {
    pub(crate) fn new(key: ApiKey) -> Self {
        Self {
            key,
            held: BytesMut::new(),
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) -> Held {
        self.held.extend_from_slice(data);
        if self.held.len() > MASK_LIMIT {
            Held::Overflow(std::mem::take(&mut self.held).freeze())
        } else {
            Held::More
        }
    }

    /// The whole body, masked.
    pub(crate) fn finish(self) -> Bytes {
        let held = self.held.freeze();
        match replace(&held, self.key.expose_secret(), &self.key) {
            Some(masked) => masked.into(),
            None => held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_is_masked() {
        let key = ApiKey::new("sk-live-0123456789abcdef").unwrap();
        let text = b"bad key sk-live-0123456789abcdef; Bearer sk-live-0123456789abcdef.";
        let masked = replace(text, key.expose_secret(), &key).unwrap();
        assert_eq!(
            String::from_utf8(masked).unwrap(),
            "bad key sk-...cdef; Bearer sk-...cdef."
        );
        assert!(replace(b"nothing here", key.expose_secret(), &key).is_none());

        let mut headers = HeaderMap::new();
        headers.insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer sk-live-0123456789abcdef"),
        );
        headers.insert("x-other", HeaderValue::from_static("fine"));
        mask_headers(&mut headers, &key);
        assert_eq!(headers["www-authenticate"], "Bearer sk-...cdef");
        assert_eq!(headers["x-other"], "fine");
    }

    #[test]
    fn over_the_limit_the_body_is_released_unchanged() {
        let key = ApiKey::new("sk-live-0123456789abcdef").unwrap();
        let mut mask = KeyMask::new(key.clone());
        assert!(matches!(mask.push(&vec![b'a'; MASK_LIMIT]), Held::More));
        let Held::Overflow(released) = mask.push(b"sk-live-0123456789abcdef") else {
            panic!("over the limit");
        };
        assert_eq!(released.len(), MASK_LIMIT + 24);
        let mut small = KeyMask::new(key);
        small.push(b"{\"error\":\"sk-live-0123456789abcdef\"}");
        assert_eq!(small.finish(), "{\"error\":\"sk-...cdef\"}");
    }
}
