//! The request middleware, defined once: what every request the main listener routes goes
//! through, outermost first. The router puts it over its own routes, and the stack's route
//! has it too (the same layer), so a layer added here reaches every request.

use tower::Layer;

use super::request_id::{RequestIdLayer, SequentialRequestId, SetRequestId};
use super::span::{SpanLayer, Spanned};

/// The request's id (kept from the client or made, and put on the response), then its span
/// (made with the path as the client sent it).
#[derive(Clone, Debug)]
pub(crate) struct Middleware {
    request_id: RequestIdLayer,
}

impl Middleware {
    pub(crate) fn new(ids: SequentialRequestId) -> Self {
        Self {
            request_id: RequestIdLayer::new(ids),
        }
    }
}

impl<S> Layer<S> for Middleware {
    type Service = SetRequestId<Spanned<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        self.request_id.layer(SpanLayer.layer(inner))
    }
}
