//! [`ReadUsage`], the service.

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use llm_tower_core::{
    AttemptFacts, BufferedBody, ModelInBody, TopLevel, find_model, find_model_and,
    requested_model_in, rewrite_attempt,
};
use tower::Service;

use crate::ask::{asking_for_usage, might_stream};
use crate::body::ResponseBody;
use crate::format::Format;
use crate::future::{Plan, ResponseFuture};

/// Reads the usage of each attempt's answer as it passes — OpenAI chat completions and
/// embeddings, the Responses API, Anthropic messages and Gemini, JSON and streams — and adds
/// it to the request's [`UsageRecord`](llm_tower_core::UsageRecord) when the answer ends (or
/// breaks off, or is dropped: then what was read, the rest estimated). Requests without a
/// record pass untouched: a layer further out that accounts for usage puts one on the
/// request (the facade's `Respond`, with usage on). A failed attempt records nothing.
///
/// An OpenAI-format stream whose client did not ask for its usage is asked for it
/// (`stream_options.include_usage`, unless its endpoint says
/// [`stream_usage(false)`](llm_tower_core::EndpointBuilder::stream_usage)), and the extra
/// chunk is taken out of the answer again: the client sees the stream it would have seen.
///
/// Put it inside the balancer (each attempt carries the request's record, and the deployment
/// it goes to) and outside retry (a retried attempt's failures are not answers), below
/// translation (it reads the deployment's own API).
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::BodyExt;
/// use llm_tower_core::{BufferedBody, Endpoint, Selected, UsageRecord};
/// use llm_tower_usage::UsageLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let upstream = service_fn(|_: Request<BufferedBody>| async {
///     let completion = r#"{"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"Hi."},"finish_reason":"stop"}],
///         "usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":8}}}"#;
///     Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(Bytes::from(completion))))
/// });
/// let record = UsageRecord::default();
/// let mut request = Request::post("http://127.0.0.1:1/v1/chat/completions")
///     .body(BufferedBody::from(Bytes::from_static(br#"{"model":"gpt-4o","messages":[]}"#)))
///     .unwrap();
/// request.extensions_mut().insert(record.clone());
/// let endpoint = Endpoint::builder("main", "http://127.0.0.1:1/v1").build().unwrap();
/// request.extensions_mut().insert(Selected(Arc::new(endpoint)));
/// let response = UsageLayer::new().layer(upstream).oneshot(request).await.unwrap();
/// response.into_body().collect().await.unwrap();
/// let usage = record.usage().unwrap();
/// assert_eq!((usage.input, usage.output, usage.cached_input, usage.estimated), (9, 2, 8, false));
/// assert_eq!(record.model().as_deref(), Some("gpt-4o"));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ReadUsage<S> {
    inner: S,
}

impl<S> ReadUsage<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }

    llm_tower_core::define_inner_service_accessors!();
}

impl<S, RB> Service<Request<BufferedBody>> for ReadUsage<S>
where
    S: Service<Request<BufferedBody>, Response = Response<RB>>,
    RB: Body,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<BufferedBody>) -> Self::Future {
        let plan = plan(&mut request);
        ResponseFuture::new(self.inner.call(request), plan)
    }
}

/// What reading the answer to `request` takes (`None`: nothing to read), the request asking
/// its stream for usage when it must.
fn plan(request: &mut Request<BufferedBody>) -> Option<Plan> {
    let facts = AttemptFacts::of(request.extensions());
    let record = facts.usage()?.clone();
    let format = Format::of_path(request.uri().path())?;
    let request_len = request.body().len();
    let routed_by_model = facts
        .deployment()
        .is_some_and(|deployment| deployment.model.is_some());
    let may_ask = format == Format::OpenAiChat
        && facts
            .selected()
            .is_some_and(|selected| selected.stream_usage());
    if routed_by_model && !may_ask {
        return Some(Plan::reading(record, format, request_len));
    }
    // One piece (a copy only for a body whose model an alias rewrote).
    let body = request.body().to_bytes();
    // The top level is read once for all it is read for: the model asked for, what the
    // accounting prices when no balancer routed by it; and, when the request might stream,
    // whether its stream asks for its usage.
    let (model, [stream, options]) = if may_ask && might_stream(&body) {
        find_model_and(&body, ["stream", "stream_options"])
    } else if !routed_by_model {
        (find_model(&body), [TopLevel::Absent, TopLevel::Absent])
    } else {
        (ModelInBody::Absent, [TopLevel::Absent, TopLevel::Absent])
    };
    // Gemini names the model in the path, `…/models/{model}:generateContent`.
    if !routed_by_model && let Some(model) = requested_model_in(model, request.uri(), false) {
        record.set_model(model);
    }
    let mut plan = Plan::reading(record, format, request_len);
    if may_ask && let Some(asking) = asking_for_usage(&body, stream, options) {
        let uri = request.uri().clone();
        rewrite_attempt(request, uri, asking);
        plan.asked = true;
    }
    Some(plan)
}
