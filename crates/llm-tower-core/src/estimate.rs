//! What a request is expected to use before it is sent: its input at about 4 bytes a token,
//! and the output it allows (`max_tokens` and the like, else [`DEFAULT_OUTPUT`]). For the
//! limits a client is held to, and for a deployment's rate-limit window a request must fit.

use crate::{Usage, find_top_level};

/// The output expected of a request that sets no limit of its own.
pub const DEFAULT_OUTPUT: u64 = 4096;

/// The fields in which the APIs limit a request's output.
const OUTPUT_LIMITS: [&str; 3] = ["max_completion_tokens", "max_tokens", "max_output_tokens"];

/// The tokens `body` is expected to use: its input by its size, its output by its limit.
///
/// ```
/// use llm_tower_core::{DEFAULT_OUTPUT, estimate_usage};
///
/// let body = br#"{"model":"m","max_tokens":100,"messages":[]}"#;
/// let usage = estimate_usage(body);
/// assert_eq!((usage.input, usage.output), (body.len() as u64 / 4, 100));
/// assert_eq!(estimate_usage(b"{}").output, DEFAULT_OUTPUT);
/// ```
pub fn estimate_usage(body: &[u8]) -> Usage {
    let output = OUTPUT_LIMITS
        .iter()
        .find_map(|field| {
            let at = find_top_level(body, field)?;
            std::str::from_utf8(&body[at]).ok()?.parse::<u64>().ok()
        })
        .unwrap_or(DEFAULT_OUTPUT);
    Usage {
        input: body.len() as u64 / 4,
        output,
        ..Usage::default()
    }
}
