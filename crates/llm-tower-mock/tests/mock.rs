//! Every behaviour of the mock, observed by a real hyper client over loopback.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use llm_tower_mock::{Behavior, MockProvider};
use serde_json::Value;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Safety net only: nothing in these tests should come close to it.
const SAFETY: Duration = Duration::from_secs(10);
/// How long a stalled response is watched to make sure nothing arrives.
const STALL_WATCH: Duration = Duration::from_millis(200);

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o-mini","stream": true,"messages":[{"role":"user","content":"hi"}]}"#;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn safe<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(SAFETY, fut)
        .await
        .expect("safety timeout elapsed")
}

fn chat_request(mock: &MockProvider, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(format!("{}/chat/completions", mock.base_url()))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn chat(
    client: &HttpClient,
    mock: &MockProvider,
    body: &'static str,
) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
    safe(client.request(chat_request(mock, body))).await
}

async fn body_bytes(res: Response<Incoming>) -> Bytes {
    safe(res.into_body().collect()).await.unwrap().to_bytes()
}

async fn body_json(res: Response<Incoming>) -> Value {
    serde_json::from_slice(&body_bytes(res).await).unwrap()
}

/// The `data:` payloads of an SSE body.
fn sse_events(body: &[u8]) -> Vec<String> {
    std::str::from_utf8(body)
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("data event").to_owned())
        .collect()
}

fn request_index(res: &Response<Incoming>) -> usize {
    res.headers()["x-mock-request-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Status of a default-route request, or `"error"` for a transport failure.
async fn outcome(client: &HttpClient, mock: &MockProvider) -> String {
    match chat(client, mock, CHAT).await {
        Ok(res) => {
            let status = res.status().as_u16();
            body_bytes(res).await;
            status.to_string()
        }
        Err(_) => "error".to_owned(),
    }
}

#[tokio::test]
async fn reply_json() {
    let mock = MockProvider::start().await.unwrap();
    let res = chat(&client(), &mock, CHAT).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    let len: usize = res.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(request_index(&res), 0);
    let body = body_bytes(res).await;
    assert_eq!(body.len(), len);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["choices"][0]["message"]["role"], "assistant");
    assert_eq!(json["choices"][0]["finish_reason"], "stop");
    assert!(json["choices"][0]["message"]["content"].is_string());
    assert!(json["usage"]["total_tokens"].is_u64());
}

#[tokio::test]
async fn reply_sse_when_stream_requested() {
    let mock = MockProvider::start().await.unwrap();
    let res = chat(&client(), &mock, CHAT_STREAM).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let body = body_bytes(res).await;
    assert!(body.ends_with(b"data: [DONE]\n\n"));
    let events = sse_events(&body);
    assert_eq!(events.len(), 4);
    let mut text = String::new();
    for (i, event) in events[..3].iter().enumerate() {
        let chunk: Value = serde_json::from_str(event).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        text.push_str(chunk["choices"][0]["delta"]["content"].as_str().unwrap());
        let finish = &chunk["choices"][0]["finish_reason"];
        assert_eq!(finish.is_null(), i < 2, "only the last chunk finishes");
    }
    assert_eq!(text, "Hello from llm-tower-mock.");
    assert_eq!(events[3], "[DONE]");
}

#[tokio::test]
async fn stream_with_interval_is_paced() {
    let interval = Duration::from_millis(100);
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::Stream {
        chunks: 4,
        interval,
    });
    // Not asked to stream: `Stream` streams anyway.
    let res = chat(&client(), &mock, CHAT).await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();

    let first = safe(body.frame())
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    let first_at = Instant::now();
    let first_events = sse_events(&first);
    assert_eq!(first_events.len(), 1, "the first frame is one chunk");
    assert_ne!(first_events[0], "[DONE]");

    let mut rest = Vec::new();
    while let Some(frame) = safe(body.frame()).await {
        if let Ok(data) = frame.unwrap().into_data() {
            rest.extend_from_slice(&data);
        }
    }
    let elapsed = first_at.elapsed();
    assert!(
        elapsed >= interval * 3,
        "3 intervals follow the first chunk, took {elapsed:?}"
    );
    let events = sse_events(&rest);
    assert_eq!(events.len(), 4);
    assert_eq!(events[3], "[DONE]");
}

#[tokio::test]
async fn status_with_retry_after_and_custom_body() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::Status {
        status: 503,
        retry_after: Some("7".to_owned()),
        headers: vec![("x-extra".to_owned(), "yes".to_owned())],
        body: Some("upstream overloaded".to_owned()),
    });
    mock.push(Behavior::retry_after(429, "Wed, 21 Oct 2015 07:28:00 GMT"));
    let client = client();

    let res = chat(&client, &mock, CHAT).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "7");
    assert_eq!(res.headers()["x-extra"], "yes");
    assert_eq!(&body_bytes(res).await[..], b"upstream overloaded");

    let res = chat(&client, &mock, CHAT).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.headers()["retry-after"],
        "Wed, 21 Oct 2015 07:28:00 GMT"
    );
    assert_eq!(res.headers()["content-type"], "application/json");
    let json = body_json(res).await;
    assert_eq!(json["error"]["code"], "rate_limit_exceeded");
    assert!(json["error"]["message"].is_string());
    assert!(json["error"]["type"].is_string());
}

#[tokio::test]
async fn status_default_error_bodies() {
    let mock = MockProvider::start().await.unwrap();
    let client = client();
    for code in [400_u16, 401, 404, 418, 500, 503, 504] {
        mock.push(Behavior::status(code));
        let res = chat(&client, &mock, CHAT).await.unwrap();
        assert_eq!(res.status().as_u16(), code);
        assert!(res.headers().get("retry-after").is_none());
        let json = body_json(res).await;
        assert!(json["error"]["message"].is_string(), "{code}: {json}");
        assert!(json["error"]["type"].is_string(), "{code}: {json}");
        assert!(json["error"]["code"].is_string(), "{code}: {json}");
    }
}

#[tokio::test]
async fn delay_then_reply() {
    let delay = Duration::from_millis(50);
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::delay(delay, Behavior::status(500)));
    let started = Instant::now();
    let res = chat(&client(), &mock, CHAT).await.unwrap();
    assert!(started.elapsed() >= delay);
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn close_before_head_is_a_transport_error() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::CloseBeforeHead);
    let client = client();
    let err = chat(&client, &mock, CHAT).await.unwrap_err();
    assert!(!err.is_connect(), "the connection was made: {err:?}");
    let cause = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<hyper::Error>())
        .expect("a hyper error");
    assert!(cause.is_incomplete_message(), "no response head: {err:?}");
    // The request was read and recorded; the next one is served normally.
    assert_eq!(mock.request_count(), 1);
    assert_eq!(mock.requests()[0].json().unwrap()["model"], "gpt-4o-mini");
    let res = chat(&client, &mock, CHAT).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn reset_after_chunks() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::ResetAfterChunks(2));
    let res = chat(&client(), &mock, CHAT_STREAM).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let mut data = Vec::new();
    let err = loop {
        match safe(body.frame()).await {
            Some(Ok(frame)) => data.extend_from_slice(&frame.into_data().unwrap()),
            Some(Err(err)) => break err,
            None => panic!("the body ended cleanly"),
        }
    };
    let events = sse_events(&data);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e != "[DONE]"));
    // The connection was cut mid-body (an unexpected EOF in the chunked encoding).
    assert!(!err.is_user(), "{err:?}");
}

#[tokio::test]
async fn stall_body_sends_head_only() {
    let mock = MockProvider::start().await.unwrap();
    mock.script([Behavior::StallBody, Behavior::StallBody]);
    let client = client();

    let res = chat(&client, &mock, CHAT).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    let mut body = res.into_body();
    assert!(
        tokio::time::timeout(STALL_WATCH, body.frame())
            .await
            .is_err()
    );

    let res = chat(&client, &mock, CHAT_STREAM).await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut stream_body = res.into_body();
    assert!(
        tokio::time::timeout(STALL_WATCH, stream_body.frame())
            .await
            .is_err()
    );

    // Shutdown ends the stall (with an error, not a clean end).
    safe(mock.shutdown()).await;
    let end = safe(body.frame()).await;
    assert!(!matches!(end, None | Some(Ok(_))), "{end:?}");
}

#[tokio::test]
async fn stall_head_sends_nothing() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::StallHead);
    let client = client();
    let pending = client.request(chat_request(&mock, CHAT));
    tokio::pin!(pending);
    assert!(
        tokio::time::timeout(STALL_WATCH, pending.as_mut())
            .await
            .is_err()
    );
    assert_eq!(mock.request_count(), 1);
    // Shutdown releases the stalled request with an error.
    safe(mock.shutdown()).await;
    assert!(safe(pending).await.is_err());
}

#[tokio::test]
async fn script_is_fifo_then_default() {
    let mock = MockProvider::start().await.unwrap();
    mock.set_default(Behavior::status(502));
    mock.push(Behavior::status(500));
    mock.script([Behavior::Reply, Behavior::status(429)]);
    let client = client();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(outcome(&client, &mock).await);
    }
    assert_eq!(seen, ["500", "200", "429", "502", "502"]);
}

#[tokio::test]
async fn cycle_repeats_and_one_shots_take_precedence() {
    let mock = MockProvider::start().await.unwrap();
    mock.set_cycle(vec![
        Behavior::Reply,
        Behavior::Reply,
        Behavior::status(503),
    ]);
    let client = client();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(outcome(&client, &mock).await);
    }
    assert_eq!(seen, ["200", "200", "503", "200", "200", "503"]);

    mock.push(Behavior::status(401));
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(outcome(&client, &mock).await);
    }
    assert_eq!(seen, ["401", "200", "200"]);

    mock.set_default(Behavior::Reply);
    assert_eq!(outcome(&client, &mock).await, "200");
}

#[tokio::test]
async fn records_requests() {
    let mock = MockProvider::start().await.unwrap();
    let client = client();
    let res = chat(&client, &mock, CHAT).await.unwrap();
    body_bytes(res).await;
    let req = Request::get(format!("{}/models?limit=1", mock.base_url()))
        .header("x-custom", "abc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = safe(client.request(req)).await.unwrap();
    assert_eq!(request_index(&res), 1);
    body_bytes(res).await;

    let recorded = mock.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(mock.request_count(), 2);
    assert_eq!(recorded[0].method, Method::POST);
    assert_eq!(recorded[0].uri.path(), "/v1/chat/completions");
    assert_eq!(recorded[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(recorded[0].header("Content-Type"), Some("application/json"));
    assert_eq!(&recorded[0].body[..], CHAT.as_bytes());
    assert_eq!(recorded[0].json().unwrap()["messages"][0]["content"], "hi");
    assert_eq!(recorded[1].method, Method::GET);
    assert_eq!(recorded[1].uri.path(), "/v1/models");
    assert_eq!(recorded[1].uri.query(), Some("limit=1"));
    assert_eq!(recorded[1].header("x-custom"), Some("abc"));
    assert!(recorded[1].body.is_empty());
    assert!(recorded[1].json().is_none());

    mock.clear();
    assert!(mock.requests().is_empty());
    assert_eq!(mock.request_count(), 0);
    let res = chat(&client, &mock, CHAT).await.unwrap();
    assert_eq!(request_index(&res), 0);
}

#[tokio::test]
async fn recording_off_still_counts() {
    let mock = MockProvider::builder().record(false).start().await.unwrap();
    let client = client();
    for _ in 0..3 {
        assert_eq!(outcome(&client, &mock).await, "200");
    }
    assert_eq!(mock.request_count(), 3);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn models_route_does_not_consume_script() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::status(500));
    let client = client();
    let req = Request::get(format!("{}/models", mock.base_url()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = safe(client.request(req)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    let json = body_json(res).await;
    assert_eq!(json["object"], "list");
    assert_eq!(json["data"][0]["id"], "mock-model");
    assert_eq!(json["data"][0]["object"], "model");
    // The scripted 500 is still queued for the next chat request.
    assert_eq!(outcome(&client, &mock).await, "500");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn unknown_route_is_404() {
    let mock = MockProvider::start().await.unwrap();
    mock.push(Behavior::status(500));
    let client = client();
    for (method, path) in [
        (Method::POST, "/v1/embeddings"),
        (Method::GET, "/v1/chat/completions"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", mock.addr()))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let res = safe(client.request(req)).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let json = body_json(res).await;
        assert_eq!(json["error"]["code"], "unknown_url");
    }
    assert_eq!(mock.request_count(), 2);
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(outcome(&client, &mock).await, "500");
}

#[tokio::test]
async fn builder_default_behavior_and_bind() {
    let addr = "127.0.0.1:0".parse().unwrap();
    let mock = MockProvider::builder()
        .bind(addr)
        .default_behavior(Behavior::status(503))
        .start()
        .await
        .unwrap();
    assert!(mock.addr().ip().is_loopback());
    assert_ne!(mock.addr().port(), 0);
    assert_eq!(
        mock.base_url(),
        format!("http://127.0.0.1:{}/v1", mock.addr().port())
    );
    assert_eq!(outcome(&client(), &mock).await, "503");
}

#[tokio::test]
async fn drop_stops_the_server() {
    let mock = MockProvider::start().await.unwrap();
    let client = client();
    assert_eq!(outcome(&client, &mock).await, "200");
    let url = format!("{}/chat/completions", mock.base_url());
    drop(mock);
    let request = || {
        Request::post(url.as_str())
            .body(Full::new(Bytes::from_static(CHAT.as_bytes())))
            .unwrap()
    };
    // Both the pooled keep-alive connection and a fresh client fail.
    assert!(safe(client.request(request())).await.is_err());
    assert!(safe(self::client().request(request())).await.is_err());
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let mock = MockProvider::start().await.unwrap();
    let addr = mock.addr();
    mock.push(Behavior::StallBody);
    let res = chat(&client(), &mock, CHAT).await.unwrap();
    safe(mock.shutdown()).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(safe(res.into_body().collect()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_multi_thread_runtime_with_concurrency() {
    let mock = MockProvider::builder().record(false).start().await.unwrap();
    mock.set_cycle(vec![Behavior::Reply, Behavior::status(503)]);
    let client = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let client = client.clone();
        let url = format!("{}/chat/completions", mock.base_url());
        tasks.spawn(async move {
            let body = if i % 2 == 0 { CHAT } else { CHAT_STREAM };
            let req = Request::post(url)
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap();
            let res = client.request(req).await.unwrap();
            let status = res.status().as_u16();
            res.into_body().collect().await.unwrap();
            status
        });
    }
    let mut ok = 0;
    let mut unavailable = 0;
    while let Some(status) = safe(tasks.join_next()).await {
        match status.unwrap() {
            200 => ok += 1,
            503 => unavailable += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, unavailable), (32, 32));
    assert_eq!(mock.request_count(), 64);
    safe(mock.shutdown()).await;
}

/// A request body sent as several frames (chunked transfer encoding).
struct Frames(std::collections::VecDeque<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[tokio::test]
async fn multi_frame_request_body_is_recorded_whole_and_streams() {
    let mock = MockProvider::start().await.unwrap();
    let client: Client<HttpConnector, Frames> = Client::builder(TokioExecutor::new()).build_http();
    let (a, b) = CHAT_STREAM.split_at(20);
    let body = Frames(
        [
            Bytes::from_static(a.as_bytes()),
            Bytes::from_static(b.as_bytes()),
        ]
        .into(),
    );
    let req = Request::post(format!("{}/chat/completions", mock.base_url()))
        .body(body)
        .unwrap();
    let res = safe(client.request(req)).await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert!(body_bytes(res).await.ends_with(b"data: [DONE]\n\n"));
    let recorded = mock.requests();
    assert_eq!(recorded[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(&recorded[0].body[..], CHAT_STREAM.as_bytes());
}
