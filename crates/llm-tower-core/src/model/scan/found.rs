//! What a scan of a request body finds: its model ([`ModelInBody`]) and the other top-level
//! members it was asked for ([`TopLevel`]).

use std::ops::Range;

#[cfg(doc)]
use super::{find_model, find_model_and, find_top_level};
use crate::model::ModelName;

/// What a request body says about its model (see [`find_model`]).
///
/// ```
/// use llm_tower_core::{ModelInBody, find_model};
///
/// let body = br#"{"model": "claude-sonnet-4", "max_tokens": 64, "messages": []}"#;
/// match find_model(body) {
///     ModelInBody::Named { name, .. } => assert_eq!(&*name, "claude-sonnet-4"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelInBody {
    /// The top-level `model` is this string; `span` is where its value's characters are in the
    /// body, between the quotes.
    Named {
        /// The name, JSON escapes decoded.
        name: ModelName,
        /// The value's bytes in the body, quotes excluded.
        span: Range<usize>,
    },
    /// Not a JSON object, or no top-level `model` string in it (absent, `null`, a number).
    Absent,
    /// The top-level object has `model` more than once. Parsers disagree on which one counts
    /// (most take the last), so such a request could be routed by one name and served by
    /// another: it is refused.
    Duplicate,
}

/// A top-level member of a JSON object, as [`find_model_and`] finds it.
///
/// ```
/// use llm_tower_core::{TopLevel, find_model_and};
///
/// let body = br#"{"stream": true, "n": 1, "n": 2}"#;
/// let (_, [stream, n, seed]) = find_model_and(body, ["stream", "n", "seed"]);
/// assert_eq!(stream, TopLevel::At(11..15));
/// assert_eq!(n, TopLevel::Repeated);
/// assert_eq!(seed, TopLevel::Absent);
/// assert_eq!(n.at(), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopLevel {
    /// Not in the object, or the body is not a well-formed object: past a fault, a lenient
    /// parser could read a value the scan did not.
    Absent,
    /// Once: where its value is, as written (a string with its quotes).
    At(Range<usize>),
    /// More than once. Parsers disagree on which one counts (most take the last), so whoever
    /// acts on the value cannot know which one the provider reads.
    Repeated,
}

impl TopLevel {
    /// Where the value is, when the key is there once ([`find_top_level`]'s answer).
    #[must_use]
    pub fn at(self) -> Option<Range<usize>> {
        match self {
            Self::At(at) => Some(at),
            Self::Absent | Self::Repeated => None,
        }
    }
}
