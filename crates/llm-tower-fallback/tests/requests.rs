//! What reaches the upstream: the target URI, the headers and the (capped, replayed) body.

mod common;

use http::header::HOST;
use http::{Request, StatusCode};
use llm_tower_core::ErrorKind;
use llm_tower_mock::scripted::Step;

use common::{Stack, ep, error_of};

#[tokio::test(start_paused = true)]
async fn absolute_form_uri_cannot_redirect_and_host_is_dropped() {
    let stack = Stack::new(vec![ep("a")]);
    for target in [
        "http://evil.example/chat/completions?x=1",
        "https://evil.example:8443/chat/completions?x=1",
    ] {
        let request = Request::post(target)
            .header(HOST, "evil.example")
            .body(String::new())
            .unwrap();
        stack.send_request(request).await.unwrap();
    }
    let calls = stack.upstream.calls();
    assert_eq!(calls.len(), 2);
    for call in calls {
        assert_eq!(call.uri, "https://a.example/v1/chat/completions?x=1");
        assert_eq!(call.headers.get(HOST), None);
    }
}

#[tokio::test(start_paused = true)]
async fn body_cap_and_identical_replay() {
    let stack = Stack::with(vec![ep("a"), ep("b")], |b| b.max_body_bytes(10));
    stack.upstream.script("a", [Step::Status(503)]);
    let at_cap = Request::post("/x")
        .body(String::from("0123456789"))
        .unwrap();
    stack.send_request(at_cap).await.unwrap();
    let calls = stack.upstream.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.body == "0123456789"));
    stack.upstream.clear();
    let over = Request::post("/x")
        .body(String::from("0123456789!"))
        .unwrap();
    let err = stack.send_request(over).await.unwrap_err();
    assert_eq!(error_of(&err).kind(), ErrorKind::BodyTooLarge);
    assert_eq!(error_of(&err).status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(stack.upstream.calls().is_empty(), "nothing sent upstream");
}
