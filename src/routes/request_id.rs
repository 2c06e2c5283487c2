//! Request ids: every request carries one (the client's own, or one made here), and its
//! response carries it back, so a client and the logs can name the same request.
//!
//! Written here rather than taken from tower-http (`SetRequestId`, `PropagateRequestId`): one
//! service does both, with ids made without `format!` or a system call, and the response
//! always carries the request's id, even when the upstream put an id of its own on its
//! answer (the client names the request by the id it sent or was given).

use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use http::header::Entry;
use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The request id header.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `x-request-id` values: a random per-process prefix and a counter. Unique and cheap: no
/// system call per request, unlike a fresh random UUID.
#[derive(Clone, Debug)]
pub(crate) struct SequentialRequestId(Arc<Ids>);

/// One allocation for both, so a clone is one count.
#[derive(Debug)]
struct Ids {
    /// 16 hex digits.
    prefix: [u8; 16],
    next: AtomicU64,
}

impl SequentialRequestId {
    pub(crate) fn new() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        let mut prefix = [0; 16];
        prefix.copy_from_slice(format!("{seed:016x}").as_bytes());
        Self(Arc::new(Ids {
            prefix,
            next: AtomicU64::new(0),
        }))
    }

    /// The next id.
    pub(crate) fn next(&self) -> HeaderValue {
        let n = self.0.next.fetch_add(1, Ordering::Relaxed);
        // Written by hand: `format!` costs more than the rest of the id's making.
        let mut id = [0u8; 16 + 1 + 16];
        id[..16].copy_from_slice(&self.0.prefix);
        id[16] = b'-';
        let digits = (u64::BITS - n.leading_zeros()).div_ceil(4).max(1) as usize;
        for (i, byte) in id[17..17 + digits].iter_mut().rev().enumerate() {
            *byte = b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize];
        }
        // Owned by one shared allocation: the request and the response each hold the id,
        // and a clone of it is then a count, where a copied value's first clone allocates
        // again to share it.
        let id = bytes::Bytes::from_owner(id).slice(..17 + digits);
        HeaderValue::from_maybe_shared(id).expect("hex digits and a dash make a header value")
    }
}

/// Gives each request an id (see [`SetRequestId`]).
#[derive(Clone, Debug)]
pub(crate) struct RequestIdLayer {
    ids: SequentialRequestId,
}

impl RequestIdLayer {
    pub(crate) fn new(ids: SequentialRequestId) -> Self {
        Self { ids }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = SetRequestId<S>;

    fn layer(&self, inner: S) -> SetRequestId<S> {
        SetRequestId {
            inner,
            ids: self.ids.clone(),
        }
    }
}

/// Keeps the client's `x-request-id` (it goes upstream as sent) or sets the next one, and
/// puts it on the response.
#[derive(Clone, Debug)]
pub(crate) struct SetRequestId<S> {
    inner: S,
    ids: SequentialRequestId,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SetRequestId<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // One look for the header, whether it is there or not.
        let id = match request.headers_mut().entry(REQUEST_ID) {
            Entry::Occupied(sent) => sent.get().clone(),
            Entry::Vacant(none) => none.insert(self.ids.next()).clone(),
        };
        RequestIdFuture {
            inner: self.inner.call(request),
            id: Some(id),
        }
    }
}

pin_project! {
    /// The inner service's answer, with the request's id.
    pub(crate) struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_the_prefix_and_the_counter_in_hex() {
        let ids = SequentialRequestId::new();
        let prefix = std::str::from_utf8(&ids.0.prefix).unwrap().to_owned();
        assert_eq!(prefix.len(), 16);
        for n in [0, 1, 15, 16, 255, 0x1234_abcd, u64::MAX - 1, u64::MAX] {
            ids.0.next.store(n, Ordering::Relaxed);
            assert_eq!(ids.next().to_str().unwrap(), format!("{prefix}-{n:x}"));
        }
    }
}
