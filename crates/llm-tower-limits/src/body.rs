//! The bodies of [`Limit`](crate::Limit): the request's, as it came or read whole (to estimate
//! it), and the response's, which settles the request's reservation when it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use llm_tower_core::{BoxError, BufferedBody, Deployment, Usage, UsageRecord};
use pin_project_lite::pin_project;

use crate::limiter::{Admission, Estimate};
use crate::service::Shared;
use crate::settings::Limits;

pin_project! {
    /// The request body [`Limit`](crate::Limit) passes on: as it came (a client without limits
    /// on tokens, spend or models), or read whole to estimate the request.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use llm_tower_limits::RequestBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body = RequestBody::streaming(Full::new(Bytes::from_static(b"hi")));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "hi");
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProjection]
    #[derive(Debug)]
    enum Inner<B> {
        Streaming { #[pin] body: B },
        Buffered { #[pin] body: BufferedBody },
    }
}

impl<B> RequestBody<B> {
    /// The client's body, as it sends it.
    pub fn streaming(body: B) -> Self {
        Self {
            inner: Inner::Streaming { body },
        }
    }

    /// A body read whole.
    pub fn buffered(body: BufferedBody) -> Self {
        Self {
            inner: Inner::Buffered { body },
        }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().inner.project() {
            InnerProjection::Streaming { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(Into::into))),
            InnerProjection::Buffered { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Streaming { body } => body.is_end_stream(),
            Inner::Buffered { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Streaming { body } => body.size_hint(),
            Inner::Buffered { body } => body.size_hint(),
        }
    }
}

/// A reservation, settled when it is dropped: when the answer has ended, when the request
/// failed, or when the request went before its answer came (its client left).
pub(crate) struct Settlement {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: Arc<str>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) admission: Admission,
    /// Where the answer's usage is (usage accounting on).
    pub(crate) record: Option<UsageRecord>,
    /// The model that answered, for its price.
    pub(crate) answered: Option<Deployment>,
}

impl Drop for Settlement {
    /// Settles the reservation against the usage the answer reported (none: all given back).
    fn drop(&mut self) {
        let used = self.record.as_ref().and_then(|record| {
            let usage: Usage = record.usage()?;
            let model = record.priced_model(self.answered.as_ref().and_then(|d| d.model.as_ref()));
            Some(Estimate {
                tokens: usage.input.saturating_add(usage.output),
                usd: model.and_then(|model| self.shared.prices.cost(&model, &usage)),
            })
        });
        self.shared
            .limiter
            .settle(&self.client, &self.limits, &self.admission, used);
    }
}

pin_project! {
    /// The response body of [`Limit`](crate::Limit): the inner one, untouched; when it ends
    /// (or is dropped), the request's reserved tokens and spend are settled against what its
    /// answer used.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use llm_tower_limits::ResponseBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body = ResponseBody::plain(Full::new(Bytes::from_static(b"as it came")));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "as it came");
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        // An `Option` only so that it can go before the settlement does (see the drop).
        #[pin]
        inner: Option<B>,
        // Boxed: only limited clients settle, and the body is moved whole through the
        // futures outside.
        settlement: Option<Box<Settlement>>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            // The bodies further in first: the usage layer's records what its answer had
            // delivered when it goes (a stream the client abandoned), and the settlement reads it.
            this.inner.set(None);
            // Settles.
            drop(this.settlement.take());
        }
    }
}

impl<B> ResponseBody<B> {
    /// The inner body, with nothing to settle.
    pub fn plain(inner: B) -> Self {
        Self {
            inner: Some(inner),
            settlement: None,
        }
    }

    pub(crate) fn settling(inner: B, settlement: Settlement) -> Self {
        Self {
            inner: Some(inner),
            settlement: Some(Box::new(settlement)),
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let Some(mut inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(inner.as_mut().poll_frame(cx));
        // Settled with the last frame, before the client can have it: a client that sends its
        // next request once it has read this answer finds its tokens given back. A failure is
        // settled when the body goes (see the drop).
        let ended =
            matches!(frame, None | Some(Ok(_))) && (frame.is_none() || inner.is_end_stream());
        if ended {
            // Settles.
            drop(this.settlement.take());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
