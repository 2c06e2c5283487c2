//! Cost of [`TranslateLayer`]: an attempt that passes through (an OpenAI client on an OpenAI
//! endpoint), and one translated both ways (an OpenAI client on an Anthropic endpoint) with a
//! 4 KiB request and a 1 KiB answer; and per event, an Anthropic stream of 100 text deltas
//! read as OpenAI chunks.
//!
//! ```text
//! cargo bench --bench translate -- --warm-up-time 1 --measurement-time 3
//! ```

use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_main};
use http::Request;
use llm_tower_core::{BufferedBody, Endpoint, Provider, Selected};
use llm_tower_translate::TranslateLayer;
use tower::Layer;

#[path = "support/attempt.rs"]
mod attempt;
use attempt::{answer, replying};

/// An OpenAI chat request of about 4 KiB.
fn openai_request() -> Bytes {
    let words = "the quick brown fox jumps over the lazy dog ".repeat(90);
    let body = serde_json::json!({
        "model": "gpt-4o",
        "max_tokens": 300,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": words},
        ],
    });
    Bytes::from(body.to_string())
}

/// An Anthropic message of about 1 KiB.
fn anthropic_answer() -> Bytes {
    let text = "An answer of some length, as models give them. ".repeat(20);
    let message = serde_json::json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 900, "output_tokens": 240},
    });
    Bytes::from(message.to_string())
}

/// An Anthropic stream of `deltas` text deltas.
fn anthropic_stream(deltas: usize) -> Bytes {
    let mut stream = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
    );
    for _ in 0..deltas {
        stream.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" word\"}}\n\n");
    }
    stream.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":100}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    Bytes::from(stream)
}

fn attempt(endpoint: &Arc<Endpoint>, body: &Bytes) -> Request<BufferedBody> {
    let mut request = Request::post("https://upstream.example/v1/chat/completions")
        .body(BufferedBody::from(body.clone()))
        .expect("valid request");
    request
        .extensions_mut()
        .insert(Selected(Arc::clone(endpoint)));
    request
}

fn endpoint(provider: Provider) -> Arc<Endpoint> {
    Arc::new(
        Endpoint::builder("e", "https://upstream.example/v1")
            .provider(provider)
            .build()
            .expect("valid endpoint"),
    )
}

fn translate(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let request = openai_request();
    let answer_json = anthropic_answer();
    let (openai, anthropic) = (endpoint(Provider::OpenAi), endpoint(Provider::Anthropic));

    let mut group = c.benchmark_group("translate");
    let inner = replying(answer_json.clone(), false);
    group.bench_function("inner alone (4 KiB request, 1 KiB answer)", |b| {
        b.to_async(&runtime).iter_batched(
            || attempt(&openai, &request),
            |request| answer(inner.clone(), request),
            BatchSize::SmallInput,
        );
    });
    let through = TranslateLayer::new().layer(replying(answer_json.clone(), false));
    group.bench_function("passthrough (OpenAI endpoint)", |b| {
        b.to_async(&runtime).iter_batched(
            || attempt(&openai, &request),
            |request| answer(through.clone(), request),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("OpenAI client on Anthropic (request and answer)", |b| {
        b.to_async(&runtime).iter_batched(
            || attempt(&anthropic, &request),
            |request| answer(through.clone(), request),
            BatchSize::SmallInput,
        );
    });
    let deltas = 100;
    let streaming = TranslateLayer::new().layer(replying(anthropic_stream(deltas), true));
    group.throughput(Throughput::Elements(deltas as u64));
    group.bench_function("Anthropic stream as OpenAI chunks (per event)", |b| {
        b.to_async(&runtime).iter_batched(
            || attempt(&anthropic, &request),
            |request| answer(streaming.clone(), request),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// The benchmark group; in a module because `criterion_group!` generates an undocumented
/// `pub fn`.
mod group {
    use criterion::criterion_group;

    criterion_group!(benches, super::translate);
}

criterion_main!(group::benches);
