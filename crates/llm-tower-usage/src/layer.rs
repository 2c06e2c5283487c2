//! [`UsageLayer`].

use tower::Layer;

use crate::service::ReadUsage;

/// Layer for [`ReadUsage`]: put it inside the balancer, below translation and outside retry,
/// so that each attempt's answer is read in its deployment's own API.
///
/// ```
/// use llm_tower_usage::UsageLayer;
///
/// let layer = UsageLayer::new();
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct UsageLayer {
    _private: (),
}

impl UsageLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for UsageLayer {
    type Service = ReadUsage<S>;

    fn layer(&self, inner: S) -> ReadUsage<S> {
        ReadUsage::new(inner)
    }
}
