//! [`ResponseFuture`] of [`Respond`](super::Respond).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use llm_tower_core::{BoxError, Caller, ClientApi, UsageRecord};
use pin_project_lite::pin_project;
use tracing::Span;

use super::body::ResponseBody;
use super::shared::Shared;

pin_project! {
    /// Future of [`Respond`](super::Respond): the inner future's result, or the
    /// error the inner service gave when polled for readiness, as a response.
    ///
    /// ```
    /// use http::Request;
    /// use llm_tower::RespondLayer;
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let mut service = RespondLayer::new().layer(service_fn(|_: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    /// }));
    /// let future: llm_tower::respond::ResponseFuture<_> = service.call(Request::new(()));
    /// # drop(future);
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        shared: Arc<Shared>,
        caller: Option<Caller>,
        api: ClientApi,
        usage: Option<UsageRecord>,
        // Entered while polled; handed to the response's completion.
        span: Span,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<F> {
        Inner { #[pin] future: F },
        Failed { error: Option<BoxError> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(
        future: F,
        shared: Arc<Shared>,
        caller: Option<Caller>,
        api: ClientApi,
        usage: Option<UsageRecord>,
        span: Span,
    ) -> Self {
        Self {
            state: State::Inner { future },
            shared,
            caller,
            api,
            usage,
            span,
        }
    }

    pub(crate) fn failed(
        error: BoxError,
        shared: Arc<Shared>,
        caller: Option<Caller>,
        span: Span,
    ) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
            shared,
            caller,
            api: ClientApi::default(),
            usage: None,
            span,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: http_body::Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<RB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            match this.state.project() {
                StateProjection::Inner { future } => ready!(future.poll(cx)).map_err(Into::into),
                StateProjection::Failed { error } => Err(error
                    .take()
                    .unwrap_or_else(|| "ResponseFuture polled after completion".into())),
            }
        };
        Poll::Ready(Ok(super::finish::finish(
            this.shared,
            result,
            this.caller.take(),
            *this.api,
            this.usage.take(),
            std::mem::replace(this.span, Span::none()),
        )))
    }
}
