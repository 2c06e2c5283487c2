//! One client connection: the timers hyper does not keep for us. A connection is idle (no
//! request in flight), reading a request head (bytes arrived while idle), or busy (requests in
//! flight, whose bodies have their own deadline). The watchdog closes it when the phase it is
//! in lasts too long. For HTTP/1 every phase change happens while the connection is being
//! polled, so the watchdog looks at the phase right after each poll: nothing needs waking, and
//! its one timer is moved only when a deadline comes earlier than the one it is set for.
//! HTTP/2 finishes requests in tasks of their own, which wake the watchdog when the connection
//! falls idle.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a connection is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No request in flight since then.
    Idle(Instant),
    /// The first bytes of a request head arrived then.
    Head(Instant),
    /// This many requests in flight (HTTP/2 multiplexes).
    Busy(usize),
}

/// When a write to the client started to wait for the client to read, if one is waiting.
#[derive(Debug, Default)]
struct WriteStall(Mutex<Option<Instant>>);

/// The phase of one connection, shared by its I/O, its service and its watchdog.
#[derive(Debug)]
pub(crate) struct ConnState {
    phase: Mutex<Phase>,
    /// An HTTP/2 connection reads frames (pings, settings) while idle: that is no request
    /// head being dawdled over.
    http2: std::sync::atomic::AtomicBool,
    /// A client that stops reading holds its response (and the upstream's) forever unless
    /// its writes are timed.
    stalled: WriteStall,
    /// HTTP/2 serves each request in a task of its own: when the last one finishes outside
    /// the connection's poll, the watchdog must be woken to time the idle connection.
    watchdog: Mutex<Option<std::task::Waker>>,
    /// A WebSocket this connection upgraded to, for its task to relay once hyper lets go.
    relay: Mutex<Option<crate::websocket::Relay>>,
}

/// The connection timers of [`ServerSettings`](super::ServerSettings).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) header_read: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) send: Option<Duration>,
}

impl ConnState {
    /// A new connection: its first request head is timed from now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
            http2: std::sync::atomic::AtomicBool::new(false),
            stalled: WriteStall::default(),
            watchdog: Mutex::new(None),
            relay: Mutex::new(None),
        })
    }

    /// Hands the connection's task a WebSocket to relay once hyper lets go of it.
    pub(crate) fn upgrade_to(&self, relay: crate::websocket::Relay) {
        *self.relay.lock().unwrap_or_else(PoisonError::into_inner) = Some(relay);
    }

    /// The WebSocket to relay, if the connection upgraded to one.
    pub(crate) fn upgraded(&self) -> Option<crate::websocket::Relay> {
        self.relay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Since when no request has been in flight, and no new one begun, if so.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        match *self.lock() {
            Phase::Idle(since) => Some(since),
            _ => None,
        }
    }

    fn is_http2(&self) -> bool {
        self.http2.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn write_waiting(&self, waiting: bool) {
        let mut since = self
            .stalled
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (waiting, *since) {
            (true, None) => *since = Some(Instant::now()),
            (false, Some(_)) => *since = None,
            _ => {}
        }
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bytes_arrived(&self) {
        if self.is_http2() {
            return;
        }
        let mut phase = self.lock();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
        }
    }

    pub(crate) fn request_started(&self) {
        let mut phase = self.lock();
        let busy = match *phase {
            Phase::Busy(n) => n + 1,
            _ => 1,
        };
        *phase = Phase::Busy(busy);
    }

    pub(crate) fn request_finished(&self) {
        let mut phase = self.lock();
        let next = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
        *phase = next;
        drop(phase);
        if matches!(next, Phase::Idle(_)) && self.is_http2() {
            let waker = self
                .watchdog
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// When the connection must be closed if nothing changes, if ever.
    fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        let phase = match *self.lock() {
            Phase::Idle(since) => timeouts.idle.map(|limit| since + limit),
            Phase::Head(since) => timeouts.header_read.map(|limit| since + limit),
            Phase::Busy(_) => None,
        };
        let stalled = *self
            .stalled
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let send = stalled
            .zip(timeouts.send)
            .map(|(since, limit)| since + limit);
        match (phase, send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drives `connection` until it ends, or until it stays idle or reading a head for too
    /// long: then it is dropped, which closes the socket. Returns whether it timed out.
    pub(crate) fn watch<F: Future>(
        self: &Arc<Self>,
        connection: F,
        timeouts: Timeouts,
    ) -> Watched<F> {
        Watched {
            connection,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed_for: None,
            waker: None,
            state: self.clone(),
            timeouts,
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`ConnState::watch`]: `true` when the connection was closed for a timeout.
    pub(crate) struct Watched<F> {
        #[pin]
        connection: F,
        timer: Pin<Box<Sleep>>,
        // The deadline the timer is set for, if it is set.
        armed_for: Option<Instant>,
        // The waker the timer will wake, once it has been polled since it was set.
        waker: Option<Waker>,
        state: Arc<ConnState>,
        timeouts: Timeouts,
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        if this.connection.poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        loop {
            let Some(deadline) = this.state.deadline(*this.timeouts) else {
                // Busy: for HTTP/1 the phase changes back during a later poll of the
                // connection; HTTP/2's requests finish in their own tasks and wake us.
                if this.state.is_http2() {
                    *this
                        .state
                        .watchdog
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
                }
                return Poll::Pending;
            };
            if this.armed_for.is_none_or(|armed| deadline < armed) {
                this.timer.as_mut().reset(deadline);
                *this.armed_for = Some(deadline);
                *this.waker = None;
            }
            // The connection's task polls this on every request: a timer that will wake it
            // already, and has not fired, need not be polled again.
            let registered = this
                .waker
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()));
            if registered && !this.timer.is_elapsed() {
                return Poll::Pending;
            }
            // A task out of budget gets `Pending` from the timer, which then keeps no waker: it
            // is asked to run again, and the timer is polled again then.
            let budget = tokio::task::coop::has_budget_remaining();
            if this.timer.as_mut().poll(cx).is_pending() {
                *this.waker = budget.then(|| cx.waker().clone());
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                return Poll::Ready(true);
            }
            // The timer was set for an earlier deadline that has since moved on.
            *this.armed_for = None;
            *this.waker = None;
        }
    }
}

/// The HTTP/2 connection preface a client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

pin_project_lite::pin_project! {
    /// A socket that tells its connection's state when bytes arrive.
    pub(crate) struct TrackedIo<T> {
        #[pin]
        inner: T,
        state: Arc<ConnState>,
        // How many bytes of the HTTP/2 preface the connection began with, until it is told
        // apart from HTTP/1 (`None` once it is).
        preface_seen: Option<usize>,
    }
}

impl<T> TrackedIo<T> {
    pub(crate) fn new(inner: T, state: Arc<ConnState>) -> Self {
        Self {
            inner,
            state,
            preface_seen: Some(0),
        }
    }
}

impl<T: AsyncRead> AsyncRead for TrackedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            if let Some(seen) = *this.preface_seen {
                // The preface may come a byte at a time: it is compared whole.
                let n = read.len().min(H2_PREFACE.len() - seen);
                *this.preface_seen = if read[..n] != H2_PREFACE[seen..seen + n] {
                    None
                } else if seen + n == H2_PREFACE.len() {
                    this.state
                        .http2
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    None
                } else {
                    Some(seen + n)
                };
            }
            this.state.bytes_arrived();
        }
        result
    }
}

impl<T: AsyncWrite> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        this.state.write_waiting(result.is_pending());
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        this.state.write_waiting(result.is_pending());
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER_READ: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);
    const TIMEOUTS: Timeouts = Timeouts {
        header_read: Some(HEADER_READ),
        idle: Some(IDLE),
        send: Some(Duration::from_secs(30)),
    };

    #[tokio::test(start_paused = true)]
    async fn phases_and_deadlines() {
        let state = ConnState::new();
        let start = Instant::now();
        // A new connection must send its first head in time.
        assert_eq!(state.deadline(TIMEOUTS), Some(start + HEADER_READ));
        tokio::time::advance(Duration::from_secs(1)).await;
        state.bytes_arrived();
        assert_eq!(state.deadline(TIMEOUTS), Some(start + HEADER_READ));
        state.request_started();
        state.request_started();
        assert_eq!(
            state.deadline(TIMEOUTS),
            None,
            "busy: the body has its own deadline"
        );
        state.request_finished();
        assert_eq!(state.deadline(TIMEOUTS), None, "one still in flight");
        tokio::time::advance(Duration::from_secs(5)).await;
        state.request_finished();
        let idle_since = start + Duration::from_secs(6);
        assert_eq!(state.deadline(TIMEOUTS), Some(idle_since + IDLE));
        // The next request's head is timed from its first byte.
        tokio::time::advance(Duration::from_secs(2)).await;
        state.bytes_arrived();
        assert_eq!(
            state.deadline(TIMEOUTS),
            Some(idle_since + Duration::from_secs(2) + HEADER_READ)
        );
        // A busy connection whose client stops reading is timed too.
        state.request_started();
        state.write_waiting(true);
        let stalled = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        state.write_waiting(true);
        assert_eq!(
            state.deadline(TIMEOUTS),
            Some(stalled + Duration::from_secs(30))
        );
        state.write_waiting(false);
        assert_eq!(state.deadline(TIMEOUTS), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_closes_a_silent_connection_and_spares_a_busy_one() {
        let state = ConnState::new();
        let started = Instant::now();
        assert!(state.watch(std::future::pending::<()>(), TIMEOUTS).await);
        assert_eq!(started.elapsed(), HEADER_READ);

        let state = ConnState::new();
        state.request_started();
        let finished = {
            let state = state.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                state.request_finished();
                std::future::pending::<()>().await;
            }
        };
        let started = Instant::now();
        assert!(state.watch(finished, TIMEOUTS).await);
        assert_eq!(started.elapsed(), Duration::from_secs(3600) + IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_polled_often_is_still_closed_on_time() {
        // Its task woken every second (as by each request's bytes): the timer, set once,
        // is not polled again until it fires, and then it closes the connection.
        let state = ConnState::new();
        state.request_started();
        state.request_finished();
        let started = Instant::now();
        let ticking = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let closed = tokio::time::timeout(2 * IDLE, state.watch(ticking, TIMEOUTS)).await;
        assert_eq!(closed, Ok(true));
        assert_eq!(started.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_spent_its_tasks_budget_is_still_timed() {
        // The connection's first poll spends the task's budget (tokio gives each poll 128
        // operations), as a burst of work can: the timer, polled then, takes no waker, and
        // must be polled again when the task runs again.
        let state = ConnState::new();
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        for _ in 0..512 {
            tx.send(()).unwrap();
        }
        let busy = std::future::poll_fn(move |cx| {
            while rx.poll_recv(cx).is_ready() {}
            Poll::<()>::Pending
        });
        let closed = tokio::time::timeout(2 * HEADER_READ, state.watch(busy, TIMEOUTS)).await;
        assert_eq!(closed, Ok(true));
        assert_eq!(started.elapsed(), HEADER_READ);
    }
}
