//! One request to the mock: read and record it, route it, and answer with the next plan.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{EVENT_STREAM, JSON, NO_CACHE, REQUEST_INDEX, RecordedRequest, Shared};
use crate::behavior::Plan;
use crate::body::{Abort, MockBody, SseEnd, shutdown_wait};
use crate::lock;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Models,
    Unknown,
}

fn route(method: &Method, path: &str) -> Route {
    if *method == Method::POST && path.ends_with("/chat/completions") {
        Route::Chat
    } else if *method == Method::GET && path.ends_with("/models") {
        Route::Models
    } else {
        Route::Unknown
    }
}

/// Whether a JSON body has `"stream": true` at the top level (a cheap byte scan; a key
/// `"stream"` can't appear unescaped inside a JSON string).
fn wants_stream(body: &[u8]) -> bool {
    is_true(body, b"\"stream\"")
}

/// Whether a streaming request asks for its usage (`stream_options.include_usage`).
fn wants_usage(body: &[u8]) -> bool {
    is_true(body, b"\"include_usage\"")
}

/// Whether the first key `key` (quoted) of `body` is `true`.
fn is_true(body: &[u8], key: &[u8]) -> bool {
    let mut rest = body;
    while let Some(pos) = rest.windows(key.len()).position(|w| w == key) {
        rest = &rest[pos + key.len()..];
        let after = skip_ws(rest);
        if let Some(value) = after.strip_prefix(b":") {
            return skip_ws(value).starts_with(b"true");
        }
    }
    false
}

fn skip_ws(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn response(
    status: StatusCode,
    content_type: HeaderValue,
    body: MockBody,
    index: usize,
) -> Response<MockBody> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    if content_type_is_sse(headers) {
        headers.insert(CACHE_CONTROL, NO_CACHE);
    }
    headers.insert(REQUEST_INDEX, HeaderValue::from(index));
    res
}

fn content_type_is_sse(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE) == Some(&EVENT_STREAM)
}

/// Reads a whole request body. A body that arrives in one frame (the common case) is kept
/// as is, without copying.
async fn read_body(mut body: Incoming) -> Result<Bytes, hyper::Error> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if let Some(buf) = joined.as_mut() {
            buf.extend_from_slice(&data);
        } else if let Some(head) = first.take() {
            let mut buf = BytesMut::with_capacity(head.len() + data.len());
            buf.extend_from_slice(&head);
            buf.extend_from_slice(&data);
            joined = Some(buf);
        } else {
            first = Some(data);
        }
    }
    Ok(joined.map_or_else(|| first.unwrap_or_default(), BytesMut::freeze))
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Abort> {
    let index = shared.count.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = read_body(body).await.map_err(|_| Abort::BadRequest)?;
    let route = route(&parts.method, parts.uri.path());
    let stream = route == Route::Chat && wants_stream(&body);
    let usage = stream && wants_usage(&body);
    if shared.record {
        lock(&shared.recorded).push(RecordedRequest {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body,
        });
    }
    let assets = &shared.assets;
    match route {
        Route::Models => Ok(response(
            StatusCode::OK,
            JSON,
            MockBody::full(assets.models.clone()),
            index,
        )),
        Route::Unknown => Ok(response(
            StatusCode::NOT_FOUND,
            JSON,
            MockBody::full(assets.not_found.clone()),
            index,
        )),
        Route::Chat => {
            let plan = lock(&shared.script).next();
            serve_plan(&shared, &plan, stream, usage, index).await
        }
    }
}

async fn serve_plan(
    shared: &Shared,
    mut plan: &Plan,
    stream: bool,
    usage: bool,
    index: usize,
) -> Result<Response<MockBody>, Abort> {
    let assets = &shared.assets;
    let mut shutdown = None;
    while let Plan::Delay(delay, inner) = plan {
        let wait = shutdown.get_or_insert_with(|| shutdown_wait(&shared.shutdown));
        tokio::select! {
            () = tokio::time::sleep(*delay) => {}
            () = wait.as_mut() => return Err(Abort::Shutdown),
        }
        plan = inner;
    }
    let sse = |total: usize, interval: Duration, end: SseEnd| {
        let wait = (!interval.is_zero()).then(|| shutdown_wait(&shared.shutdown));
        let body = MockBody::sse(Arc::clone(assets), total, interval, end, usage, wait);
        response(StatusCode::OK, EVENT_STREAM, body, index)
    };
    match plan {
        Plan::Reply if stream => Ok(response(
            StatusCode::OK,
            EVENT_STREAM,
            MockBody::full(if usage {
                assets.sse_default_usage.clone()
            } else {
                assets.sse_default.clone()
            }),
            index,
        )),
        Plan::Reply => Ok(response(
            StatusCode::OK,
            JSON,
            MockBody::full(assets.completion.clone()),
            index,
        )),
        Plan::Stream { chunks, interval } => Ok(sse(*chunks, *interval, SseEnd::Done)),
        Plan::ResetAfterChunks(n) => Ok(sse(*n, Duration::ZERO, SseEnd::Reset)),
        Plan::Status {
            status,
            headers,
            body,
        } => {
            let mut res = Response::new(MockBody::full(body.clone()));
            *res.status_mut() = *status;
            *res.headers_mut() = headers.clone();
            res.headers_mut()
                .insert(REQUEST_INDEX, HeaderValue::from(index));
            Ok(res)
        }
        Plan::CloseBeforeHead => Err(Abort::CloseBeforeHead),
        Plan::StallBody => {
            let wait = shutdown.unwrap_or_else(|| shutdown_wait(&shared.shutdown));
            let content_type = if stream { EVENT_STREAM } else { JSON };
            Ok(response(
                StatusCode::OK,
                content_type,
                MockBody::stall(wait),
                index,
            ))
        }
        Plan::StallHead => {
            let wait = shutdown.unwrap_or_else(|| shutdown_wait(&shared.shutdown));
            wait.await;
            Err(Abort::Shutdown)
        }
        Plan::Delay(..) => unreachable!("delays are unwrapped above"),
    }
}

#[cfg(test)]
mod tests {
    use super::wants_stream;

    #[test]
    fn detects_stream_flag() {
        assert!(wants_stream(br#"{"model":"m","stream":true}"#));
        assert!(wants_stream(b"{\"stream\" :\n true}"));
        assert!(!wants_stream(br#"{"stream":false}"#));
        assert!(!wants_stream(br#"{"stream_options":{"x":true}}"#));
        assert!(!wants_stream(br#"{"messages":[{"content":"\"stream\""}]}"#));
        assert!(wants_stream(br#"{"x":"stream","stream": true}"#));
        assert!(!wants_stream(b""));
    }
}
