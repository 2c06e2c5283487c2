//! The response body type: a full pre-built body, a (possibly paced, possibly aborted) SSE
//! stream, or a body that never yields.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::assets::Assets;

/// A future that completes when the mock shuts down.
pub(crate) type ShutdownWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Builds a [`ShutdownWait`] from the mock's shutdown channel. It also completes when the
/// sender is gone (the mock was dropped).
pub(crate) fn shutdown_wait(rx: &watch::Receiver<bool>) -> ShutdownWait {
    let mut rx = rx.clone();
    Box::pin(async move { stopped(&mut rx).await })
}

/// Completes when the mock shuts down (or its handle is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Why the mock aborted a response or connection on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abort {
    /// `Behavior::CloseBeforeHead`.
    CloseBeforeHead,
    /// `Behavior::ResetAfterChunks`.
    Reset,
    /// The mock is shutting down.
    Shutdown,
    /// Reading the request failed.
    BadRequest,
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Abort::CloseBeforeHead => "llm-tower-mock: closing before the response head",
            Abort::Reset => "llm-tower-mock: resetting the connection mid-body",
            Abort::Shutdown => "llm-tower-mock: shutting down",
            Abort::BadRequest => "llm-tower-mock: failed to read the request",
        })
    }
}

impl std::error::Error for Abort {}

/// Response body of the mock.
pub(crate) struct MockBody(Kind);

enum Kind {
    Full(Option<Bytes>),
    Sse(Box<Sse>),
    Stall(ShutdownWait),
}

/// How an SSE stream ends once its content chunks are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SseEnd {
    /// `data: [DONE]` and a clean end of the body.
    Done,
    /// Abort the connection.
    Reset,
}

/// OpenAI's usage chunk, for a stream whose request asked for usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UsageChunk {
    NotAsked,
    /// Asked: chunks carry `"usage": null`, and the usage chunk ends them.
    Due,
    Sent,
}

struct Sse {
    assets: Arc<Assets>,
    total: usize,
    next: usize,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    shutdown: Option<ShutdownWait>,
    end: SseEnd,
    /// Whether the request asked for usage, and the usage chunk's progress.
    usage: UsageChunk,
    /// `[DONE]` sent (for `Done`) or the flush yield happened (for `Reset`).
    finished: bool,
}

impl MockBody {
    pub(crate) fn full(bytes: Bytes) -> MockBody {
        MockBody(Kind::Full(Some(bytes)))
    }

    /// Never yields a frame; errors out (aborting the connection) at shutdown.
    pub(crate) fn stall(shutdown: ShutdownWait) -> MockBody {
        MockBody(Kind::Stall(shutdown))
    }

    /// `total` content chunks, `interval` apart, then `end` (with `usage`, OpenAI's usage
    /// chunk before a clean end). `shutdown` is required only when `interval` is non-zero (it
    /// lets a paced stream stop promptly at shutdown).
    pub(crate) fn sse(
        assets: Arc<Assets>,
        total: usize,
        interval: Duration,
        end: SseEnd,
        usage: bool,
        shutdown: Option<ShutdownWait>,
    ) -> MockBody {
        MockBody(Kind::Sse(Box::new(Sse {
            assets,
            total,
            next: 0,
            interval,
            sleep: None,
            armed: false,
            shutdown,
            end,
            usage: if usage {
                UsageChunk::Due
            } else {
                UsageChunk::NotAsked
            },
            finished: false,
        })))
    }
}

impl fmt::Debug for MockBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Full(b) => f.debug_tuple("Full").field(b).finish(),
            Kind::Sse(s) => f
                .debug_struct("Sse")
                .field("total", &s.total)
                .field("next", &s.next)
                .field("interval", &s.interval)
                .field("end", &s.end)
                .finish_non_exhaustive(),
            Kind::Stall(_) => f.write_str("Stall"),
        }
    }
}

impl Sse {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Abort>>> {
        if self.next < self.total {
            if self.next > 0 && !self.interval.is_zero() {
                if let Some(shutdown) = self.shutdown.as_mut()
                    && shutdown.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Some(Err(Abort::Shutdown)));
                }
                let deadline = Instant::now() + self.interval;
                let armed = self.armed;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !armed {
                    sleep.as_mut().reset(deadline);
                    self.armed = true;
                }
                ready!(sleep.as_mut().poll(cx));
                self.armed = false;
            }
            // A stream cut short never had its last chunk: none of its chunks says `stop`.
            let of = match self.end {
                SseEnd::Done => self.total,
                SseEnd::Reset => self.total + 1,
            };
            let asked = self.usage != UsageChunk::NotAsked;
            let chunk = self.assets.chunk(self.next, of, asked);
            self.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match self.end {
            SseEnd::Done if self.usage == UsageChunk::Due => {
                self.usage = UsageChunk::Sent;
                Poll::Ready(Some(Ok(Frame::data(self.assets.usage_chunk(self.total)))))
            }
            SseEnd::Done if !self.finished => {
                self.finished = true;
                Poll::Ready(Some(Ok(Frame::data(self.assets.done.clone()))))
            }
            SseEnd::Done => Poll::Ready(None),
            SseEnd::Reset if !self.finished => {
                // Yield once so hyper flushes the chunks already written before it sees the
                // error and drops the connection.
                self.finished = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            SseEnd::Reset => Poll::Ready(Some(Err(Abort::Reset))),
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Abort;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Abort>>> {
        match &mut self.get_mut().0 {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Sse(sse) => sse.poll_next(cx),
            Kind::Stall(shutdown) => {
                ready!(shutdown.as_mut().poll(cx));
                Poll::Ready(Some(Err(Abort::Shutdown)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Sse(sse) => sse.end == SseEnd::Done && sse.finished,
            Kind::Stall(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Sse(_) | Kind::Stall(_) => SizeHint::default(),
        }
    }
}
