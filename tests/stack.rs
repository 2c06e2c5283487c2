//! The composed stack built by hand and by `Upstream`: the order that works, the orders that
//! must fail loudly, and what a response tells about where it came from.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use llm_tower::{
    ApiKey, AttemptKind, Attempts, AuthLayer, BoxError, BufferedBody, CountBased, Deployment,
    Endpoint, ErrorKind, FallbackLayer, HealthRegistry, ModelFallbacks, ModelRoute, RespondLayer,
    RetryLayer, RetryPolicy, Selected, Upstream,
};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

fn endpoint(id: &str, priority: u32) -> Endpoint {
    Endpoint::builder(id, format!("http://{id}.invalid/v1"))
        .api_key(ApiKey::new(&format!("sk-{id}-secret")).unwrap())
        .priority(priority)
        .retry_policy(RetryPolicy::CountBased(CountBased { times: 1 }))
        .build()
        .unwrap()
}

/// An upstream stand-in: `primary` answers 503, everyone else 200. It records the
/// credential each request carried.
fn upstream(
    seen: Arc<Mutex<Vec<Option<String>>>>,
) -> impl tower::Service<
    Request<BufferedBody>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |request: Request<BufferedBody>| {
        let seen = seen.clone();
        async move {
            let key = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push(key);
            let primary = request.uri().host() == Some("primary.invalid");
            let status = if primary { 503 } else { 200 };
            let response = Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_model_chain_is_followed_and_each_attempt_logs_its_model() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    // `primary.invalid` answers 503; the others 200. Each body is recorded.
    let inner = service_fn(move |request: Request<BufferedBody>| {
        let recorded = recorded.clone();
        async move {
            recorded.lock().unwrap().push(request.body().to_bytes());
            let status = if request.uri().host() == Some("primary.invalid") {
                503
            } else {
                200
            };
            let response = Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    let primary = Endpoint::builder("primary", "http://primary.invalid/v1")
        .models(["gpt-4o"])
        .retry_policy(RetryPolicy::CountBased(CountBased { times: 1 }))
        .build()
        .unwrap();
    let backup = Endpoint::builder("backup", "http://backup.invalid/v1")
        .models([ModelRoute::alias("gpt-4o-mini", "mini-prod")])
        .build()
        .unwrap();
    let stack = Upstream::new(vec![primary, backup])
        .model_fallbacks(ModelFallbacks::new().chain("gpt-4o", ["gpt-4o-mini"]))
        .response_headers(true)
        .layer()
        .unwrap()
        .layer(inner);
    let body = r#"{"model": "gpt-4o", "n": 1}"#;
    let response = stack
        .oneshot(Request::new(Full::new(Bytes::from_static(body.as_bytes()))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-llm-tower-model"], "gpt-4o-mini");
    let deployment = Deployment::of(response.extensions()).unwrap();
    assert_eq!(
        (
            deployment.id.as_str(),
            deployment.model.as_deref(),
            deployment.fell_back_from.as_deref()
        ),
        ("backup", Some("gpt-4o-mini"), Some("gpt-4o"))
    );
    let log = Attempts::of(response.extensions()).unwrap().to_vec();
    let tried: Vec<_> = log
        .iter()
        .map(|a| {
            (
                a.endpoint.as_str(),
                a.model.as_deref(),
                a.kind,
                a.outcome.to_string(),
            )
        })
        .collect();
    assert_eq!(
        tried,
        [
            (
                "primary",
                Some("gpt-4o"),
                AttemptKind::First,
                "503".to_owned()
            ),
            (
                "primary",
                Some("gpt-4o"),
                AttemptKind::Retry,
                "503".to_owned()
            ),
            (
                "backup",
                Some("gpt-4o-mini"),
                AttemptKind::Fallback,
                "200".to_owned()
            ),
        ]
    );
    // Each attempt's body: the client's for the first model, the chain's name for the next.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], body.as_bytes());
    assert_eq!(seen[1], body.as_bytes());
    assert_eq!(seen[2], r#"{"model": "mini-prod", "n": 1}"#.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn the_answering_endpoint_is_on_the_response() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stack = Upstream::new(vec![endpoint("primary", 0), endpoint("backup", 1)])
        .layer()
        .unwrap()
        .layer(upstream(seen.clone()));
    let response = stack
        .oneshot(Request::new(Full::new(Bytes::from_static(b"{}"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let selected = Selected::of(response.extensions()).expect("Selected on the response");
    assert_eq!(selected.id().as_str(), "backup");
    // The primary was tried twice (one retry), then the backup: each with its own key.
    let seen = seen.lock().unwrap().clone();
    let expected = [
        "Bearer sk-primary-secret",
        "Bearer sk-primary-secret",
        "Bearer sk-backup-secret",
    ];
    assert_eq!(seen, expected.map(|k| Some(k.to_owned())));
}

#[tokio::test(start_paused = true)]
async fn auth_outside_the_balancer_fails_loudly_and_sends_nothing() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let registry = HealthRegistry::new();
    // Wrong order: the auth layer runs before any endpoint is selected.
    let wrong = ServiceBuilder::new()
        .layer(RespondLayer::new())
        .layer(AuthLayer::new())
        .layer(
            FallbackLayer::builder([endpoint("primary", 0)])
                .build(registry)
                .unwrap(),
        )
        .layer(RetryLayer::new())
        .service(upstream(seen.clone()));
    let response = wrong
        .oneshot(Request::new(Full::new(Bytes::from_static(b"{}"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let json: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(json["error"]["code"], "internal_error");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AuthLayer"),
        "{json}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "a request went out without a key"
    );

    // The right order, for contrast, sends the key.
    let right = ServiceBuilder::new()
        .layer(RespondLayer::new())
        .layer(
            FallbackLayer::builder([endpoint("backup", 0)])
                .build(HealthRegistry::new())
                .unwrap(),
        )
        .layer(RetryLayer::new())
        .layer(AuthLayer::new())
        .service(upstream(seen.clone()));
    let response = right
        .oneshot(Request::new(Full::new(Bytes::from_static(b"{}"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [Some("Bearer sk-backup-secret".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn an_unknown_inner_error_is_returned_without_retry_or_fallback() {
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = {
        let calls = calls.clone();
        service_fn(move |_: Request<BufferedBody>| {
            calls.fetch_add(1, Ordering::SeqCst);
            // Worded like a transport error: only types count.
            async { Err::<Response<Full<Bytes>>, BoxError>("connection reset by peer".into()) }
        })
    };
    let registry = HealthRegistry::new();
    let stack = Upstream::new(vec![endpoint("primary", 0), endpoint("backup", 1)])
        .registry(registry.clone())
        .layer()
        .unwrap()
        .layer(failing);
    let response = stack
        .oneshot(Request::new(Full::new(Bytes::from_static(b"{}"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "retried or fell back");
    assert_eq!(
        ErrorKind::Unrecognized.code(),
        "unrecognized_upstream_error"
    );
    // Nobody can tell it was the endpoint's fault: its health is untouched.
    assert_eq!(
        registry.get("primary").unwrap().status,
        llm_tower::Status::Healthy
    );
}

#[tokio::test(start_paused = true)]
async fn running_out_of_file_descriptors_blames_no_endpoint() {
    // What the client returns when `socket(2)` fails with EMFILE ("too many open files").
    const EMFILE: i32 = 24;
    let calls = Arc::new(AtomicUsize::new(0));
    let exhausted = {
        let calls = calls.clone();
        service_fn(move |_: Request<BufferedBody>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<Response<Full<Bytes>>, _>(std::io::Error::from_raw_os_error(EMFILE)) }
        })
    };
    let registry = HealthRegistry::new();
    let stack = Upstream::new(vec![endpoint("primary", 0), endpoint("backup", 1)])
        .registry(registry.clone())
        .layer()
        .unwrap()
        .layer(exhausted);
    let response = stack
        .oneshot(Request::new(Full::new(Bytes::from_static(b"{}"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no retry, no fallback storm"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(json["error"]["code"], "gateway_resource_exhausted");
    for id in ["primary", "backup"] {
        let health = registry.get(id).unwrap();
        assert_eq!(health.status, llm_tower::Status::Healthy, "{id}");
        assert_eq!(health.consecutive_failures, 0, "{id}");
    }
}

#[tokio::test(start_paused = true)]
async fn health_checks_go_through_auth_and_are_never_retried() {
    let checks = Arc::new(Mutex::new(Vec::new()));
    let recorded = checks.clone();
    let inner = service_fn(move |request: Request<BufferedBody>| {
        let recorded = recorded.clone();
        async move {
            let key = request.headers().get(http::header::AUTHORIZATION).cloned();
            recorded.lock().unwrap().push((
                request.method().clone(),
                request.uri().to_string(),
                key,
            ));
            let response = Response::builder()
                .status(503)
                .body(Full::new(Bytes::new()))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    let check = llm_tower::HealthCheck {
        interval: Some(std::time::Duration::from_secs(1)),
        ..llm_tower::HealthCheck::default()
    };
    let primary = Endpoint::builder("primary", "http://primary.invalid/v1")
        .api_key(ApiKey::new("sk-primary-secret").unwrap())
        .retry_policy(RetryPolicy::CountBased(CountBased { times: 3 }))
        .health_check(check)
        .build()
        .unwrap();
    let upstream = Upstream::new(vec![primary, endpoint("backup", 1)]);
    let health = upstream.health().clone();
    let layer = upstream.layer().unwrap();
    assert!(layer.start_health_checks(inner.clone()).unwrap());
    assert!(
        !layer.start_health_checks(inner.clone()).unwrap(),
        "once per stack"
    );
    let _service = layer.layer(inner);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let checks = checks.lock().unwrap().clone();
    // One check (a retry layer would have made four tries of a 503), with the key set by
    // the auth layer, as sensitive as a request's.
    assert_eq!(checks.len(), 1, "{checks:?}");
    let (method, uri, key) = &checks[0];
    assert_eq!(
        (method, uri.as_str()),
        (&http::Method::GET, "http://primary.invalid/v1/models")
    );
    let key = key.as_ref().expect("the endpoint's key");
    assert_eq!(key, "Bearer sk-primary-secret");
    assert!(key.is_sensitive());
    let primary = health.get("primary").unwrap();
    assert_eq!(primary.status, llm_tower::Status::Ejected);
    assert_eq!(primary.last_check.unwrap().outcome, "503");
}

#[test]
fn a_health_check_needs_a_key_of_its_own_when_client_keys_are_forwarded() {
    let keyless = Endpoint::builder("byok", "http://127.0.0.1:1/v1")
        .health_check(llm_tower::HealthCheck::default())
        .build()
        .unwrap();
    let err = Upstream::new(vec![keyless])
        .forward_client_credentials(true)
        .layer()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("endpoint `byok`: health_check: this endpoint uses the clients' own keys"),
        "{err}"
    );
}

#[test]
fn health_checks_outside_a_runtime_are_a_clear_error() {
    let endpoint = Endpoint::builder("checked", "http://127.0.0.1:1/v1")
        .health_check(llm_tower::HealthCheck::default())
        .build()
        .unwrap();
    let expected = "endpoint `checked`: health_check: health checks run as a Tokio task: start \
                    them inside a Tokio runtime";
    let upstream = Upstream::new(vec![endpoint]);
    assert_eq!(upstream.build().unwrap_err().to_string(), expected);
    // Started by hand over a stack of one's own: the same error, not a silent `false`.
    let layer = upstream.layer().unwrap();
    let inner = tower::service_fn(|_: Request<BufferedBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    assert_eq!(
        layer.start_health_checks(inner).unwrap_err().to_string(),
        expected
    );
}

/// tower-http's layers go over the stack as over any service: `TimeoutLayer` answers for it
/// with its own status (the stack's body has a default), the request-id layers pass.
#[tokio::test(start_paused = true)]
async fn tower_http_layers_fit_over_the_stack() {
    use std::time::Duration;
    use tower_http::ServiceBuilderExt;
    use tower_http::request_id::MakeRequestUuid;
    use tower_http::timeout::TimeoutLayer;

    let mock = llm_tower_mock::MockProvider::start().await.unwrap();
    let endpoint = Endpoint::builder("mock", mock.base_url()).build().unwrap();
    let stack = ServiceBuilder::new()
        .set_x_request_id(MakeRequestUuid)
        .propagate_x_request_id()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(5),
        ))
        .service(Upstream::new(vec![endpoint]).build().unwrap());
    let chat = || {
        Request::post("/chat/completions")
            .body(Full::new(Bytes::from_static(
                br#"{"model":"mock-model","messages":[]}"#,
            )))
            .unwrap()
    };
    let response = stack.clone().oneshot(chat()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    assert!(
        !response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    // An upstream that never answers: the timeout answers for the stack.
    mock.push(llm_tower_mock::Behavior::StallHead);
    let response = stack.oneshot(chat()).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
}
