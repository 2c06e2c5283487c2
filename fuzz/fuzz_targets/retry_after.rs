//! The `Retry-After` parser must never panic, and never return a wait for a value that is not
//! a plain non-negative number or an HTTP-date.
#![no_main]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use llm_tower_core::retry_after_at;

fuzz_target!(|input: (u8, &[u8])| {
    let (which, bytes) = input;
    let Ok(value) = HeaderValue::from_bytes(bytes) else {
        return;
    };
    let name = match which % 3 {
        0 => "retry-after",
        1 => "retry-after-ms",
        _ => "x-ms-retry-after-ms",
    };
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if let Some(wait) = retry_after_at(&headers, now) {
        let text = std::str::from_utf8(bytes).unwrap_or_default().trim();
        let numeric = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        assert!(numeric || name == "retry-after", "{name}: {text:?} -> {wait:?}");
    }
});
