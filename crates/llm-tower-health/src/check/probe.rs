//! One health check: the request, its timeout, and what its answer means.

use std::time::{Duration, SystemTime};

use bytes::Buf;
use http::{Request, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use llm_tower_core::{
    BoxError, BufferedBody, ERROR_BODY_LIMIT, ErrorKind, Outcome, Selected, cooldown_hint,
    informational_as_error,
};
use tokio::time::Instant;
use tower::ServiceExt;

use super::{CheckService, Checked};

/// What a check found.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The expected status.
    Passed {
        status: StatusCode,
        latency: Duration,
    },
    /// Another status, a transport failure or the check's timeout; `hint` is the answer's
    /// `Retry-After`.
    Failed {
        outcome: Outcome,
        hint: Option<Duration>,
        latency: Duration,
    },
    /// Nothing is known about the endpoint: this process ran out of a resource, or the probe
    /// service failed with an error nobody recognises (as for requests, it is not blamed).
    Inconclusive,
}

impl Verdict {
    /// What the check log keeps: passed, outcome, latency (nothing for a local failure).
    pub(crate) fn record(&self) -> Option<(bool, Outcome, Duration)> {
        match *self {
            Self::Passed { status, latency } => Some((true, Outcome::Status(status), latency)),
            Self::Failed {
                outcome, latency, ..
            } => Some((false, outcome, latency)),
            Self::Inconclusive => None,
        }
    }

    /// What to look at when a check fails in a way that points at its configuration rather
    /// than an outage (as text to append to the log line).
    pub(crate) fn hint(&self) -> &'static str {
        match self {
            Self::Failed {
                outcome: Outcome::Status(status),
                ..
            } => match status.as_u16() {
                401 | 403 => " (is the endpoint's key allowed to call the check's path?)",
                404 | 405 => " (does the endpoint serve the check's method and path?)",
                _ => "",
            },
            _ => "",
        }
    }
}

/// Sends the check of `target` through `probe` (auth and the client, never retry) and judges
/// the answer by the check's `expect`. The response body is read (up to 64 KiB, within the
/// timeout) so that the pooled connection can be used again.
pub(crate) async fn check<P: CheckService>(target: &Checked, mut probe: P) -> Verdict {
    let check = &target.check;
    let mut request = Request::new(BufferedBody::default());
    *request.method_mut() = check.method.clone();
    *request.uri_mut() = target.uri.clone();
    request
        .extensions_mut()
        .insert(Selected(target.endpoint.clone()));
    let started = Instant::now();
    let answer = tokio::time::timeout(check.timeout, async {
        let response = probe
            .ready()
            .await
            .map_err(Into::into)?
            .call(request)
            .await
            .map_err(Into::into);
        let response = informational_as_error(response)?;
        let (parts, body) = response.into_parts();
        drain(body).await;
        Ok::<_, BoxError>(parts)
    })
    .await;
    let latency = started.elapsed();
    let failed = |outcome, hint| Verdict::Failed {
        outcome,
        hint,
        latency,
    };
    match answer {
        Err(_elapsed) => failed(Outcome::Error(ErrorKind::Timeout), None),
        Ok(Err(err)) => match ErrorKind::of(&*err) {
            ErrorKind::Local => {
                tracing::error!(
                    endpoint = %target.endpoint.id(),
                    "health check not sent: this process ran out of a resource (file \
                     descriptors, memory, ports); the endpoint is not blamed"
                );
                Verdict::Inconclusive
            }
            ErrorKind::Unrecognized => {
                tracing::warn!(
                    endpoint = %target.endpoint.id(),
                    "health check failed with an error nobody recognises (see \
                     ClassifyErrorsLayer); the endpoint is not blamed"
                );
                Verdict::Inconclusive
            }
            kind => failed(Outcome::Error(kind), None),
        },
        Ok(Ok(parts)) if check.expect.matches(parts.status) => Verdict::Passed {
            status: parts.status,
            latency,
        },
        Ok(Ok(parts)) => failed(
            Outcome::Status(parts.status),
            cooldown_hint(parts.status, &parts.headers, SystemTime::now()),
        ),
    }
}

/// Reads a body to its end, or until it passed the limit or failed: whatever it holds, the
/// check's verdict is its status.
async fn drain<RB: Body>(body: RB) {
    let mut body = std::pin::pin!(body);
    let mut read = 0;
    while read <= ERROR_BODY_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Buf::remaining),
            _ => return,
        }
    }
}
