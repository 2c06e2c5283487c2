//! [`Asking`]: what a deployment is asked to admit — the moment, and the tokens the request
//! is expected to use ([`Needs`], read from its body only if a deployment asks).

use std::sync::OnceLock;

use bytes::Bytes;
use llm_tower_core::estimate_usage;
use tokio::time::Instant;

/// When a deployment is asked to admit a request, and what the request is expected to use
/// (a deployment whose provider told it a tokens window that cannot hold that is skipped).
pub(crate) struct Asking<'a> {
    pub(crate) now: Instant,
    pub(crate) needs: &'a Needs,
}

/// The tokens a request is expected to use, read from its body only when a deployment asks
/// (one whose provider told a tokens window): other requests never pay the scan.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    body: Bytes,
    tokens: OnceLock<u64>,
}

impl Needs {
    pub(crate) fn new(body: Bytes) -> Self {
        Self {
            body,
            tokens: OnceLock::new(),
        }
    }

    pub(super) fn tokens(&self) -> u64 {
        *self.tokens.get_or_init(|| {
            let usage = estimate_usage(&self.body);
            usage.input.saturating_add(usage.output)
        })
    }
}
