//! What reaches the upstream: the target URI, the headers and the (capped, replayed) body.

mod common;

use std::sync::{Arc, Mutex};

use http::header::HOST;
use http::{Request, Response, StatusCode};
use llm_tower_core::{
    AttemptContext, Attempts, BoxError, BufferedBody, ErrorKind, Selected, Usage, UsageRecord,
};
use llm_tower_fallback::{FallbackLayer, HealthRegistry};
use llm_tower_mock::scripted::Step;
use tower::{Layer, ServiceExt};

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

/// Every attempt carries the request's own extensions, and the usage record a layer outside
/// put on it: one record for all attempts, in each attempt's context rather than beside it.
#[tokio::test(start_paused = true)]
async fn attempts_carry_the_extensions_and_one_usage_record() {
    #[derive(Clone, Debug, PartialEq)]
    struct Mine(u32);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = FallbackLayer::builder(vec![ep("a"), ep("b")])
        .build(HealthRegistry::new())
        .unwrap();
    let service = layer.layer(tower::service_fn({
        let seen = seen.clone();
        move |request: Request<BufferedBody>| {
            let extensions = request.extensions();
            let endpoint = Selected::of(extensions).unwrap().id().to_string();
            if let Some(record) = UsageRecord::of(extensions) {
                record.add(Usage {
                    input: 1,
                    ..Usage::default()
                });
            }
            seen.lock().unwrap().push((
                endpoint.clone(),
                UsageRecord::of(extensions).is_some(),
                extensions.get::<UsageRecord>().is_some(),
                extensions.get::<Mine>().cloned(),
            ));
            let status = if endpoint == "a" { 503 } else { 200 };
            let response = Response::builder()
                .status(status)
                .body(BufferedBody::default())
                .unwrap();
            async move { Ok::<_, BoxError>(response) }
        }
    }));

    let record = UsageRecord::default();
    let mut request = Request::post("/chat/completions")
        .body(String::new())
        .unwrap();
    request.extensions_mut().insert(record.clone());
    request.extensions_mut().insert(Mine(7));
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("a".to_owned(), true, false, Some(Mine(7))),
            ("b".to_owned(), true, false, Some(Mine(7))),
        ]
    );
    assert_eq!(
        record.usage().unwrap().input,
        2,
        "both attempts add to one record"
    );

    // A balancer nested in another's attempt, under a layer of its own that wants usage:
    // the record put beside the outer attempt's context is the one its attempts fill.
    let (outer, inner) = (UsageRecord::default(), UsageRecord::default());
    let mut context = AttemptContext::new(Selected(Arc::new(ep("outer"))), Attempts::new());
    context.usage = Some(outer.clone());
    let mut request = Request::post("/chat/completions")
        .body(String::new())
        .unwrap();
    request.extensions_mut().insert(context);
    request.extensions_mut().insert(inner.clone());
    service.clone().oneshot(request).await.unwrap();
    assert!(inner.usage().is_some_and(|usage| usage.input > 0));
    assert_eq!(
        outer.usage(),
        None,
        "the outer attempt's record is its own usage layer's"
    );

    // Without a record (usage off), none appears; with nothing else, nothing else either.
    seen.lock().unwrap().clear();
    let request = Request::post("/chat/completions")
        .body(String::new())
        .unwrap();
    service.oneshot(request).await.unwrap();
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|(_, record, _, mine)| !record && mine.is_none())
    );
}
