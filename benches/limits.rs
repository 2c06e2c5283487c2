//! Cost of [`LimitsLayer`]: a client without limits (passes through), one held to requests per
//! minute only (admitted without reading its body), and one held to requests, tokens, a
//! budget and models (its 1 KiB body read for the model and the estimate, the reservation
//! settled when the answer ends). The limits are high enough never to refuse. With a
//! `redis-server` (on `PATH`, or `LLM_TOWER_REDIS_SERVER`), the last two again counted in a
//! Redis of the bench's own on loopback: one script per admission, one per settlement.
//!
//! ```text
//! cargo bench --bench limits -- --warm-up-time 1 --measurement-time 3
//! ```

use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_main};
use http::Request;
use http_body_util::Full;
use llm_tower_core::{Caller, UsageRecord};
use std::time::Duration;

use llm_tower_limits::store::{LimitsStore, LimitsStoreSettings};
use llm_tower_limits::{Budget, Limiter, Limits, LimitsLayer, LimitsTable, Period};
use llm_tower_usage::Prices;
use tower::Layer;

#[path = "support/attempt.rs"]
mod attempt;
use attempt::{answer, replying};

/// A chat request of about 1 KiB.
fn request_body() -> Bytes {
    let words = "the quick brown fox jumps over the lazy dog ".repeat(22);
    Bytes::from(
        serde_json::json!({"model": "gpt-4o", "max_tokens": 300,
            "messages": [{"role": "user", "content": words}]})
        .to_string(),
    )
}

fn request(client: &'static str, body: &Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::post("http://gateway.example/v1/chat/completions")
        .body(Full::new(body.clone()))
        .expect("valid request");
    request.extensions_mut().insert(Caller::new(client));
    request.extensions_mut().insert(UsageRecord::default());
    request
}

fn limits(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let huge = u64::MAX / 4;
    let table = LimitsTable::new(
        [
            (
                "rpm".into(),
                Limits {
                    rpm: Some(huge),
                    ..Limits::default()
                },
            ),
            (
                "all".into(),
                Limits {
                    rpm: Some(huge),
                    tpm: Some(huge),
                    budget: Some(Budget {
                        usd: 1e12,
                        per: Period::Month,
                    }),
                    models: Some(vec!["gpt-4o".into()]),
                },
            ),
        ],
        None,
    );
    let prices: Prices =
        serde_json::from_str(r#"{"gpt-4o": {"input": 2.5, "output": 10}}"#).expect("prices");
    let body = request_body();
    let prices = Arc::new(prices);
    let service = LimitsLayer::new(table.clone())
        .prices(prices.clone())
        .layer(replying(Bytes::from_static(b"{}"), false));
    let mut group = c.benchmark_group("limits");
    let redis = llm_tower_mock::RedisServer::start()
        .map_err(|reason| eprintln!("the Redis cases are skipped: {reason}"))
        .ok();
    if let Some(redis) = &redis {
        let store = runtime.block_on(async {
            let store = LimitsStore::start(&LimitsStoreSettings::new(redis.url())).expect("store");
            assert!(store.connected(Duration::from_secs(10)).await, "connects");
            store
        });
        let shared = LimitsLayer::new(table)
            .prices(prices)
            .limiter(Arc::new(Limiter::shared(store)))
            .layer(replying(Bytes::from_static(b"{}"), false));
        for (client, case) in [
            ("rpm", "requests per minute only, in Redis"),
            ("all", "requests, tokens, budget and models, in Redis"),
        ] {
            group.bench_function(case, |b| {
                b.to_async(&runtime).iter_batched(
                    || request(client, &body),
                    |request| answer(shared.clone(), request),
                    BatchSize::SmallInput,
                );
            });
        }
    }
    for (client, case) in [
        ("nobody", "a client without limits"),
        ("rpm", "requests per minute only"),
        (
            "all",
            "requests, tokens, budget and models (1 KiB body read)",
        ),
    ] {
        group.bench_function(case, |b| {
            b.to_async(&runtime).iter_batched(
                || request(client, &body),
                |request| answer(service.clone(), request),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// The benchmark group; in a module because `criterion_group!` generates an undocumented
/// `pub fn`.
mod group {
    use criterion::criterion_group;

    criterion_group!(benches, super::limits);
}

criterion_main!(group::benches);
