//! [`SseSplitter`]: server-sent events out of a byte stream that arrives in arbitrary pieces,
//! as the WHATWG `text/event-stream` format defines them (an event ends at a blank line;
//! lines end at `\n`, `\r\n` or `\r`; `data:` lines are joined with `\n`; a line that starts
//! with `:` is a comment).

use bytes::{BufMut, Bytes, BytesMut};

/// One event: its `event:` name (if any), its data, and its bytes as they came (blank line
/// included), to pass on unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if the event has one.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n` (empty for an event without data).
    pub data: String,
    /// The event's bytes as they came.
    pub raw: Bytes,
}

/// Splits a stream of bytes into [`SseEvent`]s; bytes of an event not yet ended wait for
/// the next piece.
///
/// ```
/// use llm_tower_core::SseSplitter;
///
/// let mut events = SseSplitter::default();
/// assert!(events.push(b"event: ping\ndata: {\"a\"").is_empty());
/// let ready = events.push(b":1}\r\n\r\ndata: [DONE]\n\n");
/// assert_eq!(ready.len(), 2);
/// assert_eq!(ready[0].event.as_deref(), Some("ping"));
/// assert_eq!(ready[0].data, r#"{"a":1}"#);
/// assert_eq!(&ready[1].raw[..], b"data: [DONE]\n\n");
/// ```
#[derive(Debug, Default)]
pub struct SseSplitter {
    pending: BytesMut,
}

impl SseSplitter {
    /// The events that `bytes` completes.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.pending) {
            let raw = self.pending.split_to(end).freeze();
            events.push(parse(raw));
        }
        events
    }

    /// Bytes of an event not yet ended.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }
}

/// The length of the first complete event in `bytes` (its blank line included), if one is.
/// Line ends are found with `memchr`: an event's bytes are mostly one long `data:` line.
fn event_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(found) = memchr::memchr2(b'\n', b'\r', &bytes[i..]) {
        let at = i + found;
        let line_end = match bytes[at] {
            b'\r' if bytes.get(at + 1) == Some(&b'\n') => at + 2,
            // A lone `\r` at the end may be the first half of `\r\n`: wait for more.
            b'\r' if at + 1 == bytes.len() => return None,
            _ => at + 1,
        };
        // A line ended at `line_end`: the event ends there if the next line is empty.
        match bytes.get(line_end) {
            Some(b'\n') => return Some(line_end + 1),
            Some(b'\r') if bytes.get(line_end + 1) == Some(&b'\n') => return Some(line_end + 2),
            Some(b'\r') if line_end + 1 < bytes.len() => return Some(line_end + 1),
            _ => i = line_end,
        }
    }
    None
}

fn parse(raw: Bytes) -> SseEvent {
    let text = String::from_utf8_lossy(&raw);
    let mut event = None;
    let mut data: Option<String> = None;
    for line in lines(&text).filter(|line| !line.is_empty()) {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    SseEvent {
        event,
        data: data.unwrap_or_default(),
        raw,
    }
}

/// The lines of `text`, split at every `\n` and `\r` (found with `memchr`, not decoded
/// character by character).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        // An ASCII byte: both halves are whole characters.
        if let Some(end) = memchr::memchr2(b'\n', b'\r', text.as_bytes()) {
            rest = Some(&text[end + 1..]);
            Some(&text[..end])
        } else {
            rest = None;
            Some(text)
        }
    })
}

/// Writes one server-sent event to `out`: its `event:` line when it has a name, its `data:`
/// line (`data` must be one line: JSON as `serde_json` writes it is), and the blank line that
/// ends it.
///
/// ```
/// use llm_tower_core::write_sse_event;
///
/// let mut out = Vec::new();
/// write_sse_event(&mut out, Some("ping"), b"{}");
/// write_sse_event(&mut out, None, b"[DONE]");
/// assert_eq!(out, b"event: ping\ndata: {}\n\ndata: [DONE]\n\n");
/// ```
pub fn write_sse_event(out: &mut impl BufMut, event: Option<&str>, data: &[u8]) {
    if let Some(event) = event {
        out.put_slice(b"event: ");
        out.put_slice(event.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"data: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split of a stream gives the same events.
    #[test]
    fn events_do_not_depend_on_how_the_bytes_are_cut() {
        let stream: &[u8] =
            b": comment\n\nevent: a\ndata: 1\ndata: 2\n\ndata: x\r\n\r\ndata: y\r\rdata:z\n\n";
        let whole = SseSplitter::default().push(stream);
        let seen: Vec<(Option<&str>, &str)> = whole
            .iter()
            .map(|e| (e.event.as_deref(), e.data.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (None, ""),
                (Some("a"), "1\n2"),
                (None, "x"),
                (None, "y"),
                (None, "z")
            ]
        );
        for cut in 0..stream.len() {
            let mut splitter = SseSplitter::default();
            let mut events = splitter.push(&stream[..cut]);
            events.extend(splitter.push(&stream[cut..]));
            assert_eq!(events, whole, "cut at {cut}");
            assert!(splitter.pending().is_empty());
        }
    }
}
