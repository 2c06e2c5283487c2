//! The proxied path without the router: requests under the mount path go straight to the
//! stack, with the same request id, span and client keys as the router gives them. The axum
//! router stays complete on its own (it nests the same stack); this only saves the routing,
//! the per-request clone of the boxed service and the boxed response body on the hot path.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use llm_tower::UpstreamService;
use pin_project_lite::pin_project;
use tower::Service;
use tower::util::Oneshot;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::routes::client_auth::ClientKeys;
use crate::routes::{REQUEST_ID, SequentialRequestId, request_span};

/// What the stack answers with.
pub(crate) type DirectBody =
    <<UpstreamService as Service<Request<Body>>>::Response as ResponseParts>::Body;

/// Names the body type of a response type.
pub(crate) trait ResponseParts {
    type Body;
}

impl<B> ResponseParts for Response<B> {
    type Body = B;
}

/// The mounted stack and what the router would have put in front of it.
#[derive(Clone)]
pub(crate) struct Direct {
    /// The mount path without its trailing slash (empty: everything but `others`).
    mount: Arc<str>,
    /// Paths the router serves itself, when the mount is the root.
    others: Arc<[&'static str]>,
    /// Whether the router answers `{mount}/models` (and `/models/{id}`) itself.
    models: bool,
    stack: UpstreamService,
    keys: Option<ClientKeys>,
    ids: SequentialRequestId,
}

impl fmt::Debug for Direct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Direct")
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl Direct {
    pub(crate) fn new(
        mount: &str,
        others: Vec<&'static str>,
        models: bool,
        stack: UpstreamService,
        keys: Option<ClientKeys>,
        ids: SequentialRequestId,
    ) -> Self {
        Self {
            mount: mount.trim_end_matches('/').into(),
            others: others.into(),
            models,
            stack,
            keys,
            ids,
        }
    }

    /// Whether `path` is the stack's, as the router's `nest_service` (or fallback) would say.
    pub(crate) fn claims(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix(&*self.mount) else {
            return false;
        };
        let models = self.models
            && rest
                .strip_prefix("/models")
                .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'));
        if models {
            return false;
        }
        if self.mount.is_empty() {
            return !self.others.contains(&path);
        }
        rest.is_empty() || rest.starts_with('/')
    }

    pub(crate) fn call(&self, mut request: Request<Body>) -> DirectFuture {
        let span = request_span(&request);
        let id = if let Some(id) = request.headers().get(REQUEST_ID) {
            id.clone()
        } else {
            let id = self.ids.next();
            request.headers_mut().insert(REQUEST_ID, id.clone());
            id
        };
        if let Some(keys) = &self.keys
            && let Err(refusal) = keys.check(&mut request)
        {
            return DirectFuture::Refused {
                response: Some(refusal.map(Body::from)),
                id: Some(id),
            };
        }
        self.strip_mount(request.uri_mut());
        DirectFuture::Call {
            future: tower::ServiceExt::oneshot(self.stack.clone(), request).instrument(span),
            id: Some(id),
        }
    }

    /// What `nest_service` does: the request goes on with the path under the mount.
    fn strip_mount(&self, uri: &mut Uri) {
        if self.mount.is_empty() {
            return;
        }
        let Some(rest) = uri
            .path_and_query()
            .map(PathAndQuery::as_str)
            .and_then(|pq| pq.get(self.mount.len()..))
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

pin_project! {
    #[project = DirectProjection]
    pub(crate) enum DirectFuture {
        Call {
            #[pin]
            future: Instrumented<Oneshot<UpstreamService, Request<Body>>>,
            id: Option<HeaderValue>,
        },
        Refused {
            response: Option<Response<Body>>,
            id: Option<HeaderValue>,
        },
    }
}

/// The direct path's answer: the stack's, or the client-key check's refusal.
// The stack's answer is the hot path and is moved once: boxing it would cost an allocation
// per request to save bytes on the rare refusal.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer {
    Stack(Response<DirectBody>),
    Refused(Response<Body>),
}

impl Future for DirectFuture {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        match self.project() {
            DirectProjection::Call { future, id } => {
                let Ok(mut response) = ready!(future.poll(cx));
                if let Some(id) = id.take() {
                    response.headers_mut().insert(REQUEST_ID, id);
                }
                Poll::Ready(Answer::Stack(response))
            }
            DirectProjection::Refused { response, id } => {
                let mut response = response
                    .take()
                    .expect("DirectFuture polled after completion");
                if let Some(id) = id.take() {
                    response.headers_mut().insert(REQUEST_ID, id);
                }
                Poll::Ready(Answer::Refused(response))
            }
        }
    }
}
