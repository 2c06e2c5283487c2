//! The store's connection: one multiplexed connection every admission shares, made again in
//! the background whenever it is lost. While there is none, admissions do not wait for one:
//! they are decided at once as `on_store_down` says.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::{Notify, watch};
use tokio::time::{sleep, timeout};

use super::handle::Shared;
use super::scripts;

/// Connect timeout, and the response timeout of the checks a quiet connection gets.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a connection is checked with `PING` (a server that vanished without closing
/// the connection is found within this and the timeout).
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long an answer is waited for at most (a call's own timeout is shorter; the answer
/// of an admission nobody waited for is awaited this long, to give it back).
const LATE_ANSWER: Duration = Duration::from_secs(30);
/// Calls that may wait to be written to the connection.
const PIPELINE_BUFFER: usize = 1024;
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The connection in use, if any, numbered so that an error of an old one cannot drop its
/// successor.
pub(super) struct Connection {
    current: RwLock<Option<(u64, MultiplexedConnection)>>,
    /// Wakes the background task: the connection was lost, or the store dropped.
    wake: Arc<Notify>,
    connected: watch::Sender<bool>,
}

impl Connection {
    pub(super) fn new() -> Self {
        Self {
            current: RwLock::new(None),
            wake: Arc::new(Notify::new()),
            connected: watch::Sender::new(false),
        }
    }

    /// The connection, and its number; `None` while there is none.
    pub(super) fn get(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Connection `number` failed with `err`: if that says the connection is gone, it is
    /// dropped and made again.
    pub(super) fn failed(&self, number: u64, err: &RedisError) {
        if err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_unrecoverable_error()
        {
            self.drop_if(number);
        }
    }

    fn drop_if(&self, number: u64) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_ref().is_some_and(|(n, _)| *n == number) {
            *current = None;
            self.connected.send_replace(false);
            self.wake.notify_one();
        }
    }

    fn set(&self, number: u64, connection: MultiplexedConnection) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((number, connection));
        self.connected.send_replace(true);
    }

    /// Whether there is a connection now, and its changes.
    pub(super) fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// What wakes the background task.
    pub(super) fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

/// Keeps `holder`'s connection to `client` until the holder is dropped: connects, checks it
/// every few seconds, and makes it again with a jittered, doubling backoff when it is lost,
/// warning once per outage.
pub(super) async fn keep(holder: Weak<Shared>, client: Client, wake: Arc<Notify>) {
    let mut number = 0;
    let mut backoff: Option<Duration> = None;
    loop {
        let Some(held) = holder.upgrade() else { return };
        let (url, meanwhile) = (held.url.clone(), held.meanwhile());
        drop(held);
        match connect(&client).await {
            Ok(mut connection) => {
                number += 1;
                let Some(held) = holder.upgrade() else { return };
                held.connection.set(number, connection.clone());
                drop(held);
                if backoff.take().is_some() {
                    tracing::info!(redis = %url, "limits store reachable again; counting there");
                } else {
                    tracing::info!(redis = %url, "sharing limits through Redis");
                }
                // Until it is lost: by a failed call, or a failed check. (The client tells of a
                // connection the server closed only over RESP3, which Redis 5 does not speak;
                // until a call or check finds it, calls fail at once, and are decided as
                // `on_store_down` says, as they would be a moment later.)
                loop {
                    let lost = tokio::select! {
                        () = wake.notified() => false,
                        () = sleep(PING_EVERY) => !ping(&mut connection).await,
                    };
                    let Some(held) = holder.upgrade() else { return };
                    if lost {
                        held.connection.drop_if(number);
                    }
                    if held.connection.get().is_none_or(|(n, _)| n != number) {
                        break;
                    }
                }
                tracing::warn!(
                    redis = %url,
                    "limits store unreachable; {meanwhile} until it is back, reconnecting in \
                     the background"
                );
            }
            Err(err) => {
                if backoff.is_none() {
                    tracing::warn!(
                        redis = %url,
                        error = %err,
                        "limits store unreachable; {meanwhile} until it is back, reconnecting \
                         in the background"
                    );
                } else {
                    tracing::debug!(redis = %url, error = %err, "limits store still unreachable");
                }
            }
        }
        let pause = backoff.get_or_insert(BACKOFF_FIRST);
        let wait = pause.mul_f64(0.8 + 0.4 * fastrand::f64());
        *pause = (*pause * 2).min(BACKOFF_MAX);
        tokio::select! {
            () = sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}

/// A connection, with every script loaded: a call then goes out as one `EVALSHA` when it is
/// made (a script Redis does not have costs a second round trip, sent later, and would lose
/// a settlement its place before the requests that follow it).
async fn connect(client: &Client) -> Result<MultiplexedConnection, RedisError> {
    // Calls have timeouts of their own; an admission nobody waited for is still answered
    // (within this) so that it can be given back. Room for many calls at once, so that a
    // settlement goes out when it is made.
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(LATE_ANSWER))
        .set_pipeline_buffer_size(PIPELINE_BUFFER);
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    for script in scripts::ALL {
        script.load_async(&mut connection).await?;
    }
    Ok(connection)
}

async fn ping(connection: &mut MultiplexedConnection) -> bool {
    let ping = redis::cmd("PING");
    matches!(
        timeout(CONNECT_TIMEOUT, ping.query_async::<String>(connection)).await,
        Ok(Ok(_))
    )
}
