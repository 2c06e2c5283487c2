//! Request ids: every request carries one (the client's own, or one made here), and its
//! response carries it back, so a client and the logs can name the same request.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderName, HeaderValue};
use tower_http::request_id::{MakeRequestId, RequestId};

/// The request id header.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `x-request-id` values: a random per-process prefix and a counter. Unique and cheap: no
/// system call per request, unlike a fresh random UUID.
#[derive(Clone, Debug)]
pub(crate) struct SequentialRequestId {
    /// 16 hex digits.
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl SequentialRequestId {
    /// The next id.
    pub(crate) fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Written by hand: `format!` costs more than the rest of the id's making.
        let mut id = [0u8; 16 + 1 + 16];
        id[..16].copy_from_slice(self.prefix.as_bytes());
        id[16] = b'-';
        let digits = (u64::BITS - n.leading_zeros()).div_ceil(4).max(1) as usize;
        for (i, byte) in id[17..17 + digits].iter_mut().rev().enumerate() {
            *byte = b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&id[..17 + digits])
            .expect("hex digits and a dash make a header value")
    }

    pub(crate) fn new() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Self {
            prefix: format!("{seed:016x}").into(),
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        Some(RequestId::new(self.next()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_the_prefix_and_the_counter_in_hex() {
        let ids = SequentialRequestId::new();
        let prefix = ids.prefix.to_string();
        assert_eq!(prefix.len(), 16);
        for n in [0, 1, 15, 16, 255, 0x1234_abcd, u64::MAX - 1, u64::MAX] {
            ids.next.store(n, Ordering::Relaxed);
            assert_eq!(ids.next().to_str().unwrap(), format!("{prefix}-{n:x}"));
        }
    }
}
