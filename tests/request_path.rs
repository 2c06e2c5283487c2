//! The request middleware is one definition (`src/routes/`) that both paths go through: the
//! router, and the server's direct call of the stack's route.
//!
//! A test binary of its own: it reads the log through a thread-local subscriber, and tracing
//! caches whether a span is enabled per call site, process-wide, so a test running beside it
//! on another thread (with no subscriber) could switch the request span off under it.

mod common;

use bytes::Bytes;
use common::{CHAT, Captured, header, serve_exactly, serve_router_only, with_keys};
use http::{Request, StatusCode};
use http_body_util::Full;
use llm_tower_mock::{Behavior, MockProvider};

/// The request path is written once (`src/routes/`): the router routes the mount to the
/// stack's route, and the server calls that same route directly. What differed while the
/// direct path wrote it a second time is the same on both now: the response carries the
/// request's id even when the upstream sent an id of its own, and what a request logs (here a
/// refused key) is logged in the request's span, with the path as the client sent it.
#[tokio::test]
async fn the_request_middleware_is_the_same_on_both_paths() {
    let (logs, _guard) = Captured::install(tracing::Level::INFO);
    let mock = MockProvider::start().await.unwrap();
    let direct = serve_exactly(with_keys(&mock), None, std::future::pending()).await;
    let router = serve_router_only(with_keys(&mock)).await;
    for (path, gw) in [("direct", &direct), ("router", &router)] {
        mock.push(Behavior::Status {
            status: 200,
            retry_after: None,
            headers: vec![("x-request-id".into(), "upstream-id".into())],
            body: None,
        });
        let request = Request::post(gw.url("/v1/chat/completions"))
            .header("authorization", "Bearer gw-team-a-0123456789abcdef")
            .header("x-request-id", "client-chosen-id")
            .body(Full::new(Bytes::from(CHAT)))
            .unwrap();
        let response = gw.send(request).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&response, "x-request-id"),
            "client-chosen-id",
            "{path}"
        );

        let logged = logs.text().len();
        assert_eq!(gw.post(CHAT).await.status(), StatusCode::UNAUTHORIZED);
        let text = logs.text();
        let refusal = text[logged..]
            .lines()
            .find(|line| line.contains("request refused"))
            .unwrap_or_else(|| panic!("{path}: the refusal is not logged: {text}"));
        assert!(
            refusal.contains(r#"request{method=POST path="/v1/chat/completions"}"#),
            "{path}: {refusal}"
        );
    }
}
