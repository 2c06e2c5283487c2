//! [`ClassifyErrorsLayer`]: the hook that tells llm-tower what an inner service's own errors
//! mean.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::{BoxError, Error, ErrorKind};

type Classifier = Arc<dyn Fn(&(dyn StdError + 'static)) -> Option<ErrorKind> + Send + Sync>;

/// Maps the errors of an inner service to llm-tower [`ErrorKind`]s, so the retry and fallback
/// layers treat them as they treat transport failures.
///
/// llm-tower classifies errors from their types ([`ErrorKind::of`]); an error type it does
/// not know is [`ErrorKind::Unrecognized`] and is returned without retry or fallback. When
/// your inner service (say, the handler under `route_layer`) fails in ways you know to be
/// transient, put this layer just outside it and say so: the classifier returns the kind, or
/// `None` to leave the error as it is.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use llm_tower_core::{BoxError, ClassifyErrorsLayer, ErrorKind, classify_error};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// #[derive(Debug)]
/// struct Overloaded;
/// impl std::fmt::Display for Overloaded {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("my backend is overloaded")
///     }
/// }
/// impl std::error::Error for Overloaded {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let inner = service_fn(|_: Request<()>| async { Err::<Response<()>, _>(Overloaded) });
/// let layer = ClassifyErrorsLayer::new(|err| err.is::<Overloaded>().then_some(ErrorKind::Closed));
/// let err: BoxError = layer.layer(inner).oneshot(Request::new(())).await.unwrap_err();
/// // Now retried and falling back like a reset connection.
/// assert_eq!(ErrorKind::of(&*err), ErrorKind::Closed);
/// assert!(classify_error(&*err).retry_same_endpoint());
/// # }
/// ```
#[derive(Clone)]
pub struct ClassifyErrorsLayer {
    classifier: Classifier,
}

impl ClassifyErrorsLayer {
    /// A layer that asks `classifier` about every error of the inner service.
    pub fn new<F>(classifier: F) -> Self
    where
        F: Fn(&(dyn StdError + 'static)) -> Option<ErrorKind> + Send + Sync + 'static,
    {
        Self {
            classifier: Arc::new(classifier),
        }
    }
}

impl fmt::Debug for ClassifyErrorsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyErrorsLayer")
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ClassifyErrorsLayer {
    type Service = ClassifyErrors<S>;

    fn layer(&self, inner: S) -> ClassifyErrors<S> {
        ClassifyErrors {
            inner,
            classifier: self.classifier.clone(),
        }
    }
}

/// Service built by [`ClassifyErrorsLayer`].
///
/// ```
/// use llm_tower_core::{ClassifyErrors, ClassifyErrorsLayer};
/// use tower::Layer;
///
/// let service: ClassifyErrors<()> = ClassifyErrorsLayer::new(|_| None).layer(());
/// assert_eq!(service.get_ref(), &());
/// ```
#[derive(Clone)]
pub struct ClassifyErrors<S> {
    inner: S,
    classifier: Classifier,
}

impl<S> ClassifyErrors<S> {
    crate::define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for ClassifyErrors<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyErrors")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, R> Service<R> for ClassifyErrors<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ClassifyErrorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|err| classify_with(&self.classifier, err.into()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        ClassifyErrorsFuture {
            inner: self.inner.call(request),
            classifier: self.classifier.clone(),
        }
    }
}

fn classify_with(classifier: &Classifier, err: BoxError) -> BoxError {
    match classifier(&*err) {
        Some(kind) => Box::new(Error::classified(kind, err)),
        None => err,
    }
}

pin_project! {
    /// Future of [`ClassifyErrors`].
    ///
    /// ```
    /// use http::Request;
    /// use llm_tower_core::{ClassifyErrorsFuture, ClassifyErrorsLayer};
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let mut service = ClassifyErrorsLayer::new(|_| None)
    ///     .layer(service_fn(|_: Request<()>| async { Ok::<_, std::convert::Infallible>(()) }));
    /// let future: ClassifyErrorsFuture<_> = service.call(Request::new(()));
    /// # drop(future);
    /// ```
    pub struct ClassifyErrorsFuture<F> {
        #[pin]
        inner: F,
        classifier: Classifier,
    }
}

impl<F> fmt::Debug for ClassifyErrorsFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyErrorsFuture")
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ClassifyErrorsFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        Poll::Ready(result.map_err(|err| classify_with(this.classifier, err.into())))
    }
}
