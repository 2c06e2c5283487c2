//! Cost of [`UsageLayer`]: an attempt without a usage record (usage off: it passes through),
//! a JSON answer of 1 KiB read for its usage, a stream asked for its usage and the extra
//! chunk taken out, and per event, a stream of 100 chunks read as it passes.
//!
//! ```text
//! cargo bench --bench usage -- --warm-up-time 1 --measurement-time 3
//! ```

use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_main};
use http::Request;
use llm_tower_core::{BufferedBody, Endpoint, Selected, UsageRecord};
use llm_tower_usage::UsageLayer;
use tower::Layer;

#[path = "support/attempt.rs"]
mod attempt;
use attempt::{answer, replying};

const REQUEST: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello."}]}"#;
const STREAM_REQUEST: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello."}]}"#;

/// An OpenAI chat completion of about 1 KiB.
fn completion() -> Bytes {
    let text = "An answer of some length, as models give them. ".repeat(20);
    Bytes::from(
        serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 240, "total_tokens": 1140},
        })
        .to_string(),
    )
}

/// An OpenAI stream of `chunks` chunks as a client that asked for usage gets it.
fn stream(chunks: usize) -> Bytes {
    let mut stream = String::new();
    for _ in 0..chunks {
        stream.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" word\"},\"finish_reason\":null}],\"usage\":null}\n\n");
    }
    stream.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":100,\"total_tokens\":109}}\n\ndata: [DONE]\n\n");
    Bytes::from(stream)
}

fn attempt(endpoint: &Arc<Endpoint>, body: &'static str, usage: bool) -> Request<BufferedBody> {
    let mut request = Request::post("https://upstream.example/v1/chat/completions")
        .body(BufferedBody::from(Bytes::from_static(body.as_bytes())))
        .expect("valid request");
    request
        .extensions_mut()
        .insert(Selected(Arc::clone(endpoint)));
    if usage {
        request.extensions_mut().insert(UsageRecord::default());
    }
    request
}

fn usage(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let endpoint = Arc::new(
        Endpoint::builder("e", "https://upstream.example/v1")
            .build()
            .expect("valid endpoint"),
    );

    let mut group = c.benchmark_group("usage");
    let json = completion();
    let inner = replying(json.clone(), false);
    group.bench_function("inner alone (1 KiB answer)", |b| {
        b.to_async(&runtime).iter_batched(
            || attempt(&endpoint, REQUEST, false),
            |request| answer(inner.clone(), request),
            BatchSize::SmallInput,
        );
    });
    let layered = UsageLayer::new().layer(replying(json, false));
    group.bench_function("usage off (no record: passes through)", |b| {
        b.to_async(&runtime).iter_batched(
            || attempt(&endpoint, REQUEST, false),
            |request| answer(layered.clone(), request),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("1 KiB JSON answer read", |b| {
        b.to_async(&runtime).iter_batched(
            || attempt(&endpoint, REQUEST, true),
            |request| answer(layered.clone(), request),
            BatchSize::SmallInput,
        );
    });
    group.finish();

    let chunks = 100;
    let mut group = c.benchmark_group("usage per SSE event");
    group.throughput(Throughput::Elements(chunks as u64));
    let events = stream(chunks);
    let inner = replying(events.clone(), true);
    group.bench_function("inner alone (100 chunks)", |b| {
        b.to_async(&runtime).iter_batched(
            || attempt(&endpoint, STREAM_REQUEST, false),
            |request| answer(inner.clone(), request),
            BatchSize::SmallInput,
        );
    });
    let layered = UsageLayer::new().layer(replying(events, true));
    group.bench_function(
        "stream read, asked for usage and the chunk taken out",
        |b| {
            b.to_async(&runtime).iter_batched(
                || attempt(&endpoint, STREAM_REQUEST, true),
                |request| answer(layered.clone(), request),
                BatchSize::SmallInput,
            );
        },
    );
    group.finish();
}

/// The benchmark group; in a module because `criterion_group!` generates an undocumented
/// `pub fn`.
mod group {
    use criterion::criterion_group;

    criterion_group!(benches, super::usage);
}

criterion_main!(group::benches);
