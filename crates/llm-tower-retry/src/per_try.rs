//! [`PerTry`]: one attempt, with its timeouts, record and span.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use llm_tower_core::{
    Attempts, BoxError, EndpointId, Error, ErrorKind, Outcome, Selected, informational_as_error,
};
use tokio::time::Instant;
use tower::Service;
use tracing::Instrument;

use crate::DRAIN_LIMIT;
use crate::body::ResponseBody;
use crate::policy::RetryIndex;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The per-attempt service inside [`Retry`](crate::Retry): applies the endpoint's per-try
/// timeout, waits for the first body frame of a 2xx response (so that a stall or a broken body
/// before any byte reached the client is a failed try, retried like any other), records the
/// attempt in the [`Attempts`] log, and traces it.
///
/// ```
/// use llm_tower_retry::{Retry, RetryLayer};
/// use tower::Layer;
///
/// // Built by the layer around your inner service.
/// let retry: Retry<()> = RetryLayer::new().layer(());
/// # let _ = retry;
/// ```
#[derive(Clone, Debug)]
pub struct PerTry<S> {
    inner: S,
}

impl<S> PerTry<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }

    llm_tower_core::define_inner_service_accessors!();
}

impl<S, B, RB> Service<Request<B>> for PerTry<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<ResponseBody<RB>>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let extensions = request.extensions();
        let selected = extensions.get::<Selected>().cloned();
        let log = extensions.get::<Attempts>().cloned();
        let retry = extensions.get::<RetryIndex>().map_or(0, |r| r.0);
        let future = self.inner.call(request);
        let id = selected.as_ref().map_or_else(
            || EndpointId::from(crate::DEFAULT_ENDPOINT),
            |s| s.id().clone(),
        );
        let span = tracing::debug_span!(
            "upstream_attempt",
            endpoint = %id,
            retry,
            outcome = tracing::field::Empty,
        );
        let attempt = async move {
            let started = Instant::now();
            let (timeout, first_byte) = selected.as_ref().map_or((None, None), |s| {
                // A stall before the first byte is bounded by either limit.
                let first_byte = match (s.first_byte_timeout(), s.stream_idle_timeout()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                (s.timeout(), first_byte)
            });
            let result = match timeout {
                None => future.await.map_err(Into::into),
                Some(limit) => match tokio::time::timeout(limit, future).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(_) => Err(Error::new(
                        ErrorKind::Timeout,
                        format!("no response head within the per-try timeout of {limit:?}"),
                    )
                    .into()),
                },
            };
            let result = match informational_as_error(result) {
                // Until the head is passed on, nothing reached the client: the first frame of
                // a success, and the body of an error, are read here so that a stall or a
                // broken body fails this try instead of the client's response.
                Ok(response) => {
                    let until = if response.status().is_success() {
                        ReadAhead::FirstFrame
                    } else {
                        ReadAhead::Bytes(DRAIN_LIMIT)
                    };
                    read_ahead(response, until, first_byte).await
                }
                Err(err) => Err(err),
            };
            let outcome = Outcome::of(&result);
            tracing::Span::current().record("outcome", tracing::field::display(outcome));
            tracing::debug!(
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                "attempt finished"
            );
            if let Some(log) = &log {
                log.record(&id, retry > 0, started, outcome);
            }
            result
        };
        Box::pin(attempt.instrument(span))
    }
}

/// How much of a body to read before its head is passed on.
#[derive(Clone, Copy, Debug)]
enum ReadAhead {
    FirstFrame,
    /// Up to the end, or until this many bytes were read.
    Bytes(usize),
}

/// Reads the start of a response body (at most `limit` long) and puts it back in front of
/// the rest. Until then nothing reached the client, so a stall or a body error here fails the
/// try: [`ErrorKind::FirstByteTimeout`], or the body error's kind ([`ErrorKind::Protocol`]
/// when it has none of its own).
async fn read_ahead<RB>(
    response: Response<RB>,
    until: ReadAhead,
    limit: Option<Duration>,
) -> Result<Response<ResponseBody<RB>>, BoxError>
where
    RB: Body,
    RB::Error: Into<BoxError>,
{
    if response.body().is_end_stream() {
        return Ok(response.map(ResponseBody::new));
    }
    let (parts, body) = response.into_parts();
    let mut body = Box::pin(body);
    let mut ahead = VecDeque::new();
    let reading = async {
        let mut read = 0;
        loop {
            let Some(frame) = body.as_mut().frame().await else {
                return Ok(true);
            };
            let frame = frame.map_err(Into::into)?;
            read += frame.data_ref().map_or(0, Buf::remaining);
            ahead.push_back(frame);
            match until {
                ReadAhead::FirstFrame => return Ok(false),
                ReadAhead::Bytes(max) if read > max => return Ok(false),
                ReadAhead::Bytes(_) => {}
            }
        }
    };
    let ended: Result<bool, BoxError> = match limit {
        Some(limit) => tokio::time::timeout(limit, reading).await.map_err(|_| {
            Error::new(
                ErrorKind::FirstByteTimeout,
                format!("the response body stalled within the first-byte timeout of {limit:?}"),
            )
        })?,
        None => reading.await,
    };
    match ended {
        Ok(ended) => Ok(Response::from_parts(
            parts,
            ResponseBody::read_ahead(ahead, (!ended).then_some(body)),
        )),
        Err(err) => Err(match ErrorKind::of(&*err) {
            ErrorKind::Unrecognized => Error::classified(ErrorKind::Protocol, err).into(),
            _ => err,
        }),
    }
}
