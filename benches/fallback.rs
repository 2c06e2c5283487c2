//! Cost of [`FallbackLayer`]: the healthy path with 2, 64 and 1024 endpoints for every
//! strategy (it should stay flat), a request that falls back once, and routing by model: finding the body's `model`
//! in a 32 KiB body (model first) and a 1 MiB body (model last, against one `memchr` pass over
//! the same bytes), and the healthy path of a request routed to an alias with each body.
//!
//! ```text
//! cargo bench --bench fallback -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_main};
use http::{Request, Response, StatusCode};
use llm_tower_core::{BufferedBody, Endpoint, ModelRoute, Selected, find_model};
use llm_tower_fallback::{FallbackLayer, HealthRegistry, Strategy};
use llm_tower_mock::scripted::SingleFrame;
use tower::{Layer, Service, ServiceExt, service_fn};

const BODY: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

fn request() -> Request<SingleFrame> {
    Request::post("/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer client")
        .body(SingleFrame::new(Bytes::from_static(BODY)))
        .expect("valid request")
}

fn endpoints(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| {
            Endpoint::builder(format!("ep-{i}"), format!("https://ep-{i}.example/v1"))
                .build()
                .expect("valid endpoint")
        })
        .collect()
}

async fn call<S, RB>(mut service: S) -> StatusCode
where
    S: Service<Request<SingleFrame>, Response = Response<RB>>,
    S::Error: std::fmt::Debug,
{
    let ready = service.ready().await.expect("ready");
    ready.call(request()).await.expect("response").status()
}

fn fallback(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ok = service_fn(|request: Request<BufferedBody>| async move {
        black_box(request);
        Ok::<_, Infallible>(Response::new(SingleFrame::empty()))
    });

    let mut group = c.benchmark_group("fallback");
    group.bench_function("inner alone (buffered request)", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                let mut request = Request::new(BufferedBody::from(Bytes::from_static(BODY)));
                *request.uri_mut() = "/chat/completions".parse().expect("uri");
                request
            },
            |request| ok.oneshot(request),
            BatchSize::SmallInput,
        );
    });
    for strategy in [
        Strategy::RoundRobin,
        Strategy::Weighted,
        Strategy::LeastInFlight,
        Strategy::LeastLatency,
    ] {
        // Round-robin keeps the name it always had, so that its history compares.
        let name = match strategy {
            Strategy::RoundRobin => "healthy path".to_owned(),
            other => {
                let name = serde_json::to_value(other).expect("a strategy's name");
                format!("healthy path {}", name.as_str().expect("a string"))
            }
        };
        for n in [2, 64, 1024] {
            let service = FallbackLayer::builder(endpoints(n))
                .strategy(strategy)
                .build(HealthRegistry::new())
                .expect("valid layer")
                .layer(ok);
            group.bench_with_input(BenchmarkId::new(name.as_str(), n), &n, |b, _| {
                b.to_async(&runtime).iter(|| call(service.clone()));
            });
        }
    }
    // The first endpoint tried answers 503 (NoRetry inside), the next one 200.
    let flaky = service_fn(|request: Request<BufferedBody>| async move {
        let selected = Selected::of(request.extensions()).expect("selected");
        let status = if selected.id().as_str() == "ep-0" {
            503
        } else {
            200
        };
        let mut response = Response::new(SingleFrame::empty());
        *response.status_mut() = StatusCode::from_u16(status).expect("status");
        Ok::<_, Infallible>(response)
    });
    // A tiny cooldown cap keeps ep-0 tried on every iteration (try_soonest when it cools).
    let two = FallbackLayer::builder(endpoints(2).into_iter().map(|e| {
        let priority = u32::from(e.id().as_str() != "ep-0");
        Endpoint::builder(e.id().clone(), e.base_url().to_string())
            .priority(priority)
            .health_check_interval(std::time::Duration::from_nanos(1))
            .build()
            .expect("valid endpoint")
    }))
    .max_cooldown(std::time::Duration::from_nanos(1))
    .build(HealthRegistry::new())
    .expect("valid layer")
    .layer(flaky);
    group.bench_function("one fallback", |b| {
        b.to_async(&runtime).iter(|| async {
            let status = call(two.clone()).await;
            assert_eq!(status, StatusCode::OK);
        });
    });
    group.finish();
    models(c, &runtime);
}

/// A chat body of about `size` bytes, its `model` first or last.
fn chat_body(size: usize, model_last: bool) -> Bytes {
    let content = "x".repeat(size.saturating_sub(96));
    let messages = format!(r#""messages":[{{"role":"user","content":"{content}"}}]"#);
    let body = if model_last {
        format!(r#"{{{messages},"stream":false,"model":"gpt-4o"}}"#)
    } else {
        format!(r#"{{"model":"gpt-4o","stream":false,{messages}}}"#)
    };
    Bytes::from(body)
}

fn models(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let bodies = [
        ("32 KiB, model first", chat_body(32 * 1024, false)),
        ("1 MiB, model last", chat_body(1024 * 1024, true)),
    ];
    let mut group = c.benchmark_group("models");
    for (name, body) in &bodies {
        group.bench_with_input(BenchmarkId::new("find_model", name), body, |b, body| {
            b.iter(|| black_box(find_model(black_box(body))));
        });
    }
    // The floor for any scan: one pass over the bytes looking for a byte that is not there.
    let (_, large) = &bodies[1];
    group.bench_function("one memchr pass over 1 MiB", |b| {
        b.iter(|| black_box(memchr::memchr(0, black_box(large))));
    });

    // Two models over four deployments; gpt-4o is an alias on the first two.
    let endpoint = |id: &str, route: ModelRoute| {
        Endpoint::builder(id, format!("https://{id}.example/v1"))
            .models([route])
            .build()
            .expect("valid endpoint")
    };
    let ok = service_fn(|request: Request<BufferedBody>| async move {
        black_box(request);
        Ok::<_, Infallible>(Response::new(SingleFrame::empty()))
    });
    let service = FallbackLayer::builder([
        endpoint("azure-east", ModelRoute::alias("gpt-4o", "gpt4o-east")),
        endpoint("azure-west", ModelRoute::alias("gpt-4o", "gpt4o-west")),
        endpoint("mini-1", ModelRoute::from("gpt-4o-mini")),
        endpoint("mini-2", ModelRoute::from("gpt-4o-mini")),
    ])
    .build(HealthRegistry::new())
    .expect("valid layer")
    .layer(ok);
    for (name, body) in &bodies {
        group.bench_with_input(
            BenchmarkId::new("healthy path, alias", name),
            body,
            |b, body| {
                b.to_async(runtime).iter(|| {
                    let request = Request::post("/chat/completions")
                        .header("content-type", "application/json")
                        .body(SingleFrame::new(body.clone()))
                        .expect("valid request");
                    let service = service.clone();
                    async move {
                        let response = service.oneshot(request).await.expect("response");
                        assert_eq!(response.status(), StatusCode::OK);
                    }
                });
            },
        );
    }
    group.finish();
}

/// The benchmark group; in a module because `criterion_group!` generates an undocumented
/// `pub fn`.
mod group {
    use criterion::criterion_group;

    criterion_group!(benches, super::fallback);
}

criterion_main!(group::benches);
