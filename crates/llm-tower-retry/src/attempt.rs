//! One try: the per-try timeout, the read-ahead before the head is passed on, the record
//! and the span (`span.rs`), whose trace context the request carries upstream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use llm_tower_core::{
    AttemptKind, AttemptSpan, Attempts, BoxError, ContextOverflow, EndpointId, Error, ErrorKind,
    ModelName, Outcome, Selected, WebSocketUpgrade, informational_as_error, inject_context,
    is_context_overflow, is_event_stream, is_upgrade_answer,
};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::DRAIN_LIMIT;
use crate::ahead::Ahead;
use crate::body::ResponseBody;
use crate::span::{Unfinished, attempt_span, record_outcome};

/// What every try of one request shares.
pub(crate) struct Target<'a> {
    pub(crate) selected: Option<&'a Selected>,
    /// The id tries are recorded and traced under.
    pub(crate) recorded_as: &'a EndpointId,
    pub(crate) model: Option<&'a ModelName>,
    pub(crate) log: Option<&'a Attempts>,
    /// What the attempt is, as its request says (see [`AttemptKind`]): its first try is
    /// recorded so. `None`: derived from the log.
    pub(crate) kind: Option<AttemptKind>,
}

/// Sends one try (`retry` is 0 for the first) and records it.
pub(crate) fn try_once<'a, S, B, RB>(
    inner: &'a mut S,
    request: Request<B>,
    target: &'a Target<'a>,
    retry: u32,
) -> impl Future<Output = Result<Response<ResponseBody<RB>>, BoxError>> + 'a
where
    B: 'a,
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    let span = attempt_span(&request, target, retry);
    let unfinished = Unfinished::new(&span);
    let mut request = request;
    inject_context(&span, request.headers_mut());
    let upgrade = request.extensions().get::<WebSocketUpgrade>().is_some();
    // Not an `async fn`: the request is moved into the instrumented block once, not kept as
    // an argument beside it.
    async move {
        let started = Instant::now();
        let (timeout, first_byte) = target.selected.map_or((None, None), |s| {
            // A stall before the head is passed on is bounded by either body limit, or else
            // by the per-try timeout.
            let first_byte = match (s.first_byte_timeout(), s.stream_idle_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b).or(s.timeout()),
            };
            (s.timeout(), first_byte)
        });
        // In a block of its own: what it holds (the call, the head) is gone before the read
        // ahead below is awaited, instead of kept beside the read's future.
        let next = {
            // The readiness error is converted before anything is awaited: `S::Error` need not
            // be `Send`.
            let call = match inner.ready().await {
                Ok(service) => Ok(service.call(request)),
                Err(err) => Err(err.into()),
            };
            let head = match call {
                Ok(future) => within(timeout, future).await.map_or_else(
                    |limit| {
                        Err(Error::new(
                            ErrorKind::Timeout,
                            format!("no response head within the per-try timeout of {limit:?}"),
                        )
                        .into())
                    },
                    |result| result.map_err(Into::into),
                ),
                Err(err) => Err(err),
            };
            match head {
                // An upgrade asked for is answered by a `101`, whose body is the socket: nothing
                // to read ahead.
                Ok(response) if is_upgrade_answer(&response, upgrade) => {
                    AfterHead::Done(Ok(response.map(ResponseBody::new)))
                }
                head => match informational_as_error(head) {
                    // Until the head is passed on, nothing reached the client: the first frame of a
                    // success, and the body of an error, are read here so that a stall or a broken
                    // body fails this try instead of the client's response.
                    Ok(response) => {
                        let until = if response.status().is_success() {
                            ReadAhead::FirstFrame
                        } else {
                            ReadAhead::Bytes(DRAIN_LIMIT)
                        };
                        AfterHead::Read(response, until)
                    }
                    Err(err) => AfterHead::Done(Err(err)),
                },
            }
        };
        let result = match next {
            AfterHead::Done(result) => result,
            AfterHead::Read(response, until) => read_ahead(response, until, first_byte).await,
        };
        let outcome = Outcome::of(&result);
        tracing::debug!(
            endpoint = %target.recorded_as,
            retry,
            %outcome,
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "attempt finished"
        );
        let recorder = unfinished.finish();
        record_outcome(&recorder, outcome);
        let result = match result {
            // An answer's span lasts as long as the answer does (a failure's ends here), and
            // a stream's first chunk was just read.
            Ok(mut response) if response.status().is_success() && !recorder.is_disabled() => {
                if is_event_stream(response.headers()) {
                    let first_chunk = started.elapsed().as_secs_f64();
                    recorder.record("llm_tower.time_to_first_chunk", first_chunk);
                }
                response
                    .extensions_mut()
                    .insert(AttemptSpan(recorder.clone()));
                Ok(response.map(|body| body.in_span(recorder)))
            }
            result => result,
        };
        if let Some(log) = target.log {
            let kind = if retry > 0 {
                Some(AttemptKind::Retry)
            } else {
                target.kind
            };
            log.record_as(target.recorded_as, target.model, kind, started, outcome);
        }
        result
    }
    .instrument(span)
}

/// Runs `future` to its end, or until `limit` passed (`Err(limit)`). The timer is armed only
/// when the future is not done on its first poll, which for a body frame already received is
/// most of the time. A struct rather than an `async fn`, so that the future is stored once,
/// not once as an argument and again pinned.
fn within<F: Future>(limit: Option<Duration>, future: F) -> Within<F> {
    Within {
        future,
        limit,
        sleep: None,
    }
}

pin_project! {
    struct Within<F> {
        #[pin]
        future: F,
        limit: Option<Duration>,
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Duration>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let Some(limit) = *this.limit else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(limit)));
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(limit)),
            _ => Poll::Pending,
        }
    }
}

/// Whether a whole 400 body, read ahead, says the prompt does not fit the model's context.
fn says_context_overflow<D: Buf>(frames: &Ahead<D>) -> bool {
    let mut body = Vec::new();
    for data in frames.data() {
        body.extend_from_slice(data.chunk());
        // A `Buf` may hold its bytes in pieces; the bodies here are hyper's `Bytes`, one.
        if data.chunk().len() < data.remaining() {
            return false;
        }
    }
    is_context_overflow(&body)
}

/// What a try does once its head is in: done, or read the body's start first.
enum AfterHead<RB: Body> {
    Done(Result<Response<ResponseBody<RB>>, BoxError>),
    Read(Response<RB>, ReadAhead),
}

/// How much of a body to read before its head is passed on.
#[derive(Clone, Copy, Debug)]
enum ReadAhead {
    FirstFrame,
    /// Up to the end, or until this many bytes were read.
    Bytes(usize),
}

/// Reads the start of a response body (within `limit`) and puts it back in front of the
/// rest. A stall or a body error here fails the try: [`ErrorKind::FirstByteTimeout`], or the
/// body error's kind ([`ErrorKind::Protocol`] when it has none of its own). Not an `async
/// fn`, so that the future holds the head and the body once, not also the response they
/// came in.
fn read_ahead<RB>(
    response: Response<RB>,
    until: ReadAhead,
    limit: Option<Duration>,
) -> impl Future<Output = Result<Response<ResponseBody<RB>>, BoxError>>
where
    RB: Body,
    RB::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    async move {
        if body.is_end_stream() {
            return Ok(Response::from_parts(parts, ResponseBody::new(body)));
        }
        let mut body = Box::pin(body);
        let mut ahead = Ahead::default();
        let reading = async {
            let mut read = 0;
            loop {
                let Some(frame) = body.as_mut().frame().await else {
                    return Ok(true);
                };
                let frame = frame.map_err(Into::into)?;
                read += frame.data_ref().map_or(0, Buf::remaining);
                ahead.push(frame);
                match until {
                    ReadAhead::FirstFrame => return Ok(false),
                    ReadAhead::Bytes(max) if read > max => return Ok(false),
                    ReadAhead::Bytes(_) => {}
                }
            }
        };
        let ended: Result<bool, BoxError> = within(limit, reading).await.map_err(|limit| {
            Error::new(
                ErrorKind::FirstByteTimeout,
                format!("the response body stalled within the first-byte timeout of {limit:?}"),
            )
        })?;
        match ended {
            Ok(ended) => {
                let mut parts = parts;
                if ended && parts.status == StatusCode::BAD_REQUEST && says_context_overflow(&ahead)
                {
                    parts.extensions.insert(ContextOverflow);
                }
                Ok(Response::from_parts(
                    parts,
                    ResponseBody::read_ahead(ahead, (!ended).then_some(body)),
                ))
            }
            Err(err) => Err(match ErrorKind::of(&*err) {
                ErrorKind::Unrecognized => Error::classified(ErrorKind::Protocol, err).into(),
                _ => err,
            }),
        }
    }
}
