//! OpenTelemetry, black-box: the gateway binary, configured with `otel`, exports to an OTLP
//! receiver of the test's own (`otlp/`, decoding with `opentelemetry-proto`). A request that
//! retried and fell back is one server span and three attempt spans with the GenAI
//! attributes, in the client's trace, and the upstream saw the attempt's `traceparent`; a
//! stream's spans last as long as the stream; the GenAI metrics arrive; an unreachable
//! receiver changes nothing for clients and its spans are counted as dropped.

mod binary;
mod otlp;

use std::collections::HashMap;
use std::time::Duration;

use binary::{Running, client, launch, temp_file};
use http_body_util::{BodyExt, Full};
use llm_tower_mock::{Behavior, MockProvider};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use otlp::{Export, Receiver};

/// How long an export may take to arrive: the batch delay is set to 50 ms below.
const ARRIVES: Duration = Duration::from_secs(10);

/// The client's trace: its id and its span's.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
/// What the client asks: never in a span.
const PROMPT: &str = "the secret plans of the prompt";
/// The client's key (named `team-a`): never in a span.
const KEY: &str = "otel-test-client-key-7c41d9e2a8";

/// A receiver, and the two upstreams of [`gateway`].
async fn started() -> (Receiver, MockProvider, MockProvider) {
    let receiver = Receiver::start().await;
    let primary = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    (receiver, primary, backup)
}

/// The gateway on `primary` (one retry) then `backup`, exporting to `endpoint`.
fn gateway(primary: &MockProvider, backup: &MockProvider, endpoint: &str) -> (Running, String) {
    gateway_with(primary, backup, endpoint, ["", ""])
}

/// [`gateway`], with more settings for each endpoint (`, key: value`).
fn gateway_with(
    primary: &MockProvider,
    backup: &MockProvider,
    endpoint: &str,
    [primary_extra, backup_extra]: [&str; 2],
) -> (Running, String) {
    let config = temp_file(
        &format!("otel-{}.yaml", primary.addr().port()),
        &format!(
            "listen: 127.0.0.1:0\n\
             otel: {{ endpoint: '{endpoint}', service_name: gateway-under-test }}\n\
             client_auth: {{ keys: [ {{ name: team-a, key: {KEY} }} ] }}\n\
             endpoints:\n\
             \x20 - {{ id: primary, base_url: '{}', priority: 0, \
                      retry_policy: {{ name: CountBased, config: {{ times: 1 }} }}{primary_extra} }}\n\
             \x20 - {{ id: backup, base_url: '{}', priority: 1{backup_extra} }}\n",
            primary.base_url(),
            backup.base_url()
        ),
    );
    let mut command = std::process::Command::new(binary::BIN);
    command
        .args(["--config", config.to_str().unwrap()])
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200");
    let (running, url, lines) = launch(command);
    std::thread::spawn(move || lines.for_each(drop));
    (running, url)
}

async fn send(url: &str, body: String, traceparent: Option<&str>) -> (u16, String) {
    let mut request = http::Request::post(format!("{url}/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json");
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = client()
        .request(request.body(Full::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn chat(stream: bool) -> String {
    serde_json::json!({
        "model": "mock-model",
        "stream": stream,
        "messages": [{ "role": "user", "content": PROMPT }],
    })
    .to_string()
}

/// Spans as they arrive, until `done` says the ones so far are all (at most [`ARRIVES`]).
async fn spans_until(receiver: &mut Receiver, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
    let mut spans = Vec::new();
    let deadline = tokio::time::Instant::now() + ARRIVES;
    while !done(&spans) {
        let export = tokio::time::timeout_at(deadline, receiver.exports.recv())
            .await
            .unwrap_or_else(|_| panic!("not all spans arrived: {spans:#?}"))
            .unwrap();
        if let Export::Traces(traces) = export {
            for resource in traces.resource_spans {
                let service = attribute(&resource.resource.unwrap().attributes, "service.name");
                assert_eq!(service, Some(text("gateway-under-test")));
                for scope in resource.scope_spans {
                    spans.extend(scope.spans);
                }
            }
        }
    }
    spans
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|value: AnyValue| value.value)
}

fn text(value: &str) -> any_value::Value {
    any_value::Value::StringValue(value.to_owned())
}

fn int(value: i64) -> any_value::Value {
    any_value::Value::IntValue(value)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

fn of_trace(spans: &[Span]) -> Vec<&Span> {
    spans
        .iter()
        .filter(|span| hex(&span.trace_id) == TRACE_ID)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_retried_and_fell_back_is_one_server_span_and_three_attempt_spans() {
    let (mut receiver, primary, backup) = started().await;
    primary.script([Behavior::status(503), Behavior::status(503)]);
    let (_gateway, url) = gateway(&primary, &backup, &receiver.endpoint());

    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let (status, _) = send(&url, chat(false), Some(&traceparent)).await;
    assert_eq!(status, 200);
    let spans = spans_until(&mut receiver, |spans| of_trace(spans).len() >= 4).await;
    let spans = of_trace(&spans);
    assert_eq!(spans.len(), 4, "{spans:#?}");

    // The server span continues the client's trace, under the client's span.
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 1, "{spans:#?}");
    let server = servers[0];
    assert_eq!(hex(&server.parent_span_id), PARENT_ID);
    assert_eq!(server.name, "POST /v1/chat/completions");
    let attrs = &server.attributes;
    assert_eq!(attribute(attrs, "http.request.method"), Some(text("POST")));
    assert_eq!(
        attribute(attrs, "url.path"),
        Some(text("/v1/chat/completions"))
    );
    assert_eq!(
        attribute(attrs, "http.response.status_code"),
        Some(int(200))
    );

    // Three attempts, children of the server span, in the order they were made.
    let mut attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attempts.len(), 3, "{spans:#?}");
    let expected = [
        ("primary", "first", 503),
        ("primary", "retry", 503),
        ("backup", "fallback", 200),
    ];
    for (span, (deployment, kind, status)) in attempts.iter().zip(expected) {
        let attrs = &span.attributes;
        assert_eq!(span.parent_span_id, server.span_id, "{span:#?}");
        assert_eq!(span.name, "chat mock-model");
        assert_eq!(
            attribute(attrs, "gen_ai.operation.name"),
            Some(text("chat"))
        );
        assert_eq!(
            attribute(attrs, "gen_ai.provider.name"),
            Some(text("openai"))
        );
        assert_eq!(attribute(attrs, "server.address"), Some(text("127.0.0.1")));
        assert_eq!(
            attribute(attrs, "llm_tower.deployment"),
            Some(text(deployment))
        );
        assert_eq!(attribute(attrs, "llm_tower.attempt.kind"), Some(text(kind)));
        assert_eq!(
            attribute(attrs, "http.response.status_code"),
            Some(int(status))
        );
        let error = (status != 200).then(|| text("503"));
        assert_eq!(attribute(attrs, "error.type"), error, "{span:#?}");
    }
    // The winner's usage, as its answer reported it.
    let winner = &attempts[2].attributes;
    let usage = |key| match attribute(winner, key) {
        Some(any_value::Value::IntValue(tokens)) => tokens,
        other => panic!("{key}: {other:?}"),
    };
    assert!(usage("gen_ai.usage.input_tokens") > 0);
    assert!(usage("gen_ai.usage.output_tokens") > 0);
    assert_eq!(
        attribute(winner, "gen_ai.response.model"),
        Some(text("mock-model"))
    );

    // The upstream saw the attempt's context: the client's trace, the attempt as parent.
    let seen = backup.requests();
    let traceparent = seen[0].header("traceparent").unwrap();
    assert_eq!(
        traceparent,
        format!("00-{TRACE_ID}-{}-01", hex(&attempts[2].span_id))
    );

    // Names, counts and outcomes: never the prompt, never the key.
    let shown = format!("{spans:?}");
    assert!(!shown.contains(PROMPT) && !shown.contains(KEY), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answers_spans_end_when_the_stream_ends_and_the_metrics_arrive() {
    let (mut receiver, primary, backup) = started().await;
    let interval = Duration::from_millis(60);
    primary.set_default(Behavior::Stream {
        chunks: 5,
        interval,
    });
    let (_gateway, url) = gateway(&primary, &backup, &receiver.endpoint());

    let (status, body) = send(&url, chat(true), None).await;
    assert_eq!(status, 200);
    assert!(body.contains("[DONE]"), "{body}");
    let spans = spans_until(&mut receiver, |spans| spans.len() >= 2).await;
    let duration =
        |span: &Span| Duration::from_nanos(span.end_time_unix_nano - span.start_time_unix_nano);
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    let attempt = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    // Five chunks 60 ms apart: the spans last the stream, not the head.
    for span in [server, attempt] {
        assert!(
            duration(span) >= 4 * interval,
            "{:?} lasted {:?} ({:?})",
            span.kind,
            duration(span),
            [server, attempt].map(duration)
        );
    }
    let first_chunk = match attribute(&attempt.attributes, "llm_tower.time_to_first_chunk") {
        Some(any_value::Value::DoubleValue(seconds)) => seconds,
        other => panic!("{other:?}"),
    };
    assert!(first_chunk < duration(attempt).as_secs_f64());

    // The GenAI metrics, every 200 ms.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + ARRIVES;
    let wanted = [
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.server.time_to_first_token",
    ];
    while !wanted.iter().all(|name| seen.contains_key(*name)) {
        let export = tokio::time::timeout_at(deadline, receiver.exports.recv())
            .await
            .unwrap_or_else(|_| panic!("metrics missing: {seen:?}"))
            .unwrap();
        let Export::Metrics(metrics) = export else {
            continue;
        };
        for scope in metrics
            .resource_metrics
            .into_iter()
            .flat_map(|r| r.scope_metrics)
        {
            // Cumulative: each export counts everything so far, so the last one is the count.
            for metric in scope.metrics {
                let Some(metric::Data::Histogram(histogram)) = metric.data else {
                    continue;
                };
                let mut count = 0;
                for point in histogram.data_points {
                    let attrs = &point.attributes;
                    assert_eq!(
                        attribute(attrs, "gen_ai.operation.name"),
                        Some(text("chat"))
                    );
                    if metric.name == "gen_ai.client.token.usage" {
                        assert!(attribute(attrs, "gen_ai.token.type").is_some());
                    }
                    count += point.count as usize;
                }
                seen.insert(metric.name, count);
            }
        }
    }
    assert_eq!(
        seen["gen_ai.client.token.usage"], 2,
        "input and output: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receiver_changes_nothing_for_clients_and_its_spans_are_counted() {
    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (primary, backup) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let (_gateway, url) = gateway(&primary, &backup, &endpoint);
    for _ in 0..20 {
        assert_eq!(send(&url, chat(false), None).await.0, 200);
    }
    let metrics_url = format!("{}/metrics", url.trim_end_matches("/v1"));
    let deadline = std::time::Instant::now() + ARRIVES;
    loop {
        let request = http::Request::get(&metrics_url)
            .header("authorization", format!("Bearer {KEY}"))
            .body(Full::default())
            .unwrap();
        let response = client().request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let metrics = String::from_utf8_lossy(&body).into_owned();
        let dropped = metrics
            .lines()
            .find_map(|line| line.strip_prefix("llm_tower_otel_spans_dropped_total "))
            .map(|count| count.parse::<f64>().unwrap());
        if dropped.is_some_and(|count| count >= 40.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spans not counted as dropped: {dropped:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The attempts' spans of one request: (deployment, kind, error.type), in the order made,
/// each checked to be a child of the request's span.
fn attempts_of(spans: &[Span]) -> Vec<(String, String, Option<any_value::Value>)> {
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    let mut attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    attempts
        .into_iter()
        .map(|span| {
            assert_eq!(span.trace_id, server.trace_id, "{span:#?}");
            assert_eq!(span.parent_span_id, server.span_id, "{span:#?}");
            let text = |key| match attribute(&span.attributes, key) {
                Some(any_value::Value::StringValue(value)) => value,
                other => panic!("{key}: {other:?}"),
            };
            (
                text("llm_tower.deployment"),
                text("llm_tower.attempt.kind"),
                attribute(&span.attributes, "error.type"),
            )
        })
        .collect()
}

/// A hedge and the attempt it raced are both the request's; the one that lost was cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_and_the_attempt_it_beat_are_both_children_of_the_request() {
    let (mut receiver, primary, backup) = started().await;
    primary.push(Behavior::delay(Duration::from_secs(20), Behavior::Reply));
    let hedge = ", hedge: { after: 100ms, max_percent: 100 }";
    let (_gateway, url) = gateway_with(&primary, &backup, &receiver.endpoint(), [hedge, ""]);
    assert_eq!(send(&url, chat(false), None).await.0, 200);
    let spans = spans_until(&mut receiver, |spans| spans.len() >= 3).await;
    assert_eq!(
        attempts_of(&spans),
        [
            ("primary".into(), "first".into(), Some(text("cancelled"))),
            ("backup".into(), "hedge".into(), None),
        ]
    );
}

/// A stream that broke and was continued on another deployment: the continuation is the
/// request's too, not a trace of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_of_a_broken_stream_is_a_child_of_the_request() {
    let (mut receiver, primary, backup) = started().await;
    primary.push(Behavior::ResetAfterChunks(2));
    backup.set_default(Behavior::Stream {
        chunks: 2,
        interval: Duration::ZERO,
    });
    let continuing = ", continuation: prefill";
    let (_gateway, url) = gateway_with(&primary, &backup, &receiver.endpoint(), ["", continuing]);
    let (status, body) = send(&url, chat(true), None).await;
    assert_eq!(status, 200);
    assert!(body.contains("[DONE]"), "continued to the end: {body}");
    let spans = spans_until(&mut receiver, |spans| spans.len() >= 3).await;
    assert_eq!(
        attempts_of(&spans),
        [
            (
                "primary".into(),
                "first".into(),
                Some(text("stream_broken"))
            ),
            ("backup".into(), "continuation".into(), None),
        ]
    );
}

/// Without `otel`, nothing is traced and nothing is injected: the upstream gets the
/// client's own `traceparent`, or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_otel_trace_context_passes_through_untouched() {
    let upstream = MockProvider::start().await.unwrap();
    let (_gateway, url) = binary::start_binary(&format!(
        "listen: 127.0.0.1:0\n\
         client_auth: {{ keys: [ {{ name: team-a, key: {KEY} }} ] }}\n\
         endpoints: [ {{ id: a, base_url: '{}' }} ]\n",
        upstream.base_url()
    ));
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    assert_eq!(send(&url, chat(false), Some(&traceparent)).await.0, 200);
    assert_eq!(send(&url, chat(false), None).await.0, 200);
    let seen = upstream.requests();
    assert_eq!(seen[0].header("traceparent"), Some(traceparent.as_str()));
    assert_eq!(seen[1].header("traceparent"), None);
}
