//! An upstream that echoes the key it received (in an error body, a header or a trailer) must
//! not hand it to the client: the headers of every response are masked (`sk-...abcd`), and
//! the bodies of error responses as they stream, with only the last few bytes held back, in
//! case the key is split across two frames.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use llm_tower_core::ApiKey;

/// Masks every occurrence of `key` in the header values, and drops the headers whose name
/// holds it (names are lower case: an all-lower-case key would come back whole).
pub(crate) fn mask_headers(headers: &mut HeaderMap, key: &ApiKey) {
    let secret = key.expose_secret();
    let Some(first) = secret.first() else {
        return;
    };
    let named: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            name.as_str().len() >= secret.len()
                && name
                    .as_str()
                    .as_bytes()
                    .windows(secret.len())
                    // The first byte first: most windows differ there.
                    .any(|w| w[0].eq_ignore_ascii_case(first) && w.eq_ignore_ascii_case(secret))
        })
        .cloned()
        .collect();
    for name in named {
        headers.remove(name);
    }
    for value in headers.values_mut() {
        if find(value.as_bytes(), secret, 0).is_some() {
            let mut masker = KeyMask::new(key.clone());
            let mut masked = masker.feed(value.as_bytes()).to_vec();
            masked.extend_from_slice(&masker.finish());
            if let Ok(masked) = HeaderValue::from_bytes(&masked) {
                *value = masked;
            }
        }
    }
}

fn find(text: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    // Most header values are shorter than a key: a length check is all they cost.
    let (&first, _) = needle.split_first()?;
    let last_start = text.len().checked_sub(needle.len())?;
    if from > last_start {
        return None;
    }
    // Candidates are the places of the key's first byte; a searcher built for each value
    // (memmem) would cost more than the short values of a response head ever take.
    memchr::memchr_iter(first, &text[from..=last_start])
        .map(|at| from + at)
        .find(|&at| text[at..].starts_with(needle))
}

/// The body side: frames go out masked as they come, but for the last `key.len() - 1` bytes
/// of each, kept until the next frame shows whether they begin a key.
pub(crate) struct KeyMask {
    key: ApiKey,
    masked: Bytes,
    carry: BytesMut,
}

impl KeyMask {
    pub(crate) fn new(key: ApiKey) -> Self {
        let masked = Bytes::from(key.masked());
        Self {
            key,
            masked,
            carry: BytesMut::new(),
        }
    }

    /// The next frame's bytes, masked; what might begin a key is kept for the next call.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Bytes {
        let secret = self.key.expose_secret();
        self.carry.extend_from_slice(data);
        let text = std::mem::take(&mut self.carry);
        let mut out = BytesMut::with_capacity(text.len());
        let mut at = 0;
        while let Some(found) = find(&text, secret, at) {
            out.extend_from_slice(&text[at..found]);
            out.extend_from_slice(&self.masked);
            at = found + secret.len();
        }
        // A key that begins in these bytes and ends in the next frame starts after this.
        let keep_from = at.max(text.len().saturating_sub(secret.len().saturating_sub(1)));
        out.extend_from_slice(&text[at..keep_from]);
        self.carry.extend_from_slice(&text[keep_from..]);
        out.freeze()
    }

    /// The bytes kept at the end: too short to hold the key.
    pub(crate) fn finish(self) -> Bytes {
        self.carry.freeze()
    }

    /// Masks the key in trailers.
    pub(crate) fn mask_trailers(&self, trailers: &mut HeaderMap) {
        mask_headers(trailers, &self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-0123456789abcdef";

    fn masked_through(frames: &[&[u8]]) -> String {
        let mut mask = KeyMask::new(ApiKey::new(KEY).unwrap());
        let mut out = Vec::new();
        for frame in frames {
            out.extend_from_slice(&mask.feed(frame));
        }
        out.extend_from_slice(&mask.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_occurrence_is_masked_however_the_frames_split_it() {
        let text = format!("bad key {KEY}; Bearer {KEY}.");
        let expected = "bad key sk-...cdef; Bearer sk-...cdef.";
        assert_eq!(masked_through(&[text.as_bytes()]), expected);
        // Every split point, including inside both keys.
        for cut in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            assert_eq!(masked_through(&[a, b]), expected, "split at {cut}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(masked_through(&bytes), expected);
        assert_eq!(masked_through(&[b"nothing here"]), "nothing here");
    }

    #[test]
    fn large_bodies_are_masked_too_with_little_held_back() {
        let padding = "a".repeat(200 * 1024);
        let text = format!("{padding}{KEY}{padding}");
        let mut mask = KeyMask::new(ApiKey::new(KEY).unwrap());
        let first = mask.feed(text.as_bytes());
        // Everything goes out at once but for fewer bytes than the key has.
        let masked_len = text.len() - KEY.len() + "sk-...cdef".len();
        assert!(first.len() + KEY.len() > masked_len, "streams, not held");
        let mut out = first.to_vec();
        out.extend_from_slice(&mask.finish());
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains(KEY));
        assert_eq!(out.len(), text.len() - KEY.len() + "sk-...cdef".len());
    }

    #[test]
    fn headers_and_trailers() {
        let key = ApiKey::new(KEY).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer sk-live-0123456789abcdef"),
        );
        headers.insert("x-other", HeaderValue::from_static("fine"));
        headers.insert(
            HeaderName::from_static("x-sk-live-0123456789abcdef-seen"),
            HeaderValue::from_static("1"),
        );
        mask_headers(&mut headers, &key);
        assert_eq!(headers["www-authenticate"], "Bearer sk-...cdef");
        assert_eq!(headers["x-other"], "fine");
        assert_eq!(headers.len(), 2, "a header named after the key is dropped");
    }
}
