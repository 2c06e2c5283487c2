//! Percent-decoding, as the servers llm-tower forwards to would do it.

/// Decodes `%XX` escapes (either case); a `%` not followed by two hex digits stays as it is.
/// The result is bytes: what they mean (UTF-8 or not) is for the caller to judge.
///
/// ```
/// use llm_tower_core::percent_decode;
///
/// assert_eq!(percent_decode("%6bey%5B%5D"), b"key[]");
/// assert_eq!(percent_decode("100%"), b"100%");
/// assert_eq!(percent_decode("%c0%ae"), [0xc0, 0xae]);
/// ```
pub fn percent_decode(text: &str) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        if let Some((high, low)) = escaped {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}
