//! Attempt records: what was tried, where, when, and how it went.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::endpoint::EndpointId;
use crate::error::ErrorKind;
use crate::model::ModelName;
use crate::outcome::Outcome;

/// Why an attempt was made. Also a request extension: a layer that records tries records an
/// attempt's first try as the kind its request carries (the balancer knows whether it sends a
/// first attempt, a fallback or a hedge; the order tries end in does not tell, once two are
/// out at once).
///
/// ```
/// use llm_tower_core::AttemptKind;
///
/// assert_eq!(serde_json::to_string(&AttemptKind::Fallback).unwrap(), "\"fallback\"");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// The first attempt of the request.
    First,
    /// Another attempt on the same endpoint after a retryable failure.
    Retry,
    /// The first attempt on another endpoint after the previous one failed.
    Fallback,
    /// The same request sent to another deployment as well, because the first answer was
    /// late (see [`Hedge`](crate::Hedge)).
    Hedge,
    /// The rest of an answer whose stream broke, asked of another deployment (mid-stream
    /// continuation).
    Continuation,
}

impl AttemptKind {
    /// Its name in the attempt log, and on an attempt's span.
    ///
    /// ```
    /// use llm_tower_core::AttemptKind;
    ///
    /// assert_eq!(AttemptKind::Continuation.as_str(), "continuation");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::Retry => "retry",
            Self::Fallback => "fallback",
            Self::Hedge => "hedge",
            Self::Continuation => "continuation",
        }
    }
}

/// One upstream attempt.
///
/// ```
/// use http::StatusCode;
/// use llm_tower_core::{Attempts, EndpointId, Outcome};
/// use tokio::time::Instant;
///
/// let log = Attempts::new();
/// let attempt = log.record(&EndpointId::from("a"), None, false, Instant::now(), Outcome::Status(StatusCode::OK));
/// assert_eq!(attempt.index, 0);
/// assert!(attempt.to_string().starts_with("a(first)=200"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The deployment tried: the endpoint id, or `endpoint/model` for an endpoint that serves
    /// several models (see [`Deployment`](crate::Deployment)).
    pub endpoint: EndpointId,
    /// The model it asked for (the client's name), when the request named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelName>,
    /// First try, retry or fallback.
    pub kind: AttemptKind,
    /// Position in the request's attempt list (0-based).
    pub index: u32,
    /// When the attempt started, relative to the start of the request.
    #[serde(serialize_with = "ser_ms")]
    pub started: Duration,
    /// Time until the response head (or the failure).
    #[serde(serialize_with = "ser_ms")]
    pub latency: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl Attempt {
    /// Whether it was not given up because the other of a hedged pair answered first: the
    /// latest attempt and its latency are those of the ones that were not.
    fn answered(&self) -> bool {
        self.outcome != Outcome::Error(ErrorKind::HedgeLost)
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({}", self.endpoint, self.kind.as_str())?;
        if let Some(model) = &self.model {
            write!(f, ", {model}")?;
        }
        write!(
            f,
            ")={} in {:.1}ms",
            self.outcome,
            self.latency.as_secs_f64() * 1000.0
        )
    }
}

/// The shared attempt log of one request. The balancer (or whoever starts the request) puts
/// it in the request extensions; the retry layer declares that it records
/// ([`record_inside`](Self::record_inside)) and appends every try; the final response carries
/// it in its extensions. Cloning shares the same log.
///
/// ```
/// use http::StatusCode;
/// use llm_tower_core::{AttemptKind, Attempts, EndpointId, Outcome};
/// use tokio::time::Instant;
///
/// let log = Attempts::new();
/// let id = EndpointId::from("primary");
/// log.record(&id, None, false, Instant::now(), Outcome::Status(StatusCode::SERVICE_UNAVAILABLE));
/// log.record(&id, None, true, Instant::now(), Outcome::Status(StatusCode::OK));
/// assert_eq!(log.len(), 2);
/// assert_eq!(log.last().unwrap().kind, AttemptKind::Retry);
/// assert!(log.to_string().starts_with("primary(first)=503"));
/// ```
#[derive(Clone)]
pub struct Attempts(Arc<Inner>);

struct Inner {
    start: Instant,
    list: Mutex<List>,
    /// Set by a layer inside the balancer that records every try itself (the retry layer).
    recorded_inside: AtomicBool,
}

/// The attempts in order. Most requests make one: it is kept inline, so logging it allocates
/// nothing beyond the log itself.
#[derive(Default)]
struct List {
    first: Option<Attempt>,
    rest: Vec<Attempt>,
}

impl List {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn push(&mut self, attempt: Attempt) {
        if self.first.is_none() {
            self.first = Some(attempt);
        } else {
            self.rest.push(attempt);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Attempt> {
        self.first.iter().chain(&self.rest)
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Attempt> {
        match index {
            0 => self.first.as_mut(),
            _ => self.rest.get_mut(index - 1),
        }
    }

    fn last(&self) -> Option<&Attempt> {
        self.rest.last().or(self.first.as_ref())
    }
}

impl Attempts {
    /// A new empty log whose clock starts now.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            start: Instant::now(),
            list: Mutex::new(List::default()),
            recorded_inside: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, List> {
        // Recording never panics while holding the lock, but stay usable if a caller did.
        self.0
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records an attempt on `endpoint` (for `model`, when the request named one) that started at `started` and ended now. The kind is
    /// derived: `Retry` when `retry` is set, else `First` for the first entry and `Fallback`
    /// after that.
    pub fn record(
        &self,
        endpoint: &EndpointId,
        model: Option<&ModelName>,
        retry: bool,
        started: Instant,
        outcome: Outcome,
    ) -> Attempt {
        self.record_as(
            endpoint,
            model,
            retry.then_some(AttemptKind::Retry),
            started,
            outcome,
        )
    }

    /// Records an attempt as [`record`](Self::record) does, of `kind` when it is given (a
    /// hedge, or its first attempt given up on), else of the kind derived.
    pub fn record_as(
        &self,
        endpoint: &EndpointId,
        model: Option<&ModelName>,
        kind: Option<AttemptKind>,
        started: Instant,
        outcome: Outcome,
    ) -> Attempt {
        let now = Instant::now();
        let mut list = self.lock();
        let kind = kind.unwrap_or(if list.first.is_none() {
            AttemptKind::First
        } else {
            AttemptKind::Fallback
        });
        let attempt = Attempt {
            endpoint: endpoint.clone(),
            model: model.cloned(),
            kind,
            index: list.len() as u32,
            started: started.saturating_duration_since(self.0.start),
            latency: now.saturating_duration_since(started),
            outcome,
        };
        list.push(attempt.clone());
        attempt
    }

    /// Declares that the calling layer records every try it makes (the retry layer does this
    /// for each request it handles), so the layer that started the log (the balancer) must
    /// not record the same tries again.
    pub fn record_inside(&self) {
        self.0.recorded_inside.store(true, Ordering::Relaxed);
    }

    /// Whether a layer inside declared with [`record_inside`](Self::record_inside) that it
    /// records the tries.
    pub fn is_recorded_inside(&self) -> bool {
        self.0.recorded_inside.load(Ordering::Relaxed)
    }

    /// Replaces the outcome of attempt `index`: a response whose body failed after its head
    /// was sent (a stalled or broken stream) is recorded as that failure, not as its status.
    pub fn set_outcome(&self, index: usize, outcome: Outcome) {
        if let Some(attempt) = self.lock().get_mut(index) {
            attempt.outcome = outcome;
        }
    }

    /// When the request started.
    pub fn start(&self) -> Instant {
        self.0.start
    }

    /// Calls `f` with every attempt so far, in order, without copying them (the log is
    /// locked meanwhile: `f` must not record into it).
    pub fn for_each(&self, mut f: impl FnMut(&Attempt)) {
        for attempt in self.lock().iter() {
            f(attempt);
        }
    }

    /// A copy of the attempts so far.
    pub fn to_vec(&self) -> Vec<Attempt> {
        self.lock().iter().cloned().collect()
    }

    /// The number of attempts so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no attempt was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latest attempt.
    pub fn last(&self) -> Option<Attempt> {
        self.lock().last().cloned()
    }

    /// The number of attempts so far and, for the latest, when its answer came and how long
    /// it took: one look at the log, and no clock read.
    ///
    /// ```
    /// use llm_tower_core::{Attempts, EndpointId, Outcome};
    /// use tokio::time::Instant;
    ///
    /// let log = Attempts::new();
    /// assert_eq!(log.latest(), (0, None));
    /// let attempt = log.record(&EndpointId::from("a"), None, false, Instant::now(), Outcome::Status(http::StatusCode::OK));
    /// let (tries, Some((at, latency))) = log.latest() else { panic!() };
    /// assert_eq!((tries, latency), (1, attempt.latency));
    /// assert_eq!(at, log.start() + attempt.started + attempt.latency);
    /// ```
    pub fn latest(&self) -> (usize, Option<(Instant, Duration)>) {
        let attempts = self.lock();
        let latest = attempts
            .iter()
            .filter(|a| a.answered())
            .last()
            .map(|attempt| {
                let answered = self.0.start + attempt.started + attempt.latency;
                (answered, attempt.latency)
            });
        (attempts.iter().filter(|a| a.answered()).count(), latest)
    }

    /// The latency of the latest attempt (of those that were not given up for a hedged
    /// other), without copying it.
    ///
    /// ```
    /// use llm_tower_core::{Attempts, EndpointId, Outcome};
    /// use tokio::time::Instant;
    ///
    /// let log = Attempts::new();
    /// assert_eq!(log.last_latency(), None);
    /// let attempt = log.record(&EndpointId::from("a"), None, false, Instant::now(), Outcome::Status(http::StatusCode::OK));
    /// assert_eq!(log.last_latency(), Some(attempt.latency));
    /// ```
    pub fn last_latency(&self) -> Option<Duration> {
        let attempts = self.lock();
        let latest = attempts.iter().filter(|a| a.answered()).last();
        latest.map(|attempt| attempt.latency)
    }
}

impl Default for Attempts {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.lock().iter()).finish()
    }
}

impl fmt::Display for Attempts {
    /// `primary(first)=503 in 1.2ms, backup(fallback)=200 in 3.4ms`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, attempt) in self.lock().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{attempt}")?;
        }
        Ok(())
    }
}

impl Serialize for Attempts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_vec().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn the_latest_attempt_is_one_that_was_not_given_up_for_a_hedge() {
        let log = Attempts::new();
        let (a, b) = (EndpointId::from("a"), EndpointId::from("b"));
        let started = Instant::now();
        let won = log.record_as(
            &b,
            None,
            Some(AttemptKind::Hedge),
            started,
            Outcome::Status(StatusCode::OK),
        );
        log.record_as(
            &a,
            None,
            Some(AttemptKind::First),
            started,
            Outcome::Error(ErrorKind::HedgeLost),
        );
        assert_eq!(log.last_latency(), Some(won.latency));
        let (tries, latest) = log.latest();
        assert_eq!(
            (tries, latest.map(|(_, latency)| latency)),
            (1, Some(won.latency))
        );
        assert_eq!(log.to_vec().len(), 2, "both are in the log");
    }

    #[tokio::test(start_paused = true)]
    async fn kinds_indexes_and_timing() {
        let log = Attempts::new();
        let a = EndpointId::from("a");
        let b = EndpointId::from("b");
        tokio::time::advance(Duration::from_millis(5)).await;
        let t0 = Instant::now();
        tokio::time::advance(Duration::from_millis(20)).await;
        log.record(
            &a,
            Some(&"gpt-4o".into()),
            false,
            t0,
            Outcome::Status(StatusCode::SERVICE_UNAVAILABLE),
        );
        let t1 = Instant::now();
        log.record(&a, None, true, t1, Outcome::Error(ErrorKind::Connect));
        log.record(
            &b,
            None,
            false,
            Instant::now(),
            Outcome::Status(StatusCode::OK),
        );
        let list = log.to_vec();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].kind, AttemptKind::First);
        assert_eq!(list[0].started, Duration::from_millis(5));
        assert_eq!(list[0].latency, Duration::from_millis(20));
        assert_eq!(list[1].kind, AttemptKind::Retry);
        assert_eq!(list[2].kind, AttemptKind::Fallback);
        assert_eq!(list[2].index, 2);
        let clone = log.clone();
        assert_eq!(clone.len(), 3);
        assert_eq!(
            log.to_string(),
            "a(first, gpt-4o)=503 in 20.0ms, a(retry)=upstream_connect_failed in 0.0ms, b(fallback)=200 in 0.0ms"
        );
        let json = serde_json::to_value(&log).unwrap();
        assert_eq!(json[0]["outcome"]["status"], 503);
        assert_eq!(json[0]["model"], "gpt-4o");
        assert!(json[1].get("model").is_none());
        assert_eq!(json[1]["outcome"]["error"], "connect");
    }

    #[test]
    fn outcomes_are_replaced_at_their_index_inline_or_not() {
        let log = Attempts::new();
        assert!(log.last().is_none());
        let id = EndpointId::from("a");
        let ok = Outcome::Status(StatusCode::OK);
        log.record(&id, None, false, Instant::now(), ok);
        assert_eq!(log.last().unwrap().index, 0);
        log.record(&id, None, true, Instant::now(), ok);
        log.record(&id, None, true, Instant::now(), ok);
        let stalled = Outcome::Error(ErrorKind::StreamIdleTimeout);
        log.set_outcome(0, stalled);
        log.set_outcome(2, stalled);
        log.set_outcome(3, stalled); // past the end: ignored
        let outcomes: Vec<_> = log.to_vec().iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes, [stalled, ok, stalled]);
        assert_eq!(log.last().unwrap().index, 2);
        let mut indexes = Vec::new();
        log.for_each(|a| indexes.push(a.index));
        assert_eq!(indexes, [0, 1, 2]);
    }
}
