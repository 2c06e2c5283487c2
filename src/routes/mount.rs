//! Where the stack is mounted: which paths are its, and the path it sees of them (the mount
//! stripped, as axum's `nest_service` does). The router routes the mount's paths to the
//! stack's route ([`Mount::route`]); the server asks [`Mount::claims`] to take them there
//! past the router. Both answers are written here, beside each other.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use http::uri::PathAndQuery;
use http::{Request, Uri};
use tower::{Layer, Service};

/// The mount path, and what the router answers itself under it.
#[derive(Clone)]
pub(crate) struct Mount(Arc<Paths>);

struct Paths {
    /// The mount path without its trailing slash (empty: everything but `others`).
    prefix: Box<str>,
    /// Paths the router serves itself, when the mount is the root.
    others: Vec<&'static str>,
    /// Whether the router answers `{mount}/models` (and `/models/{id}`) itself.
    models: bool,
}

impl fmt::Debug for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mount")
            .field("prefix", &self.0.prefix)
            .finish_non_exhaustive()
    }
}

impl Mount {
    /// `mount` as configured; `others`, the paths the router serves itself; `models`,
    /// whether it answers `{mount}/models` itself.
    pub(crate) fn new(mount: &str, others: Vec<&'static str>, models: bool) -> Self {
        Self(Arc::new(Paths {
            prefix: mount.trim_end_matches('/').into(),
            others,
            models,
        }))
    }

    /// The mount path without its trailing slash (empty for the root).
    pub(crate) fn prefix(&self) -> &str {
        &self.0.prefix
    }

    /// `router` with `service` at the mount: the paths `nest_service` would give it (the
    /// mount, the mount with a slash, and everything under it), or every path the router
    /// does not serve itself when the mount is the root. The path is left as it is: the
    /// service strips the mount itself ([`Mounted`]), inside the request's span.
    pub(crate) fn route<S>(&self, router: Router, service: S) -> Router
    where
        S: Service<Request<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Response: IntoResponse,
        S::Future: Send + 'static,
    {
        let prefix = self.prefix();
        if prefix.is_empty() {
            return router.fallback_service(service);
        }
        router
            .route_service(prefix, service.clone())
            .route_service(&format!("{prefix}/"), service.clone())
            .route_service(&format!("{prefix}/{{*rest}}"), service)
    }

    /// Whether `path` is the stack's: what the router's routing would say.
    pub(crate) fn claims(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix(self.prefix()) else {
            return false;
        };
        let models = self.0.models
            && rest
                .strip_prefix("/models")
                .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'));
        if models {
            return false;
        }
        if self.prefix().is_empty() {
            return !self.0.others.contains(&path);
        }
        rest.is_empty() || rest.starts_with('/')
    }

    /// What `nest_service` does: the request goes on with the path under the mount.
    fn strip(&self, uri: &mut Uri) {
        let prefix = self.prefix();
        if prefix.is_empty() {
            return;
        }
        let Some(rest) = uri
            .path_and_query()
            .map(PathAndQuery::as_str)
            .and_then(|pq| pq.get(prefix.len()..))
        else {
            return;
        };
        let stripped = if rest.starts_with('/') {
            PathAndQuery::try_from(rest)
        } else {
            PathAndQuery::try_from(format!("/{rest}"))
        };
        if let Ok(stripped) = stripped {
            let mut parts = std::mem::take(uri).into_parts();
            parts.path_and_query = Some(stripped);
            *uri = Uri::from_parts(parts).unwrap_or_default();
        }
    }
}

impl<S> Layer<S> for Mount {
    type Service = Mounted<S>;

    fn layer(&self, inner: S) -> Mounted<S> {
        Mounted {
            inner,
            mount: self.clone(),
        }
    }
}

/// The inner service sees the path under the mount.
#[derive(Clone, Debug)]
pub(crate) struct Mounted<S> {
    inner: S,
    mount: Mount,
}

impl<S, B> Service<Request<B>> for Mounted<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        self.mount.strip(request.uri_mut());
        self.inner.call(request)
    }
}
