//! The top-level `model` of a JSON request body, found without building a document, and the
//! body with only that value's bytes replaced.

use std::ops::Range;

use bytes::Bytes;

pub use found::{ModelInBody, TopLevel};

use super::ModelName;
use crate::body::BufferedBody;

mod found;

/// Finds the top-level `model` of a JSON body in one pass over its bytes, without building a
/// document: nested values are skipped by their brackets and strings (found with `memchr`),
/// and only the keys of the top-level object are read. The whole top level is read, so that
/// a second `model` key is noticed.
///
/// ```
/// use llm_tower_core::{ModelInBody, find_model};
///
/// let body = br#"{"messages": [{"role": "user", "content": "model"}], "model": "gpt-4o"}"#;
/// let ModelInBody::Named { name, span } = find_model(body) else { panic!() };
/// assert_eq!(&*name, "gpt-4o");
/// assert_eq!(&body[span], b"gpt-4o");
/// assert_eq!(find_model(b"not json"), ModelInBody::Absent);
/// assert_eq!(find_model(br#"{"model": "a", "model": "b"}"#), ModelInBody::Duplicate);
/// ```
pub fn find_model(body: &[u8]) -> ModelInBody {
    find_model_and(body, []).0
}

/// [`find_model`], and each of `keys` as [`find_top_level`] finds it, in one pass over the
/// body: what each would find on its own, and for each key whether it is there more than once
/// (a body that is malformed past a key's second value still has that key twice; one broken
/// inside it does not).
///
/// ```
/// use llm_tower_core::{ModelInBody, TopLevel, find_model_and};
///
/// let body = br#"{"model": "gpt-4o", "messages": [], "stream": true}"#;
/// let (model, [stream, options]) = find_model_and(body, ["stream", "stream_options"]);
/// assert!(matches!(model, ModelInBody::Named { name, .. } if &*name == "gpt-4o"));
/// assert_eq!(stream.at().map(|at| &body[at]), Some(&b"true"[..]));
/// assert_eq!(options, TopLevel::Absent);
/// ```
pub fn find_model_and<const N: usize>(
    body: &[u8],
    keys: [&str; N],
) -> (ModelInBody, [TopLevel; N]) {
    const { assert!(N < 64, "each want is a bit below the model's") };
    let mut model = Wanted::new(b"model", false);
    let mut wanted = keys.map(|key| Wanted::new(key.as_bytes(), true));
    let mut scanner = Scanner { body, at: 0 };
    // A body that is not well-formed names no model: past the fault, a lenient parser
    // upstream (comments, JSON5) could read another `model` than the one found before it.
    // What was found twice before the fault stays so: a scan for that key alone stops at
    // its second value.
    if scanner.top_level(Some(&mut model), &mut wanted).is_err() {
        for wanted in std::iter::once(&mut model).chain(&mut wanted) {
            if !matches!(wanted.found, Some(Found::Duplicate)) {
                wanted.found = None;
            }
        }
    }
    let model = match model.found {
        Some(Found::Duplicate) => ModelInBody::Duplicate,
        Some(Found::String(span, escaped)) => match decode(body, &span, escaped) {
            Some(name) => ModelInBody::Named { name, span },
            None => ModelInBody::Absent,
        },
        Some(Found::NotString | Found::Value(_)) | None => ModelInBody::Absent,
    };
    let values = wanted.map(|wanted| match wanted.found {
        Some(Found::Value(at)) => TopLevel::At(at),
        Some(Found::Duplicate) => TopLevel::Repeated,
        _ => TopLevel::Absent,
    });
    (model, values)
}

/// Where the value of the top-level `key` of a JSON object `body` is, as it is written (a
/// string with its quotes), found in one pass as [`find_model`] finds the model: `None` when
/// the body is not a well-formed object, has no such key or has it twice. Keys are matched
/// exactly (and written without escapes).
///
/// ```
/// use llm_tower_core::find_top_level;
///
/// let body = br#"{"messages": [{"content": ""stream": true"}], "stream" : true}"#;
/// let at = find_top_level(body, "stream").unwrap();
/// assert_eq!(&body[at], b"true");
/// assert_eq!(find_top_level(br#"{"meta": {"stream": true}}"#, "stream"), None);
/// ```
pub fn find_top_level(body: &[u8], key: &str) -> Option<Range<usize>> {
    let mut wanted = [Wanted::new(key.as_bytes(), true)];
    Scanner { body, at: 0 }.top_level(None, &mut wanted).ok()?;
    match wanted[0].found.take()? {
        Found::Value(at) => Some(at),
        _ => None,
    }
}

/// Calls `each` with every member of the JSON object at the start of `json` (after spaces): its
/// key as written between the quotes (escapes left as they are), and where its value is in
/// `json`. One pass, without building a document, as [`find_model`] reads a body; what
/// follows the object is not read. Returns where the object ends, or `None` when `json` does
/// not start with a well-formed object (`each` may have seen some of its members).
///
/// ```
/// use llm_tower_core::for_each_member;
///
/// let json = br#"{"prompt_tokens": 9, "details": {"cached_tokens": 0}} and more"#;
/// let mut members = Vec::new();
/// let end = for_each_member(json, |key, value| members.push((key.to_vec(), value)));
/// assert_eq!(end, Some(53));
/// assert_eq!(members[0], (b"prompt_tokens".to_vec(), 18..19));
/// assert_eq!(&json[members[1].1.clone()], br#"{"cached_tokens": 0}"#);
/// assert_eq!(for_each_member(b"[1, 2]", |_, _| {}), None);
/// ```
pub fn for_each_member(json: &[u8], mut each: impl FnMut(&[u8], Range<usize>)) -> Option<usize> {
    let mut scanner = Scanner { body: json, at: 0 };
    scanner.whitespace();
    scanner.expect(b'{').ok()?;
    scanner.whitespace();
    if scanner.peek() == Some(b'}') {
        return Some(scanner.at + 1);
    }
    loop {
        scanner.whitespace();
        let (key, _) = scanner.string().ok()?;
        scanner.whitespace();
        scanner.expect(b':').ok()?;
        scanner.whitespace();
        let start = scanner.at;
        scanner.skip_value().ok()?;
        each(&json[key], start..scanner.at);
        scanner.whitespace();
        match scanner.next()? {
            b',' => {}
            b'}' => return Some(scanner.at),
            _ => return None,
        }
    }
}

/// `body` with the characters of the `model` value at `span` (from [`find_model`]) replaced
/// by `name`, JSON-escaped. Every other byte is the same, and none is copied: the result is
/// the bytes before, the new value and the bytes after.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::BodyExt;
/// use llm_tower_core::{ModelInBody, find_model, with_model};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = Bytes::from_static(br#"{ "model" : "gpt-4o", "stream":true }"#);
/// let ModelInBody::Named { span, .. } = find_model(&body) else { panic!() };
/// let rewritten = with_model(&body, span, "gpt4o-\"prod\"");
/// let bytes = rewritten.collect().await.unwrap().to_bytes();
/// assert_eq!(bytes, r#"{ "model" : "gpt4o-\"prod\"", "stream":true }"#);
/// # }
/// ```
pub fn with_model(body: &Bytes, span: Range<usize>, name: &str) -> BufferedBody {
    let quoted = serde_json::to_string(name).expect("a string serialises");
    let end = quoted.len() - 1;
    let value = Bytes::from(quoted).slice(1..end);
    BufferedBody::spliced([body.slice(..span.start), value, body.slice(span.end..)])
}

enum Found {
    String(Range<usize>, bool),
    /// The value as written (with `raw`).
    Value(Range<usize>),
    NotString,
    Duplicate,
}

/// What a top-level key is to the scan.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    /// The key looked for.
    Wanted,
    /// The key looked for in other letter cases.
    OtherCase,
    Other,
}

/// The body is malformed here; the scan stops.
struct Malformed;

/// A key a scan looks for, and what it found of it.
struct Wanted<'k> {
    key: &'k [u8],
    /// Its value is wanted as written, whatever it is; and other letter cases of the key are
    /// other keys.
    raw: bool,
    found: Option<Found>,
}

impl<'k> Wanted<'k> {
    fn new(key: &'k [u8], raw: bool) -> Self {
        Self {
            key,
            raw,
            found: None,
        }
    }

    /// What the key `name` (`None`: escaped past decoding) is to this want.
    fn kind(&self, name: Option<&[u8]>) -> Key {
        match name {
            Some(name) if name == self.key => Key::Wanted,
            Some(name) if !self.raw && name.eq_ignore_ascii_case(self.key) => Key::OtherCase,
            _ => Key::Other,
        }
    }

    fn settled(&self) -> bool {
        matches!(self.found, Some(Found::Duplicate))
    }
}

/// The bit of the model's want, among the others' (see [`Scanner::top_level`]).
const MODEL_BIT: u64 = 1 << 63;

struct Scanner<'a> {
    body: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    /// Reads the top-level object's members, noting in each want where its key is. Stops when
    /// every want has its key twice (nothing more to learn).
    fn top_level<'k>(
        &mut self,
        mut model: Option<&mut Wanted<'k>>,
        wanted: &mut [Wanted<'k>],
    ) -> Result<(), Malformed> {
        self.whitespace();
        self.expect(b'{')?;
        self.whitespace();
        if self.peek() == Some(b'}') {
            return Ok(());
        }
        loop {
            self.whitespace();
            let (key, escaped) = self.string()?;
            self.whitespace();
            self.expect(b':')?;
            self.whitespace();
            let decoded = escaped.then(|| decode(self.body, &key, true));
            let name = match &decoded {
                Some(decoded) => decoded.as_deref().map(str::as_bytes),
                None => Some(&self.body[key]),
            };
            // The wants this member is new to, and those that had its key already (one bit
            // each, the model's the highest).
            let mut new = 0u64;
            let mut again = 0u64;
            let mut meet = |want: &Wanted<'_>, bit: u64| match want.kind(name) {
                Key::Other => {}
                _ if want.found.is_some() => again |= bit,
                _ => new |= bit,
            };
            if let Some(model) = model.as_deref() {
                meet(model, MODEL_BIT);
            }
            for (i, want) in wanted.iter().enumerate() {
                meet(want, 1 << i);
            }
            // Most members are no want's: their value is skipped.
            if new == 0 {
                self.skip_value()?;
            } else {
                self.note_value(name, new, model.as_deref_mut(), wanted)?;
            }
            // A key met again is there twice once its value is read whole: a body broken
            // inside that value names nothing, as one broken anywhere else.
            if again != 0 {
                let twice = |want: &mut Wanted<'_>, bit: u64| {
                    if again & bit != 0 {
                        want.found = Some(Found::Duplicate);
                    }
                };
                if let Some(model) = model.as_deref_mut() {
                    twice(model, MODEL_BIT);
                }
                for (i, want) in wanted.iter_mut().enumerate() {
                    twice(want, 1 << i);
                }
                if model.as_deref().is_none_or(Wanted::settled)
                    && wanted.iter().all(Wanted::settled)
                {
                    return Ok(());
                }
            }
            self.whitespace();
            match self.next() {
                Some(b',') => {}
                Some(b'}') => return Ok(()),
                _ => return Err(Malformed),
            }
        }
    }

    /// Reads the value of the member called `name`, and notes it in the wants it is new to
    /// (the bits of `new`, as [`top_level`](Self::top_level) numbers them).
    fn note_value<'k>(
        &mut self,
        name: Option<&[u8]>,
        new: u64,
        model: Option<&mut Wanted<'k>>,
        wanted: &mut [Wanted<'k>],
    ) -> Result<(), Malformed> {
        // Skipping a string and reading it end in the same place.
        let start = self.at;
        let string = if self.peek() == Some(b'"') {
            Some(self.string()?)
        } else {
            self.skip_value()?;
            None
        };
        let value = start..self.at;
        let note = |want: &mut Wanted<'_>| {
            want.found = Some(match (want.kind(name), &string) {
                (Key::Wanted, _) if want.raw => Found::Value(value.clone()),
                (Key::Wanted, Some((value, escaped))) => Found::String(value.clone(), *escaped),
                // `MODEL`, `Model`: no model for a strict parser, the model for the parsers
                // that match keys without case (Go's, ASP.NET's). With `model` too, it is a
                // duplicate; alone, it is a key to skip, noted.
                _ => Found::NotString,
            });
        };
        if let Some(model) = model.filter(|_| new & MODEL_BIT != 0) {
            note(model);
        }
        for (i, want) in wanted.iter_mut().enumerate() {
            if new & (1 << i) != 0 {
                note(want);
            }
        }
        Ok(())
    }

    fn peek(&self) -> Option<u8> {
        self.body.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Result<(), Malformed> {
        if self.next() == Some(byte) {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string starting at its opening quote: the range of its characters, and whether it
    /// has escapes. Inlined: most strings are short keys, and a call's saving and restoring
    /// of registers cost more than finding their end (measured: `#[inline]` alone left it a
    /// call).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn string(&mut self) -> Result<(Range<usize>, bool), Malformed> {
        self.expect(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            let offset = quote_or_backslash(&self.body[self.at..]).ok_or(Malformed)?;
            self.at += offset;
            if self.body[self.at] == b'"' {
                self.at += 1;
                return Ok((start..self.at - 1, escaped));
            }
            // A backslash and the character it escapes (`\"` must not end the string).
            escaped = true;
            self.at += 2;
            if self.at > self.body.len() {
                return Err(Malformed);
            }
        }
    }

    /// Skips one value: a string, an object or array (by its brackets, strings inside read
    /// as strings), or a number or literal.
    fn skip_value(&mut self) -> Result<(), Malformed> {
        match self.peek().ok_or(Malformed)? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                // Brackets of either kind count alike: in valid JSON they nest, and a body
                // that is not valid is the upstream's to reject. Strings, where the bulk of a
                // large body is, are skipped whole.
                let mut depth = 0usize;
                loop {
                    match self.peek().ok_or(Malformed)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    self.at += 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                Ok(())
            }
        }
    }
}

/// Where the first `"` or `\` of `bytes` is. Most strings a scan meets are keys and short
/// values: their end is found eight bytes at a time in a register, where `memchr2` would pay
/// its setup for each; past the first 32 bytes (message text) it is `memchr2`'s.
#[allow(clippy::inline_always)] // as `Scanner::string`, which it is the heart of
#[inline(always)]
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = ONES << 7;
    // The high bit of each byte of `word` that is zero: exact for the first such byte (the
    // borrow can only mark bytes after it), which is the only one read.
    let zeros = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut at = 0;
    while at < 32
        && let Some(chunk) = bytes.get(at..at + 8)
    {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found =
            zeros(word ^ (ONES * u64::from(b'"'))) | zeros(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    quote_or_backslash_past(bytes, at)
}

/// [`quote_or_backslash`] past the first `at` bytes: out of line, so that the short strings'
/// way keeps its registers.
#[cold]
#[inline(never)]
fn quote_or_backslash_past(bytes: &[u8], at: usize) -> Option<usize> {
    memchr::memchr2(b'"', b'\\', &bytes[at..]).map(|offset| at + offset)
}

/// The characters at `span` as a string, escapes decoded (`None` if they are not valid).
fn decode(body: &[u8], span: &Range<usize>, escaped: bool) -> Option<ModelName> {
    if !escaped {
        return std::str::from_utf8(&body[span.clone()])
            .ok()
            .map(Into::into);
    }
    // With its quotes, the token is a JSON string on its own.
    let token = &body[span.start - 1..=span.end];
    serde_json::from_slice::<String>(token).ok().map(Into::into)
}

#[cfg(test)]
mod tests;
