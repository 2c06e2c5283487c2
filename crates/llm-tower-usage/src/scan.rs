//! [`Scanner`]: reads an answer's usage as its bytes pass, without building a document. A
//! stream is read line by line (every provider writes an event's JSON on one `data:` line),
//! keeping only a line cut by a frame's end; a JSON answer keeps its last [`WINDOW`] bytes,
//! where every API puts its usage, and is read when it ends. Either way the usage object is
//! found by its key and only that object is parsed: in an answer with `memchr`'s `memmem`, in
//! an event in the one search for all the keys it is read for (`Format::event_keys`).

use bytes::BytesMut;
use llm_tower_core::Usage;

use crate::fields::Fields;
use crate::format::{END_MARKER, Format, USAGE_KEY};
use crate::strip;

/// How much of the end of a JSON answer is kept to find its usage in.
pub(crate) const WINDOW: usize = 64 * 1024;

/// How much of the end of an answer is searched for its usage first (see
/// [`Scanner::read_last_usage`]).
const TAIL: usize = 4 * 1024;

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
    cut_head: bool,
    /// The usage reported so far.
    fields: Fields,
    /// Characters of generated text seen, for an estimate when no usage comes.
    text_chars: u64,
    /// How much of the answer was read.
    progress: Progress,
    /// A rewritten stream is dropping an event (the usage chunk) up to its blank line.
    dropping: bool,
}

/// How much of an answer was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Progress {
    Nothing,
    Some,
    /// A stream's last event (see [`Format::end_marker`]).
    LastEvent,
}

impl Scanner {
    pub(crate) fn new(format: Format, events: bool) -> Self {
        Self {
            format,
            mode: if events { Mode::Events } else { Mode::Json },
            kept: Vec::new(),
            cut_head: false,
            fields: Fields::default(),
            text_chars: 0,
            progress: Progress::Nothing,
            dropping: false,
        }
    }

    /// Whether any of the answer was read.
    pub(crate) fn seen(&self) -> bool {
        self.progress > Progress::Nothing
    }

    /// Reads `data`, the answer's next bytes (passed on as they are); `last`: the answer ends
    /// with them.
    pub(crate) fn push(&mut self, data: &[u8], last: bool) {
        self.read_some(data);
        if self.mode == Mode::Json {
            if last && self.kept.is_empty() {
                // A whole answer in one frame, the common case: read where it is.
                self.read_json(data);
            } else {
                self.keep_end(data);
            }
            return;
        }
        self.lines(data);
    }

    /// Reads `data` as [`push`](Self::push) does, and writes to `out` the complete lines the
    /// client gets: OpenAI's stream as it would have been without the usage the gateway asked
    /// for (see [`strip`]).
    pub(crate) fn push_stripped(&mut self, data: &[u8], out: &mut BytesMut) {
        self.read_some(data);
        self.lines_whole(data, |scanner, line| {
            let usage_key = scanner.line(line);
            strip::line(line, usage_key, &mut scanner.dropping, out);
        });
    }

    /// The answer ended: reads what was kept for the end. Returns a stream's unfinished last
    /// line, for a stripped stream to pass on.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let kept = std::mem::take(&mut self.kept);
        if self.mode == Mode::Events {
            self.kept_line(&kept);
            return kept;
        }
        self.read_json(&kept);
        Vec::new()
    }

    /// Reads the usage object of a JSON answer (or its end).
    fn read_json(&mut self, json: &[u8]) {
        self.read_last_usage(json);
    }

    /// Reads the last usage object of `json`, a JSON answer: the provider writes its own after
    /// the content, so a usage key before it is in what the model wrote (a tool call's
    /// arguments) and is not the provider's word. A key whose value is not an object
    /// (`"usage": null`) is passed over for the one before it. (An event's is read the same
    /// way, from the keys its one search found: see [`data`](Self::data).)
    ///
    /// The key is searched forwards (a vector search, several times faster per byte than one
    /// backwards), in the answer's last [`TAIL`] bytes first, where the usage is; the bytes
    /// before them only if those hold none.
    fn read_last_usage(&mut self, json: &[u8]) {
        let key = self.format.usage_key();
        let mut end = json.len();
        loop {
            let start = end.saturating_sub(TAIL);
            // Keys found in order, overlapping ones too (`"usage"usage":`, whose quote is
            // shared, as a backward search finds them).
            let mut keys = KeysAt::default();
            let mut from = start;
            while let Some(at) = key.find(&json[from..end]) {
                keys.push(from + at);
                from += at + 1;
            }
            if self.read_usage_at_last(json, keys) || start == 0 {
                return;
            }
            // A key cut by `start` is whole in what comes before it.
            end = start + key.needle().len() - 1;
        }
    }

    /// Reads the last of the usage objects whose keys are at `keys` that is one; returns
    /// whether one was.
    fn read_usage_at_last(&mut self, json: &[u8], keys: KeysAt) -> bool {
        keys.last_first().any(|at| self.usage_at(json, at))
    }

    /// The usage of what was read: as reported, when the answer ended (`complete`) and
    /// reported it; otherwise what was reported, the rest estimated (output from the text
    /// seen — or as reported, if more: Anthropic reports a placeholder at the start —, input
    /// from the request's `request_len` bytes). `None` when nothing was read.
    pub(crate) fn usage(&self, request_len: usize, complete: bool) -> Option<Usage> {
        // A stream is complete when its last event came, not when its connection closed.
        let complete =
            complete && (self.mode == Mode::Json || self.progress == Progress::LastEvent);
        if complete && let Some(usage) = self.fields.usage(self.format) {
            return Some(usage);
        }
        if self.progress == Progress::Nothing {
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

    fn read_some(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.progress = self.progress.max(Progress::Some);
        }
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
    fn lines(&mut self, data: &[u8]) {
        let mut rest = data;
        if !self.kept.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.keep_cut(rest);
                return;
            };
            let mut line = std::mem::take(&mut self.kept);
            line.extend_from_slice(&rest[..end]);
            self.kept_line(&line);
            line.clear();
            self.kept = line;
            rest = &rest[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', rest) {
            self.line(&rest[start..end]);
            start = end + 1;
        }
        self.keep_cut(&rest[start..]);
    }

    /// Reads a line that was kept across frames: whole, or only its end when it was too long
    /// to keep (see [`keep_cut`](Self::keep_cut)).
    fn kept_line(&mut self, line: &[u8]) {
        if std::mem::take(&mut self.cut_head) {
            self.data(line);
        } else {
            self.line(line);
        }
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

    /// Keeps a cut line to complete with the next frame. One that grows past [`MAX_LINE`]
    /// keeps only its last [`WINDOW`] bytes, where an event's usage is (a Responses API
    /// `response.completed` carrying a generated image can be megabytes long).
    fn keep_cut(&mut self, cut: &[u8]) {
        self.kept.extend_from_slice(cut);
        if self.kept.len() > MAX_LINE {
            self.cut_head |= self.kept.starts_with(b"data:");
            self.kept.drain(..self.kept.len() - WINDOW);
        }
    }

    /// Reads one line of a stream: a `data:` line's usage, and its text for an estimate.
    /// Returns where in the line its first usage key is, for [`strip`] not to search again.
    fn line(&mut self, line: &[u8]) -> Option<usize> {
        const DATA: &[u8] = b"data:";
        if let Some(data) = line.strip_prefix(DATA) {
            return self.data(data).map(|at| DATA.len() + at);
        } else if line.starts_with(b"event:") && self.format.end_marker().find(line).is_some() {
            // `event: response.completed`: said before its data, which may be too long to
            // keep whole.
            self.progress = Progress::LastEvent;
        }
        None
    }

    /// Reads the data of an event (or the end of it), in one search for all its keys.
    /// Returns where its first usage key is.
    fn data(&mut self, data: &[u8]) -> Option<usize> {
        let keys = self.format.event_keys();
        // The event's own usage object is its last: a usage key earlier in the line is in
        // what the model wrote (a tool call's arguments), and is not the provider's word.
        let mut usage_keys = KeysAt::default();
        let mut from = 0;
        // Each search resumes a byte after the last key's start, so that keys sharing a quote
        // (`"usage"usage":`) are all found.
        while let Some(found) = keys.find(data, from) {
            match found.pattern().as_usize() {
                USAGE_KEY => usage_keys.push(found.start()),
                END_MARKER => self.progress = Progress::LastEvent,
                _text => {
                    let chars = string_chars(&data[found.end()..]);
                    self.text_chars = self.text_chars.saturating_add(chars);
                }
            }
            from = found.start() + 1;
        }
        let first = usage_keys.first();
        self.read_usage_at_last(data, usage_keys);
        first
    }

    /// Reads the usage object whose key starts at `at` in `json`, if its value is one; returns
    /// whether it was.
    fn usage_at(&mut self, json: &[u8], at: usize) -> bool {
        let key = self.format.usage_key().needle().len();
        let value = skip_space(&json[at + key..]);
        let Some(value) = value.strip_prefix(b":") else {
            return false;
        };
        let value = skip_space(value);
        let read = (value.first() == Some(&b'{'))
            .then(|| Fields::read(value))
            .flatten();
        read.map(|fields| self.fields.merge(fields)).is_some()
    }
}

/// Where a key was found, in order; rarely more than once, so only a second place allocates.
#[derive(Default)]
struct KeysAt {
    last: Option<usize>,
    earlier: Vec<usize>,
}

impl KeysAt {
    fn push(&mut self, at: usize) {
        self.earlier.extend(self.last.replace(at));
    }

    fn first(&self) -> Option<usize> {
        self.earlier.first().copied().or(self.last)
    }

    /// The places, the last first.
    fn last_first(self) -> impl Iterator<Item = usize> {
        self.last.into_iter().chain(self.earlier.into_iter().rev())
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
