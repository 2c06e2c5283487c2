//! An OpenAI stream as its client would have had it had the gateway not asked for its usage
//! (`stream_options.include_usage`): the extra chunk that reports it (`"choices": []` and a
//! usage object) dropped with the blank line that ends its event, and the `"usage": null`
//! every other chunk then carries taken out. Every other byte is the stream's.

use bytes::BytesMut;
use memchr::memmem::Finder;
use std::sync::LazyLock;

use crate::format::Format;
use crate::scan::skip_space;

static CHOICES: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"choices\""));

/// Writes `line` (with its `\n`) to `out` as the client would have had it; `usage_key` is
/// where in the line its first `"usage"` is (the scanner's search found it); `dropping` says,
/// from one line to the next, that an event is being dropped up to its blank line.
pub(crate) fn line(line: &[u8], usage_key: Option<usize>, dropping: &mut bool, out: &mut BytesMut) {
    if std::mem::take(dropping) && line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let Some(data) = line.strip_prefix(b"data:") else {
        out.extend_from_slice(line);
        return;
    };
    let offset = line.len() - data.len();
    let key_len = Format::OpenAiChat.usage_key().needle().len();
    let Some((key, value)) = usage_key.and_then(|at| value_at(data, at - offset, key_len)) else {
        out.extend_from_slice(line);
        return;
    };
    if data[value..].starts_with(b"{") {
        let no_choices = value_of(&CHOICES, data).is_some_and(|(_, choices)| {
            skip_space(&data[choices..])
                .strip_prefix(b"[")
                .is_some_and(|rest| skip_space(rest).starts_with(b"]"))
        });
        if no_choices {
            *dropping = true;
            return;
        }
    } else if data[value..].starts_with(b"null") {
        let (start, end) = with_its_comma(data, key, value + 4);
        out.extend_from_slice(&line[..offset + start]);
        out.extend_from_slice(&line[offset + end..]);
        return;
    }
    out.extend_from_slice(line);
}

/// Where `key` is in `json`, and where its value starts.
fn value_of(key: &Finder<'_>, json: &[u8]) -> Option<(usize, usize)> {
    value_at(json, key.find(json)?, key.needle().len())
}

/// Where the value of the key of `key_len` bytes at `at` in `json` starts (`at` with it).
fn value_at(json: &[u8], at: usize, key_len: usize) -> Option<(usize, usize)> {
    let after = &json[at + key_len..];
    let colon = skip_space(after).strip_prefix(b":")?;
    let value = skip_space(colon);
    Some((at, json.len() - value.len()))
}

/// The member `json[start..end]` widened to take one of the commas beside it (the one before
/// it, else the one after it), so that the object stays well-formed without it.
fn with_its_comma(json: &[u8], start: usize, end: usize) -> (usize, usize) {
    let before = json[..start].iter().rposition(|b| !b.is_ascii_whitespace());
    if let Some(comma) = before.filter(|&at| json[at] == b',') {
        return (comma, end);
    }
    let after = json[end..]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|at| end + at);
    match after.filter(|&at| json[at] == b',') {
        // With the spaces after the comma: the next member takes this one's place.
        Some(comma) => (start, end_of_space(json, comma + 1)),
        None => (start, end),
    }
}

fn end_of_space(json: &[u8], from: usize) -> usize {
    from + json[from..]
        .iter()
        .take_while(|b| b.is_ascii_whitespace())
        .count()
}
