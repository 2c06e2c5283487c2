//! [`TranslateLayer`].

use tower::Layer;

use crate::service::Translate;

/// Layer for [`Translate`]: put it inside the balancer and outside retry, so that each attempt
/// is translated for the deployment it goes to, and retries resend the translated request.
///
/// ```
/// use llm_tower_translate::TranslateLayer;
///
/// let layer = TranslateLayer::new();
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TranslateLayer {
    _private: (),
}

impl TranslateLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for TranslateLayer {
    type Service = Translate<S>;

    fn layer(&self, inner: S) -> Translate<S> {
        Translate::new(inner)
    }
}
