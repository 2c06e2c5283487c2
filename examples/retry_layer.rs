//! `RetryLayer` + `AuthLayer` in front of a hyper client, against the mock provider.
//!
//! The mock answers `503`, then `429` with `retry-after-ms: 200`, then `200`. One request
//! through the stack gets the `200`; the attempt log shows all three tries.
//!
//! ```text
//! cargo run --example retry_layer
//! ```

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_tower_auth::AuthLayer;
use llm_tower_core::{ApiKey, Attempts, BoxError, BufferedBody, Endpoint, Selected};
use llm_tower_mock::{Behavior, MockProvider};
use llm_tower_retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let mock = MockProvider::start().await?;
    mock.script([
        Behavior::status(503),
        Behavior::Status {
            status: 429,
            retry_after: None,
            headers: vec![("retry-after-ms".into(), "200".into())],
            body: None,
        },
        Behavior::Reply,
    ]);
    println!(
        "mock provider at {} scripted: 503, 429 + retry-after-ms: 200, 200",
        mock.base_url()
    );

    // Default policy: ExponentialBackoff, 2 retries, 100 ms initial interval.
    let endpoint = Arc::new(
        Endpoint::builder("openai-mock", mock.base_url())
            .api_key(ApiKey::new("sk-upstream-example-key")?)
            .build()?,
    );
    println!("endpoint retry policy: {:?}", endpoint.retry_policy());

    let client = Client::builder(TokioExecutor::new()).build_http::<BufferedBody>();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new())
        .layer(AuthLayer::new())
        .service(client);

    // What the balancer does for you: buffer the body, set the absolute upstream URL,
    // name the endpoint and start the attempt log.
    let uri = endpoint
        .base_url()
        .join(&Uri::from_static("/chat/completions"))?;
    let mut request = Request::post(&uri)
        .header("content-type", "application/json")
        .body(BufferedBody::from(Bytes::from_static(BODY.as_bytes())))?;
    let attempts = Attempts::new();
    request.extensions_mut().insert(Selected(endpoint));
    request.extensions_mut().insert(attempts.clone());

    println!("POST {uri}");
    let started = Instant::now();
    let response = service.oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "final status: {status} ({} bytes) after {:?}",
        body.len(),
        started.elapsed()
    );
    println!("attempts ({}): {attempts}", attempts.len());
    println!("upstream saw {} requests", mock.request_count());

    assert!(status.is_success());
    assert_eq!(attempts.len(), 3);
    mock.shutdown().await;
    Ok(())
}
