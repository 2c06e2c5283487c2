//! The llm-tower stack in a plain hyper server, composed with `ServiceBuilder`, no axum.
//!
//! ```text
//! cargo run --example tower_proxy
//! ```
//!
//! It starts a mock provider, serves the proxy on a loopback port with hyper's HTTP/1
//! connection builder, sends one request through it and exits.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use llm_tower::{Config, EndpointConfig, HttpClient, Upstream};
use llm_tower_mock::MockProvider;
use tower::ServiceBuilder;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::ServiceBuilderExt;
use tower_http::request_id::MakeRequestUuid;
use tower_http::timeout::TimeoutLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mock = MockProvider::start().await?;
    let config = Config::with_endpoints(vec![EndpointConfig::new("mock", mock.base_url())]);
    let upstream = Upstream::from_config(&config)?.response_headers(true);

    // The stack is a Layer: put it in a ServiceBuilder with whatever else you use, tower's
    // and tower-http's layers included (the stack's body has a default, which tower-http's
    // timeout answers with).
    let service = ServiceBuilder::new()
        .set_x_request_id(MakeRequestUuid)
        .propagate_x_request_id()
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(600),
        ))
        .layer(ConcurrencyLimitLayer::new(256))
        .layer(upstream.layer()?)
        .service(HttpClient::new(&config.client)?);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    println!("proxy on http://{addr} -> {}", mock.base_url());

    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("http://{addr}/chat/completions"))
        .header("authorization", "Bearer the-clients-token")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"m","messages":[]}"#,
        )))?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request)).await??;
    println!("status: {}", response.status());
    println!(
        "served by: {:?}, request id {:?}",
        response.headers().get("x-llm-tower-endpoint"),
        response.headers().get("x-request-id")
    );
    let body = response.into_body().collect().await?.to_bytes();
    println!("body: {}", String::from_utf8_lossy(&body));
    let seen = &mock.requests()[0];
    println!(
        "upstream saw {} with user-agent {:?} (the client's token was removed: {})",
        seen.uri,
        seen.header("user-agent"),
        seen.header("authorization").is_none()
    );
    Ok(())
}
