//! [`AuthLayer`] and its settings.

use std::sync::Arc;

use http::HeaderValue;
use llm_tower_core::Endpoint;
use tower::Layer;

use crate::service::Auth;

#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) endpoint: Option<Arc<Endpoint>>,
    pub(crate) forward_client_credentials: bool,
    pub(crate) user_agent: Option<HeaderValue>,
}

/// Layer that rewrites credentials; see the [crate documentation](crate).
///
/// ```
/// use llm_tower_auth::AuthLayer;
///
/// // For the balanced stack: the endpoint comes from each request's `Selected`.
/// let layer = AuthLayer::new().user_agent(Some("my-gateway/1".parse().unwrap()));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct AuthLayer {
    settings: Arc<Settings>,
}

impl AuthLayer {
    /// A layer that uses the [`Selected`](llm_tower_core::Selected) endpoint of each request. A request without one is
    /// refused.
    pub fn new() -> Self {
        Self {
            settings: Arc::new(Settings {
                endpoint: None,
                forward_client_credentials: false,
                user_agent: Some(HeaderValue::from_static(llm_tower_core::USER_AGENT)),
            }),
        }
    }

    /// A layer for a single fixed endpoint, used when a request carries no
    /// [`Selected`](llm_tower_core::Selected).
    pub fn for_endpoint(endpoint: impl Into<Arc<Endpoint>>) -> Self {
        let mut layer = Self::new();
        layer.settings_mut().endpoint = Some(endpoint.into());
        layer
    }

    /// Bring-your-own-key mode: when the endpoint has no key of its own (or there is no
    /// endpoint at all), keep the client's credential headers (`proxy-authorization` is still
    /// removed). Off by default.
    #[must_use]
    pub fn forward_client_credentials(mut self, forward: bool) -> Self {
        self.settings_mut().forward_client_credentials = forward;
        self
    }

    /// Whether clients' credentials are kept for endpoints without a key.
    ///
    /// ```
    /// use llm_tower_auth::AuthLayer;
    ///
    /// assert!(!AuthLayer::new().forwards_client_credentials());
    /// assert!(AuthLayer::new().forward_client_credentials(true).forwards_client_credentials());
    /// ```
    pub fn forwards_client_credentials(&self) -> bool {
        self.settings.forward_client_credentials
    }

    /// The `user-agent` sent upstream; `None` keeps the client's. Default
    /// `llm-tower/<version>`.
    #[must_use]
    pub fn user_agent(mut self, user_agent: Option<HeaderValue>) -> Self {
        self.settings_mut().user_agent = user_agent;
        self
    }

    fn settings_mut(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }
}

impl Default for AuthLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth::new(inner, self.settings.clone())
    }
}
