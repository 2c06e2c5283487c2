//! The library used wrongly, over loopback with the real HTTP client: a stack without its
//! auth layer, a retry layer outside the balancer, and (in a build without TLS, run by
//! `.ci/run` as `cargo test -p llm-tower --no-default-features --test misuse`) an `https://`
//! endpoint. Each either works in full or fails loudly with nothing sent; none sends a key
//! it should not.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use llm_tower::{
    ApiKey, Attempts, AuthLayer, ClientSettings, CountBased, Endpoint, FallbackLayer,
    HealthRegistry, HttpClient, RespondLayer, RetryLayer, RetryPolicy, SingleTry,
};
use llm_tower_mock::{Behavior, MockProvider};
use tower::{ServiceBuilder, ServiceExt};

const CHAT: &str = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#;

fn endpoint(id: &str, base_url: String, priority: u32) -> Endpoint {
    Endpoint::builder(id, base_url)
        .api_key(ApiKey::new(&format!("sk-upstream-{id}")).unwrap())
        .priority(priority)
        .retry_policy(RetryPolicy::CountBased(CountBased { times: 2 }))
        .build()
        .unwrap()
}

fn chat(authorization: &str) -> Request<Full<Bytes>> {
    Request::post("/chat/completions")
        .header("authorization", authorization)
        .body(Full::new(Bytes::from_static(CHAT.as_bytes())))
        .unwrap()
}

fn client() -> HttpClient {
    HttpClient::new(&ClientSettings::default()).unwrap()
}

#[tokio::test]
async fn a_stack_without_its_auth_layer_sends_nothing() {
    let mock = MockProvider::start().await.unwrap();
    let stack = ServiceBuilder::new()
        .layer(RespondLayer::new())
        .layer(
            FallbackLayer::builder([endpoint("only", mock.base_url(), 0)])
                .build(HealthRegistry::new())
                .unwrap(),
        )
        .layer(RetryLayer::new())
        // No AuthLayer here.
        .service(client());
    let response = stack
        .oneshot(chat("Bearer client-own-token"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without passing an AuthLayer"),
        "{json}"
    );
    assert_eq!(mock.request_count(), 0, "the client's own token went out");
}

#[tokio::test]
async fn a_retry_layer_outside_the_balancer_logs_every_attempt() {
    let (a, b) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    for mock in [&a, &b] {
        mock.set_default(Behavior::status(503));
    }
    let stack = ServiceBuilder::new()
        .layer(RespondLayer::new())
        // The wrong order: each try of the retry layer is a whole run of the balancer.
        .layer(RetryLayer::new().default_policy(RetryPolicy::CountBased(CountBased { times: 2 })))
        .layer(
            FallbackLayer::builder([
                endpoint("a", a.base_url(), 0),
                endpoint("b", b.base_url(), 1),
            ])
            .build(HealthRegistry::new())
            .unwrap(),
        )
        .layer(AuthLayer::new())
        .service(client());
    let response = stack.oneshot(chat("Bearer client")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let log = Attempts::of(response.extensions()).unwrap().clone();
    let sent = a.request_count() + b.request_count();
    assert!(sent > 2, "the retry layer tried again: {sent}");
    assert_eq!(log.len(), sent, "{log}");
}

/// An auth layer outside the balancer, forwarding the client's own credentials to endpoints
/// without keys of their own: its mark travels with every attempt, so the transport sends
/// them, as it always did.
#[tokio::test]
async fn an_auth_layer_outside_the_balancer_is_heard_by_the_transport() {
    let mock = MockProvider::start().await.unwrap();
    let keyless = Endpoint::builder("keyless", mock.base_url())
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(RespondLayer::new())
        .layer(AuthLayer::new().forward_client_credentials(true))
        .layer(
            FallbackLayer::builder([keyless])
                .build(HealthRegistry::new())
                .unwrap(),
        )
        .layer(RetryLayer::new())
        .service(client());
    let response = stack.oneshot(chat("Bearer client-own")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.request_count(), 1);
    assert_eq!(
        mock.requests()[0].header("authorization"),
        Some("Bearer client-own")
    );
}

/// A request marked [`SingleTry`] before the balancer (by a layer of one's own) is tried once
/// on each deployment: the mark travels with every attempt.
#[tokio::test]
async fn a_single_try_said_before_the_balancer_holds_for_its_attempts() {
    let mock = MockProvider::start().await.unwrap();
    mock.set_default(Behavior::status(503));
    let stack = ServiceBuilder::new()
        .layer(RespondLayer::new())
        .map_request(|mut request: Request<Full<Bytes>>| {
            request.extensions_mut().insert(SingleTry);
            request
        })
        .layer(
            FallbackLayer::builder([endpoint("only", mock.base_url(), 0)])
                .build(HealthRegistry::new())
                .unwrap(),
        )
        .layer(RetryLayer::new())
        .layer(AuthLayer::new())
        .service(client());
    let response = stack.oneshot(chat("Bearer client")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(mock.request_count(), 1, "retried despite SingleTry");
}

/// A hyper-util client of one's own below the stack: its errors are classified like
/// llm-tower's own client's, even those with no I/O error as their cause (an `https://`
/// endpoint its connector cannot reach), so the request falls back.
#[tokio::test]
async fn a_hyper_util_client_of_ones_own_is_classified() {
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}/v1", listener.local_addr().unwrap())
    };
    let backup = MockProvider::start().await.unwrap();
    let raw = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<llm_tower::BufferedBody>();
    let stack = ServiceBuilder::new()
        .layer(RespondLayer::new())
        .layer(
            FallbackLayer::builder([
                endpoint("down", unreachable, 0),
                endpoint("backup", backup.base_url(), 1),
            ])
            .build(HealthRegistry::new())
            .unwrap(),
        )
        .layer(RetryLayer::new())
        .layer(AuthLayer::new())
        .service(raw);
    let response = stack.oneshot(chat("Bearer client")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let log = Attempts::of(response.extensions()).unwrap().to_string();
    assert!(
        log.starts_with("down(first)=upstream_connect_failed"),
        "{log}"
    );
    assert_eq!(backup.request_count(), 1);
}

/// In a build without TLS, no path sends to an `https://` endpoint: a plain listener on its
/// port sees no connection.
#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn without_tls_no_request_leaves_for_an_https_endpoint() {
    use llm_tower::Upstream;
    use tower::Layer;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let https = format!("https://{}/v1", listener.local_addr().unwrap());
    let endpoints = vec![endpoint("tls", https, 0)];

    let err = Upstream::new(endpoints.clone())
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("rustls-webpki-roots"), "{err}");
    let err = Upstream::new(endpoints.clone())
        .layer()
        .unwrap_err()
        .to_string();
    assert!(err.contains("inner_speaks_tls"), "{err}");

    // Told (wrongly) that the inner service speaks TLS, over llm-tower's own client: the
    // client refuses at the request, naming the feature.
    let layer = Upstream::new(endpoints)
        .inner_speaks_tls(true)
        .layer()
        .unwrap();
    let response = layer
        .layer(client())
        .oneshot(chat("Bearer client"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("rustls-webpki-roots"),
        "{body:?}"
    );
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "a connection reached the https endpoint"
    );
}
