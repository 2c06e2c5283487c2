//! The request paths no endpoint is sent: the forms that some upstream servers or proxies
//! normalise into another path, so that a client could climb out of a base URL's prefix
//! ([`BaseUrl::join`](super::BaseUrl::join) refuses them; its tests try each form).

use unicode_normalization::UnicodeNormalization;

/// Refuses the path forms that some upstream servers or proxies normalise into another path:
/// `.`/`..` segments (also percent-encoded, padded with spaces, or behind an encoded slash or
/// a backslash), `;` (path parameters, as in `..;/`, also encoded), double percent-encoding
/// (`%25`), a `%` that is not percent-encoding (IIS reads `%u002e` as `.`), encoded control
/// bytes (`%00`), percent-encoded bytes that are not valid UTF-8 (overlong forms such as
/// `%c0%ae`, which lenient decoders read as `.`), characters that Unicode normalisation
/// turns into `.`, `/`, `\` or `;` (the full-width dot `%ef%bc%8e`, `%ef%b8%b0` for `..`,
/// `%e2%84%80` for `a/c`, ...), Unicode spaces around a dot segment (`..%c2%a0`), and
/// invisible characters (`.%e2%80%8b.`).
pub(super) fn check_path(path: &str) -> Result<(), &'static str> {
    // Bytes, not chars: a `char` pattern decodes the path's UTF-8 to look for four ASCII
    // bytes. Characters beyond ASCII written as they are (servers accept them unencoded) are
    // read as the encoded ones are.
    if !path
        .bytes()
        .any(|b| matches!(b, b'.' | b'%' | b';' | b'\\') || !b.is_ascii())
    {
        // The healthy path: nothing to decode.
        return Ok(());
    }
    if path.contains(';') {
        return Err("a `;` (path parameters)");
    }
    if path.to_ascii_lowercase().contains("%25") {
        return Err("double percent-encoding (`%25`)");
    }
    let bytes = path.as_bytes();
    let stray_percent = memchr::memchr_iter(b'%', bytes).any(|at| {
        !bytes
            .get(at + 1..at + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if stray_percent {
        return Err("a `%` that is not followed by two hex digits");
    }
    let decoded = crate::percent_decode(path);
    if decoded.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err("an encoded control character");
    }
    let decoded =
        std::str::from_utf8(&decoded).map_err(|_| "a percent-encoding that is not valid UTF-8")?;
    if decoded.contains(';') {
        return Err("a `;` (path parameters)");
    }
    if !decoded.is_ascii() {
        check_unicode(decoded)?;
    }
    if has_dot_segment(decoded) {
        return Err("`.` or `..` segments");
    }
    Ok(())
}

/// A decoded path with characters beyond ASCII: servers that normalise it (Unicode's
/// compatibility form, NFKC) or drop what they do not print must find the path it says.
fn check_unicode(decoded: &str) -> Result<(), &'static str> {
    if decoded.chars().any(is_invisible) {
        return Err("an invisible formatting character");
    }
    let normalised: String = decoded.nfkc().collect();
    let separators = |text: &str| text.matches(['.', '/', '\\', ';']).count();
    if separators(&normalised) != separators(decoded) {
        return Err("a character that Unicode normalisation turns into `.`, `/`, `\\` or `;`");
    }
    if has_dot_segment(&normalised) {
        return Err("`.` or `..` segments");
    }
    Ok(())
}

/// Whether a segment is `.` or `..`, once the spaces around it are gone (Windows servers
/// drop them: `.. ` is `..` there).
fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|segment| {
        let segment = segment.trim_matches(char::is_whitespace);
        segment == "." || segment == ".."
    })
}

/// Characters that print as nothing (format characters and fillers), which a server or a log
/// may drop: `.\u{200b}.` reads as `..` there.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}
