//! Cost of [`AuthLayer`] over an inner service that answers immediately.
//!
//! Compares the inner service alone with `AuthLayer` + inner, for a request that carries
//! [`Selected`] for an OpenAI endpoint with a key and a typical client header set.
//!
//! ```text
//! cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_main};
use http::{Request, Response};
use llm_tower_auth::AuthLayer;
use llm_tower_core::{ApiKey, Endpoint, Selected};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A request as a client would send it, routed to `endpoint`.
fn request(endpoint: &Arc<Endpoint>) -> Request<()> {
    let mut request = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer client-token-that-must-not-leak")
        .header("content-type", "application/json")
        .header("user-agent", "bench-client/1.0")
        .header("accept", "application/json")
        .body(())
        .expect("valid request");
    request
        .extensions_mut()
        .insert(Selected(Arc::clone(endpoint)));
    request
}

/// Drives `service` once over `request` (readiness, then the call).
async fn call<S>(mut service: S, request: Request<()>) -> Response<()>
where
    S: Service<Request<()>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let ready = service.ready().await.expect("ready");
    ready.call(request).await.expect("a response")
}

fn auth(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let endpoint = Arc::new(
        Endpoint::builder("openai-main", "https://api.openai.com/v1")
            .api_key(ApiKey::new("sk-bench-0123456789abcdef").expect("valid key"))
            .build()
            .expect("valid endpoint"),
    );
    let inner = service_fn(|request: Request<()>| async move {
        black_box(request);
        Ok::<_, Infallible>(Response::new(()))
    });
    let with_auth = ServiceBuilder::new().layer(AuthLayer::new()).service(inner);

    let mut group = c.benchmark_group("auth");
    group.bench_function("inner alone", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&endpoint),
            |request| call(inner, request),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("AuthLayer + inner", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&endpoint),
            |request| call(with_auth.clone(), request),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// The benchmark group; in a module because `criterion_group!` generates an undocumented
/// `pub fn`.
mod group {
    use criterion::criterion_group;

    criterion_group!(benches, super::auth);
}

criterion_main!(group::benches);
