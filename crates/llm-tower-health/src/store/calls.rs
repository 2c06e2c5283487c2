//! Calls to Redis, each bounded by a timeout, and what their failures mean: a lost
//! connection (reconnect) or a command Redis refused (log it, keep the connection).

use std::fmt;
use std::time::Duration;

use redis::RedisError;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::time::timeout;

/// Connect and response timeout of every Redis call.
pub(super) const TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum Lost {
    Redis(RedisError),
    TimedOut,
    SubscriptionClosed,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(err) => err.fmt(f),
            Self::TimedOut => write!(f, "no answer within {TIMEOUT:?}"),
            Self::SubscriptionClosed => f.write_str("the subscription closed"),
        }
    }
}

impl From<RedisError> for Lost {
    fn from(err: RedisError) -> Self {
        Self::Redis(err)
    }
}

/// `future`, or [`Lost::TimedOut`].
pub(super) async fn bounded<T>(
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Lost> {
    Ok(timeout(TIMEOUT, future)
        .await
        .map_err(|_| Lost::TimedOut)??)
}

/// A command's error that Redis answered (`Ok(Some)`), as opposed to one that says the
/// connection is gone (`Err`).
pub(super) fn refused<T>(result: Result<T, Lost>) -> Result<Option<RedisError>, Lost> {
    match result {
        Ok(_) => Ok(None),
        Err(Lost::Redis(err))
            if !(err.is_io_error()
                || err.is_connection_dropped()
                || err.is_connection_refusal()
                || err.is_timeout()
                || err.is_unrecoverable_error()) =>
        {
            Ok(Some(err))
        }
        Err(lost) => Err(lost),
    }
}

/// The subscription to the channel: its messages, and the side that pings it.
pub(super) struct Subscription {
    pub(super) sink: PubSubSink,
    pub(super) messages: PubSubStream,
}

/// Runs `command`, bounded by [`TIMEOUT`].
pub(super) async fn query<T: redis::FromRedisValue>(
    command: &redis::Cmd,
    connection: &mut MultiplexedConnection,
) -> Result<T, Lost> {
    bounded(command.query_async(connection)).await
}
