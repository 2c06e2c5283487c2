//! [`ClientKeyLayer`]: the client-key check as a layer, so the router's own routes and the
//! stack's route check keys with the one service. Without `client_auth` it lets everything
//! through.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use llm_tower::UpstreamBody;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::ClientKeys;

/// A response body that can hold a JSON document: the refusal is answered in the body type of
/// the service behind the check, so the check adds no body type of its own (the stack's
/// answers are not wrapped on their way out).
pub(crate) trait FromJson {
    fn from_json(json: Bytes) -> Self;
}

impl FromJson for Body {
    fn from_json(json: Bytes) -> Self {
        Body::from(json)
    }
}

impl FromJson for UpstreamBody {
    fn from_json(json: Bytes) -> Self {
        UpstreamBody::error(json)
    }
}

/// Checks client keys, when there are any (see [`RequireClientKey`]).
#[derive(Clone, Debug)]
pub(crate) struct ClientKeyLayer {
    keys: Option<ClientKeys>,
}

impl ClientKeyLayer {
    pub(crate) fn new(keys: Option<ClientKeys>) -> Self {
        Self { keys }
    }
}

impl<S> Layer<S> for ClientKeyLayer {
    type Service = RequireClientKey<S>;

    fn layer(&self, inner: S) -> RequireClientKey<S> {
        RequireClientKey {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// A request without a valid key is answered 401 here; one with a key goes on with its
/// [`Caller`](llm_tower::Caller).
#[derive(Clone, Debug)]
pub(crate) struct RequireClientKey<S> {
    inner: S,
    keys: Option<ClientKeys>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireClientKey<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: FromJson,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ClientKeyFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if let Some(keys) = &self.keys
            && let Err(refusal) = keys.check(&mut request)
        {
            return ClientKeyFuture::Refused {
                response: Some(refusal.map(ResBody::from_json)),
            };
        }
        ClientKeyFuture::Called {
            future: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The inner service's answer, or the refusal.
    #[project = ClientKeyProjection]
    pub(crate) enum ClientKeyFuture<F, B> {
        Called { #[pin] future: F },
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ClientKeyFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ClientKeyProjection::Called { future } => future.poll(cx),
            ClientKeyProjection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("ClientKeyFuture polled after completion"))),
        }
    }
}
