//! What is logged and counted once a response has gone to the client: at the end of its
//! body, so that a stream that broke after its head is recorded as the failure it was, not
//! as the status it started with, and with the tokens its answer reported by then.

use std::sync::Arc;

use http::StatusCode;
use llm_tower_core::{Attempts, BoxError, Caller, ErrorKind, HeldSpan, UsageRecord};
use tracing::Span;
use tracing::field::display;

use super::accounting::{Accounted, Answered};
use super::shared::Shared;
use super::span::record_failure;

/// How a response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Every byte was sent.
    Complete,
    /// The body failed after the head was sent; the client's stream was aborted.
    Failed(ErrorKind),
    /// The client went away (or the server dropped the body) before the end.
    Dropped,
}

/// Records a response when its body ends, fails or is dropped, whichever comes first.
pub(crate) struct Completion {
    shared: Arc<Shared>,
    status: StatusCode,
    attempts: Attempts,
    caller: Option<Caller>,
    /// With usage on: where the answer's usage is, and who answered.
    usage: Option<(UsageRecord, Answered)>,
    /// How the body failed, recorded when this is dropped.
    failed: Option<Ending>,
    done: bool,
    /// The request's span, when a tracing backend listens: it ends with the body.
    span: Option<HeldSpan>,
}

impl Completion {
    pub(crate) fn new(
        shared: Arc<Shared>,
        status: StatusCode,
        attempts: Attempts,
        caller: Option<Caller>,
        usage: Option<(UsageRecord, Answered)>,
    ) -> Self {
        Self {
            shared,
            status,
            attempts,
            caller,
            usage,
            failed: None,
            done: false,
            span: None,
        }
    }

    /// The request's span, while the body has not ended.
    pub(crate) fn span(&self) -> Option<&Span> {
        self.span.as_ref().map(HeldSpan::span)
    }

    /// Keeps the request's `span` open until the body ends.
    pub(crate) fn in_span(mut self, span: Option<Span>) -> Self {
        self.span = span.map(HeldSpan::new);
        self
    }

    pub(crate) fn ended(mut self, error: Option<&BoxError>) {
        self.end(error);
    }

    /// The body ended, or failed. A complete answer is recorded now (every body further in
    /// has recorded its usage with its last frame); a failure when this completion is dropped,
    /// after the bodies further in (declared before it): one that failed above them (an
    /// idle stream timed out by the balancer) still holds them, and they record what they read
    /// when they go.
    pub(crate) fn end(&mut self, error: Option<&BoxError>) {
        match error {
            None => self.record(Ending::Complete),
            Some(err) => self.failed = Some(Ending::Failed(ErrorKind::of(&**err))),
        }
    }

    fn record(&mut self, ending: Ending) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if let (Some(held), Ending::Failed(kind)) = (&self.span, ending) {
            record_failure(held.span(), kind);
        }
        // The span ends here, with the response.
        self.span = None;
        // The layers further in have recorded the answer's usage by now: their bodies ended
        // before this one did, or were dropped before it (they are its fields' fields).
        let accounted: Option<Accounted> = self
            .usage
            .as_ref()
            .zip(self.shared.accounting())
            .and_then(|((record, answered), accounting)| accounting.account(record, answered));
        let settings = self.shared.settings();
        #[cfg(feature = "metrics")]
        if settings.metrics {
            let usage = accounted.as_ref().zip(
                self.usage
                    .as_ref()
                    .map(|(_, answered)| &answered.deployment),
            );
            self.shared
                .record_metrics(self.status, &self.attempts, self.caller.as_ref(), usage);
        }
        if settings.access_log {
            let client = self.caller.as_ref().map_or("-", Caller::name);
            let tokens = accounted.as_ref().map(|a| display(a.usage));
            let model = accounted.as_ref().and_then(|a| a.model.as_deref());
            // Displayed: `Debug` writes small costs with an exponent (`8.25e-5`).
            let cost = accounted.as_ref().and_then(|a| a.cost).map(display);
            let estimated = accounted
                .as_ref()
                .and_then(|a| a.usage.estimated.then_some(true));
            match ending {
                Ending::Complete => tracing::info!(
                    target: "llm_tower::access",
                    status = self.status.as_u16(),
                    client,
                    attempts = %self.attempts,
                    model,
                    tokens,
                    cost,
                    estimated,
                    "request"
                ),
                Ending::Failed(kind) => tracing::warn!(
                    target: "llm_tower::access",
                    status = self.status.as_u16(),
                    client,
                    stream = %kind,
                    attempts = %self.attempts,
                    model,
                    tokens,
                    cost,
                    estimated,
                    "request failed after its response head was sent"
                ),
                Ending::Dropped => tracing::info!(
                    target: "llm_tower::access",
                    status = self.status.as_u16(),
                    client,
                    stream = "dropped",
                    attempts = %self.attempts,
                    model,
                    tokens,
                    cost,
                    estimated,
                    "request ended before its response did"
                ),
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.record(self.failed.unwrap_or(Ending::Dropped));
    }
}
