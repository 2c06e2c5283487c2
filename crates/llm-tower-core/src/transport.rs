//! hyper's and hyper-util's errors, classified from their types: what a failed request of a
//! hyper-util client means for retry and fallback, whoever built the client. llm-tower's own
//! `HttpClient` and a client of your own below the stack are classified alike.

use std::error::Error as StdError;

use hyper_util::client::legacy;

use crate::ErrorKind;

/// What one error of a chain says, if it is hyper's or hyper-util's.
pub(crate) enum Known {
    /// It says what went wrong.
    Kind(ErrorKind),
    /// A transport failure: its causes may say more; if none does, it is
    /// [`ErrorKind::Upstream`].
    Transport,
}

pub(crate) fn known(err: &(dyn StdError + 'static)) -> Option<Known> {
    if let Some(client) = err.downcast_ref::<legacy::Error>() {
        if client.is_connect() {
            // Our own exhaustion (no file descriptor, memory or local port for the socket)
            // is not the upstream's fault.
            let local =
                io_source(client).is_some_and(|io| ErrorKind::of_io(io) == ErrorKind::Local);
            return Some(Known::Kind(if local {
                ErrorKind::Local
            } else {
                ErrorKind::Connect
            }));
        }
        return Some(Known::Transport);
    }
    let hyper = err.downcast_ref::<hyper::Error>()?;
    Some(if hyper.is_timeout() {
        Known::Kind(ErrorKind::Timeout)
    } else if hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed() {
        Known::Kind(ErrorKind::Closed)
    } else if hyper.is_parse() {
        // A malformed or oversized response head: the upstream's fault, worth another try.
        Known::Kind(ErrorKind::Protocol)
    } else {
        Known::Transport
    })
}

/// The first I/O error among `err`'s causes.
fn io_source<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a std::io::Error> {
    let mut current = err.source();
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}
