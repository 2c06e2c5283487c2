//! [`Auth`], the service: strips client credentials and sets the endpoint's.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use llm_tower_core::{BoxError, CredentialsSet, Error, ErrorKind, Selected};
use tower::Service;

use crate::future::ResponseFuture;
use crate::headers::{rewrite_headers, strip_key_query};
use crate::layer::Settings;

/// Service that rewrites credentials; built by [`AuthLayer`](crate::AuthLayer).
///
/// ```
/// use llm_tower_auth::{Auth, AuthLayer};
/// use tower::Layer;
///
/// let auth: Auth<()> = AuthLayer::new().layer(());
/// assert_eq!(auth.get_ref(), &());
/// ```
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Auth<S> {
    pub(crate) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }

    llm_tower_core::define_inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let settings = &*self.settings;
        let selected = Selected::of(request.extensions()).map(|s| s.0.clone());
        let endpoint = selected.as_deref().or(settings.endpoint.as_deref());
        let keep_client = settings.forward_client_credentials
            && endpoint.is_none_or(|e| e.credential().is_none());
        if endpoint.is_none() && !keep_client {
            return ResponseFuture::failed(no_endpoint());
        }
        rewrite_headers(
            request.headers_mut(),
            endpoint,
            keep_client,
            settings.user_agent.as_ref(),
        );
        if !keep_client {
            strip_key_query(request.uri_mut());
        }
        CredentialsSet::mark(request.extensions_mut());
        ResponseFuture::inner(self.inner.call(request))
    }
}

/// The misuse error: nobody said which endpoint this request goes to. Nothing is sent.
fn no_endpoint() -> Error {
    Error::new(
        ErrorKind::Internal,
        "llm-tower's AuthLayer received a request without a selected endpoint; put it inside \
         FallbackLayer (which selects one) or build it with AuthLayer::for_endpoint",
    )
}
