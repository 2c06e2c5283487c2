//! [`Scanner`]: reads an answer's usage as its bytes pass, without building a document. A
//! stream is read line by line (every provider writes an event's JSON on one `data:` line),
//! keeping only a line cut by a frame's end; a JSON answer keeps its last [`WINDOW`] bytes,
//! where every API puts its usage, and is read when it ends. Either way the usage object is
//! found by its key (`memchr`'s `memmem`) and only that object is parsed.

use bytes::BytesMut;
use llm_tower_core::Usage;

use crate::fields::Fields;
use crate::format::Format;
use crate::strip;

/// How much of the end of a JSON answer is kept to find its usage in.
pub(crate) const WINDOW: usize = 64 * 1024;

/// The longest stream line kept whole across frames: longer ones are not read (no event a
/// usage or text is read from is that long; a line of a megabyte is not held for it).
const MAX_LINE: usize = 1024 * 1024;

/// Roughly how many characters of text make a token, for estimates.
const CHARS_PER_TOKEN: u64 = 4;

/// How an answer is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Events,
    Json,
}

/// The state of reading one answer.
#[derive(Debug)]
pub(crate) struct Scanner {
    format: Format,
    /// A stream of events (read line by line), or a JSON answer (read at its end).
    mode: Mode,
    /// A stream's line cut by the end of a frame, or a JSON answer's last bytes.
    kept: Vec<u8>,
    /// A stream's kept line is too long to be read.
    skipping: bool,
    /// The usage reported so far.
    fields: Fields,
    /// Characters of generated text seen, for an estimate when no usage comes.
    text_chars: u64,
    /// Some of the answer was seen.
    seen: bool,
    /// A rewritten stream is dropping an event (the usage chunk) up to its blank line.
    dropping: bool,
}

impl Scanner {
    pub(crate) fn new(format: Format, events: bool) -> Self {
        Self {
            format,
            mode: if events { Mode::Events } else { Mode::Json },
            kept: Vec::new(),
            skipping: false,
            fields: Fields::default(),
            text_chars: 0,
            seen: false,
            dropping: false,
        }
    }

    /// Whether any of the answer was read.
    pub(crate) fn seen(&self) -> bool {
        self.seen
    }

    /// Reads `data`, the answer's next bytes (passed on as they are); `last`: the answer ends
    /// with them.
    pub(crate) fn push(&mut self, data: &[u8], last: bool) {
        self.seen |= !data.is_empty();
        if self.mode == Mode::Json {
            if last && self.kept.is_empty() {
                // A whole answer in one frame, the common case: read where it is.
                self.read_json(data);
            } else {
                self.keep_end(data);
            }
            return;
        }
        self.lines(data, Self::line);
    }

    /// Reads `data` as [`push`](Self::push) does, and writes to `out` the complete lines the
    /// client gets: OpenAI's stream as it would have been without the usage the gateway asked
    /// for (see [`strip`]).
    pub(crate) fn push_stripped(&mut self, data: &[u8], out: &mut BytesMut) {
        self.seen |= !data.is_empty();
        self.lines_whole(data, |scanner, line| {
            scanner.line(line);
            strip::line(line, &mut scanner.dropping, out);
        });
    }

    /// The answer ended: reads what was kept for the end. Returns a stream's unfinished last
    /// line, for a stripped stream to pass on.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let kept = std::mem::take(&mut self.kept);
        if self.mode == Mode::Events {
            if !self.skipping {
                self.line(&kept);
            }
            return kept;
        }
        self.read_json(&kept);
        Vec::new()
    }

    /// Reads the usage objects of a JSON answer (or its end): every one, merged, so that an
    /// event stream sent as JSON is read whole too.
    fn read_json(&mut self, json: &[u8]) {
        for at in self.format.usage_key().find_iter(json) {
            self.usage_at(json, at);
        }
    }

    /// The usage of what was read: as reported, when the answer ended (`complete`) and
    /// reported it; otherwise what was reported, the rest estimated (output from the text
    /// seen — or as reported, if more: Anthropic reports a placeholder at the start —, input
    /// from the request's `request_len` bytes). `None` when nothing was read.
    pub(crate) fn usage(&self, request_len: usize, complete: bool) -> Option<Usage> {
        if complete && let Some(usage) = self.fields.usage(self.format) {
            return Some(usage);
        }
        if !self.seen {
            return None;
        }
        let (input, output, cached_input, reasoning) = self.fields.reported(self.format);
        let estimate = self.text_chars.div_ceil(CHARS_PER_TOKEN);
        Some(Usage {
            input: input.unwrap_or(request_len as u64 / CHARS_PER_TOKEN),
            output: output.map_or(estimate, |output| output.max(estimate)),
            cached_input,
            reasoning,
            estimated: true,
        })
    }

    /// Keeps the last [`WINDOW`] bytes of a JSON answer (copying each byte once, and the
    /// window's worth again when it slides).
    fn keep_end(&mut self, data: &[u8]) {
        if data.len() >= WINDOW {
            self.kept.clear();
            self.kept.extend_from_slice(&data[data.len() - WINDOW..]);
            return;
        }
        if self.kept.len() + data.len() > 2 * WINDOW {
            self.kept.drain(..self.kept.len() - WINDOW);
        }
        self.kept.extend_from_slice(data);
    }

    /// Calls `each` with every complete line of the stream in `data`, the line cut by the
    /// last frame's end first completed; keeps the one `data` ends in the middle of. Lines
    /// are read in place: only a cut line is copied.
    fn lines(&mut self, data: &[u8], mut each: impl FnMut(&mut Self, &[u8])) {
        let mut rest = data;
        if !self.kept.is_empty() || self.skipping {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.keep_cut(rest);
                return;
            };
            let skipping = std::mem::take(&mut self.skipping);
            let mut line = std::mem::take(&mut self.kept);
            if !skipping {
                line.extend_from_slice(&rest[..end]);
                each(self, &line);
            }
            line.clear();
            self.kept = line;
            rest = &rest[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', rest) {
            each(self, &rest[start..end]);
            start = end + 1;
        }
        self.keep_cut(&rest[start..]);
    }

    /// [`lines`](Self::lines), each line given with its `\n` (the last one's kept back until
    /// it ends), for a stream that is rewritten line by line.
    fn lines_whole(&mut self, data: &[u8], mut each: impl FnMut(&mut Self, &[u8])) {
        let mut rest = data;
        if !self.kept.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.kept.extend_from_slice(rest);
                return;
            };
            let mut line = std::mem::take(&mut self.kept);
            line.extend_from_slice(&rest[..=end]);
            each(self, &line);
            line.clear();
            self.kept = line;
            rest = &rest[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', rest) {
            each(self, &rest[start..=end]);
            start = end + 1;
        }
        // A rewritten stream's cut line is held whatever its length: it is the client's.
        self.kept.extend_from_slice(&rest[start..]);
    }

    /// Keeps a cut line to complete with the next frame, unless it grew too long to read.
    fn keep_cut(&mut self, cut: &[u8]) {
        if self.skipping {
            return;
        }
        if self.kept.len() + cut.len() > MAX_LINE {
            self.kept.clear();
            self.skipping = true;
            return;
        }
        self.kept.extend_from_slice(cut);
    }

    /// Reads one line of a stream: a `data:` line's usage, and its text for an estimate.
    fn line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        for at in self.format.usage_key().find_iter(data) {
            self.usage_at(data, at);
        }
        for key in self.format.text_keys() {
            for at in key.find_iter(data) {
                self.text_chars += string_chars(&data[at + key.needle().len()..]);
            }
        }
    }

    /// Reads the usage object whose key starts at `at` in `json`, if its value is one.
    fn usage_at(&mut self, json: &[u8], at: usize) {
        let key = self.format.usage_key().needle().len();
        let value = skip_space(&json[at + key..]);
        let Some(value) = value.strip_prefix(b":") else {
            return;
        };
        let value = skip_space(value);
        if value.first() == Some(&b'{')
            && let Some(fields) = Fields::read(value)
        {
            self.fields.merge(fields);
        }
    }
}

pub(crate) fn skip_space(json: &[u8]) -> &[u8] {
    let start = json
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(json.len());
    &json[start..]
}

/// The characters of the JSON string at the start of `json` (after spaces), escapes counted
/// as one; 0 when it is not a string.
fn string_chars(json: &[u8]) -> u64 {
    let Some(string) = skip_space(json).strip_prefix(b"\"") else {
        return 0;
    };
    let mut chars = 0;
    let mut at = 0;
    while let Some(found) = memchr::memchr2(b'"', b'\\', &string[at..]) {
        chars += utf8_chars(&string[at..at + found]);
        at += found;
        if string[at] == b'"' {
            return chars;
        }
        // An escape: one character (`\uXXXX` too), whatever follows counted after it.
        chars += 1;
        at += if string.get(at + 1) == Some(&b'u') {
            6
        } else {
            2
        };
        if at >= string.len() {
            return chars;
        }
    }
    chars + utf8_chars(&string[at..])
}

/// The characters of UTF-8 `bytes`: the bytes that do not continue one (`10xxxxxx`).
fn utf8_chars(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b & 0xC0 != 0x80).count() as u64
}

#[cfg(test)]
mod tests;
