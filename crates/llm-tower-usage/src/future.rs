//! [`ResponseFuture`] of [`ReadUsage`](crate::ReadUsage).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http::header::CONTENT_LENGTH;
use llm_tower_core::{AttemptSpan, UsageRecord, is_event_stream};
use pin_project_lite::pin_project;

use crate::body::{Reading, ResponseBody};
use crate::format::Format;
use crate::scan::Scanner;

/// What reading an attempt's answer takes, decided from its request.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) record: UsageRecord,
    pub(crate) format: Format,
    /// This layer asked the stream for its usage: the extra chunk is taken out again.
    pub(crate) asked: bool,
    pub(crate) request_len: usize,
}

impl Plan {
    /// Reading an answer in `format` to a request of `request_len` bytes, not asked for usage.
    pub(crate) fn reading(record: UsageRecord, format: Format, request_len: usize) -> Self {
        Self {
            record,
            format,
            asked: false,
            request_len,
        }
    }
}

pin_project! {
    /// Future of [`ReadUsage`](crate::ReadUsage): the inner service's response, its body read
    /// for usage when it is a success of an API that reports usage.
    ///
    /// ```
    /// use http::{Request, Response};
    /// use llm_tower_core::BufferedBody;
    /// use llm_tower_usage::{ResponseFuture, UsageLayer};
    /// use tower::{Layer, Service, service_fn};
    ///
    /// let mut service = UsageLayer::new().layer(service_fn(|_: Request<BufferedBody>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    /// }));
    /// let _future: ResponseFuture<_> = service.call(Request::new(BufferedBody::default()));
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        plan: Option<Plan>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, plan: Option<Plan>) -> Self {
        Self { future, plan }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<ResponseBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        // Only an answer is billed: a failed attempt reports no usage.
        let Some(plan) = this.plan.take().filter(|_| response.status().is_success()) else {
            return Poll::Ready(Ok(response.map(ResponseBody::passthrough)));
        };
        let events = is_event_stream(response.headers());
        let strip = plan.asked && events;
        if strip {
            response.headers_mut().remove(CONTENT_LENGTH);
        }
        let reading = Reading {
            scanner: Scanner::new(plan.format, events),
            record: plan.record,
            strip,
            request_len: plan.request_len,
            span: response.extensions().get::<AttemptSpan>().cloned(),
            model_named: false,
        };
        Poll::Ready(Ok(response.map(|body| ResponseBody::reading(body, reading))))
    }
}
