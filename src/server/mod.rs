//! The front door: the accept loop, each connection's limits and timers, and the drain on
//! shutdown. Built on hyper-util's HTTP/1 + HTTP/2 connection builder directly (not
//! `axum::serve`), because every limit below needs a hook there.

mod body;
mod budget;
mod conn;
mod descriptors;
mod live;
mod open;
mod service;
mod settings;
mod woken;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use llm_tower::ErrorKind;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use budget::BodyBudget;
use conn::{ConnState, Timeouts, TrackedIo};
pub use descriptors::raise_descriptor_limit;
pub use live::LiveRoutes;
use open::OpenConnections;
use service::TrackedService;
pub use settings::ServerSettings;

/// Serves `routes` (an axum `Router`, the gateway's [`Routes`](crate::Routes), or [`LiveRoutes`] that
/// a reload can replace) on `listener` until
/// `shutdown` completes, then drains: accepting stops,
/// in-flight requests and streams may finish for `settings.shutdown_grace`, and what is left
/// after that is cut (and counted in the log).
///
/// Each connection gets the settings' limits: a header read timeout, a body read deadline
/// (408), an idle timeout, a header size cap (431), HTTP/2 keep-alive pings and a cap on
/// concurrent streams. At `max_connections` (or fewer, when the process's limit of open
/// files cannot hold that many with their upstream connections) a newcomer makes the
/// connection idle longest close, or waits until one does. The
/// request bodies of all connections share one budget of bytes (`max_buffered_bytes`: 503
/// past it). Running out of file descriptors on accept backs off instead of spinning.
///
/// # Errors
///
/// None today: accept errors are logged and survived. The `Result` is kept for listeners
/// that can fail for good.
pub async fn serve(
    listener: TcpListener,
    routes: impl Into<LiveRoutes>,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let routes = routes.into();
    let builder = Arc::new(connection_builder(settings));
    let timeouts = Timeouts {
        header_read: settings.header_read_timeout,
        idle: settings.idle_timeout,
        send: settings.send_timeout,
    };
    let permits = Arc::new(Semaphore::new(descriptors::connection_cap(
        settings.max_connections,
    )));
    let open = OpenConnections::default();
    let budget = BodyBudget::new(settings.max_buffered_bytes);
    let graceful = GracefulShutdown::new();
    // Tells relayed WebSockets to close: hyper's graceful shutdown no longer sees them.
    let (closing, closing_sockets) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        // Below the cap, a permit and then a client. At the cap, a newcomer is taken from
        // the backlog only to make room for it: the connection idle longest is asked to
        // close, and the newcomer waits for its permit (one connection past the cap at
        // most, which the descriptors' reserve covers). With no idle connection, it waits
        // until one closes.
        let (permit, accepted) = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = &mut shutdown => break,
                };
                (permit, accepted)
            }
            accepted = listener.accept(), if permits.available_permits() == 0 => {
                if accepted.is_ok() && open.close_longest_idle() {
                    tracing::debug!("at the connection cap: closing the connection idle longest");
                }
                let permit = tokio::select! {
                    permit = permits.clone().acquire_owned() => permit,
                    () = &mut shutdown => break,
                };
                (permit, accepted)
            }
        };
        let permit = permit.expect("the semaphore is never closed");
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                accept_errors.survive(&err).await;
                continue;
            }
        };
        // Responses are written whole; Nagle's algorithm would only hold them back.
        let _ = stream.set_nodelay(true);
        let state = ConnState::new();
        let io = TokioIo::new(TrackedIo::new(stream, state.clone()));
        let service = hyper_util::service::TowerToHyperService::new(TrackedService::new(
            routes.clone(),
            state.clone(),
            settings.body_read_timeout,
            budget.clone(),
            closing_sockets.clone(),
        ));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let counted = open.counted();
        let id = counted.id();
        let task = connections.spawn({
            let state = state.clone();
            async move {
                let connection = watcher.watch(
                    builder
                        .serve_connection_with_upgrades(io, service)
                        .into_owned(),
                );
                if state.watch(connection, timeouts).await {
                    tracing::debug!("closed a connection that was idle or slow to send its head");
                }
                // A WebSocket lives on in this task, under the connection's permit.
                if let Some(relay) = state.upgraded() {
                    relay.run().await;
                }
                drop((counted, permit));
            }
        });
        // Evicted by aborting its task: nothing to poll on the way of every request.
        open.add(id, state, task);
    }
    // New clients are refused from now on, so they can go elsewhere at once.
    drop(listener);
    closing.send_replace(true);
    drain(graceful, connections, settings.shutdown_grace).await;
    Ok(())
}

fn connection_builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog keeps the header and idle timers: hyper's would also close an idle
        // keep-alive connection after the header timeout.
        .header_read_timeout(None)
        // The read buffer must hold the whole head: a larger head is answered with 431.
        .max_buf_size(settings.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(settings.http2_max_concurrent_streams)
        .keep_alive_interval(Some(settings.http2_keep_alive_interval))
        .keep_alive_timeout(settings.http2_keep_alive_timeout);
    builder
}

/// Lets connections finish for `grace`, then cuts the rest.
async fn drain(graceful: GracefulShutdown, mut connections: JoinSet<()>, grace: Duration) {
    while connections.try_join_next().is_some() {}
    let open = connections.len();
    if open > 0 {
        tracing::info!(
            open,
            grace_ms = grace.as_millis() as u64,
            "draining connections"
        );
    }
    let deadline = Instant::now() + grace;
    // Relayed WebSockets are past hyper's graceful shutdown: they close themselves
    // (`closing`), and are waited for within the same grace.
    let finished = async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    };
    if tokio::time::timeout_at(deadline, finished).await.is_err() {
        while connections.try_join_next().is_some() {}
        let cut = connections.len();
        tracing::warn!(
            cut,
            "shutdown grace over; closing the connections still open"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
}

/// Accept errors are survived: out of descriptors (or memory) is logged at most once a
/// second and waited out briefly, so the loop never spins; anything else (a client that gave
/// up mid-handshake) is skipped.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    since_logged: u64,
}

/// How long the accept loop pauses when this process is out of descriptors.
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(50);

impl AcceptErrors {
    async fn survive(&mut self, err: &io::Error) {
        if ErrorKind::of_io(err) != ErrorKind::Local {
            tracing::debug!(%err, "accept failed");
            return;
        }
        self.since_logged += 1;
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(1))
        {
            tracing::error!(
                %err,
                failures = self.since_logged,
                "cannot accept connections: this process is out of file descriptors or memory; \
                 backing off"
            );
            self.last_logged = Some(now);
            self.since_logged = 0;
        }
        tokio::time::sleep(EXHAUSTED_BACKOFF).await;
    }
}

/// Completes on the first Ctrl-C or SIGTERM; a second one ends the process at once. The
/// signals are listened for from the call on, before the future is first polled: a signal
/// that comes while the server starts is not left to its default action (which would end
/// the process without a drain).
///
/// ```no_run
/// # async fn run() {
/// let shutdown = llm_tower_gateway::shutdown_signal(); // listening from here on
/// // ... bind, print the address, start serving ...
/// shutdown.await;
/// # }
/// ```
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    // One set of listeners for both signals: one made after the first signal would miss a
    // second that came before it was made.
    let mut signals = Signals::new();
    async move {
        signals.next().await;
        tracing::info!(
            "shutting down: draining in-flight requests (send the signal again to stop now)"
        );
        tokio::spawn(async move {
            signals.next().await;
            tracing::warn!("second signal: stopping now");
            std::process::exit(130);
        });
    }
}

/// Ctrl-C and SIGTERM, listened for from creation on.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next signal. One that cannot be listened for never comes.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(self.interrupt.as_mut()) => {}
                () = recv(self.terminate.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of descriptors, accept errors are waited out and logged at most once a second.
    #[cfg(target_os = "linux")]
    #[tokio::test(start_paused = true)]
    async fn running_out_of_descriptors_is_waited_out_and_logged_once_a_second() {
        const EMFILE: i32 = 24;
        let exhausted = io::Error::from_raw_os_error(EMFILE);
        let mut errors = AcceptErrors::default();
        let started = Instant::now();
        errors.survive(&exhausted).await;
        assert_eq!(started.elapsed(), EXHAUSTED_BACKOFF);
        assert_eq!(
            (errors.last_logged, errors.since_logged),
            (Some(started), 0)
        );
        for _ in 0..10 {
            errors.survive(&exhausted).await;
        }
        assert_eq!(errors.since_logged, 10, "not logged again within a second");
        tokio::time::advance(Duration::from_secs(1)).await;
        errors.survive(&exhausted).await;
        assert_eq!(
            errors.since_logged, 0,
            "logged, with the count of those not logged"
        );
        // A client that gave up mid-handshake is no reason to pause.
        let before = Instant::now();
        errors
            .survive(&io::Error::from(io::ErrorKind::ConnectionAborted))
            .await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
