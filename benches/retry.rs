//! Cost of [`RetryLayer`] on the healthy path (the first attempt answers 200).
//!
//! Compares an inner service that answers immediately alone with `RetryLayer` + inner, for a
//! request with a [`BufferedBody`] and the [`Selected`] and [`Attempts`] extensions: alone
//! (the layer copies the request before the first try, as `tower::retry` did) and with the
//! balancer's [`Replay`] (no copy).
//!
//! ```text
//! cargo bench --bench retry -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_main};
use http::{Request, Response};
use llm_tower_core::{Attempts, BoxError, BufferedBody, Endpoint, Replay, Selected};
use llm_tower_mock::scripted::SingleFrame;
use llm_tower_retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const BODY: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

/// A buffered chat completion request routed to `endpoint`, with a fresh attempt log.
fn request(endpoint: &Arc<Endpoint>) -> Request<BufferedBody> {
    let mut request = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(BufferedBody::from(Bytes::from_static(BODY)))
        .expect("valid request");
    let extensions = request.extensions_mut();
    extensions.insert(Selected(Arc::clone(endpoint)));
    extensions.insert(Attempts::new());
    request
}

/// The same request carrying the balancer's [`Replay`]: the retry layer then makes no copy
/// before the first try (the gateway's case).
fn request_with_replay(endpoint: &Arc<Endpoint>) -> Request<BufferedBody> {
    let mut first = request(endpoint);
    let endpoint = Arc::clone(endpoint);
    first
        .extensions_mut()
        .insert(Replay::new(move || request(&endpoint)));
    first
}

/// Drives `service` once over `request` (readiness, then the call).
async fn call<S, RB>(mut service: S, request: Request<BufferedBody>) -> Response<RB>
where
    S: Service<Request<BufferedBody>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    let ready = service
        .ready()
        .await
        .map_err(Into::<BoxError>::into)
        .expect("ready");
    let response = ready
        .call(request)
        .await
        .map_err(Into::<BoxError>::into)
        .expect("200");
    assert!(response.status().is_success());
    response
}

fn retry(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let endpoint = Arc::new(
        Endpoint::builder("openai-main", "https://api.openai.com/v1")
            .build()
            .expect("valid endpoint"),
    );
    let inner = service_fn(|request: Request<BufferedBody>| async move {
        black_box(request);
        Ok::<_, Infallible>(Response::new(SingleFrame::empty()))
    });
    let with_retry = ServiceBuilder::new()
        .layer(RetryLayer::new())
        .service(inner);

    let mut group = c.benchmark_group("retry");
    group.bench_function("inner alone", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&endpoint),
            |request| call(inner, request),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("RetryLayer + inner", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&endpoint),
            |request| call(with_retry.clone(), request),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("RetryLayer + inner, with the balancer's Replay", |b| {
        b.to_async(&runtime).iter_batched(
            || request_with_replay(&endpoint),
            |request| call(with_retry.clone(), request),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// The benchmark group; in a module because `criterion_group!` generates an undocumented
/// `pub fn`.
mod group {
    use criterion::criterion_group;

    criterion_group!(benches, super::retry);
}

criterion_main!(group::benches);
