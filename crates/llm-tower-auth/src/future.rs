//! [`ResponseFuture`] of [`Auth`](crate::Auth).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use llm_tower_core::{BoxError, Error};
use pin_project_lite::pin_project;

pin_project! {
    /// Future of [`Auth`](crate::Auth): the inner service's future, or the refusal of a
    /// request that had no endpoint.
    ///
    /// ```
    /// use http::Request;
    /// use llm_tower_auth::{AuthLayer, ResponseFuture};
    /// use tower::{Layer, Service, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut service = AuthLayer::new().layer(service_fn(|_: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(())
    /// }));
    /// // No endpoint selected: refused, without calling the inner service.
    /// let future: ResponseFuture<_> = service.call(Request::new(()));
    /// assert!(future.await.is_err());
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProjection]
    #[derive(Debug)]
    enum State<F> {
        Inner { #[pin] future: F },
        Failed { error: Option<Error> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Inner { future } => {
                Poll::Ready(ready!(future.poll(cx)).map_err(Into::into))
            }
            StateProjection::Failed { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion")
                .into())),
        }
    }
}
