//! `AuthLayer` in front of a hyper client, against the mock provider.
//!
//! The client sends its own `authorization` header; the upstream (the mock) receives the
//! endpoint's key instead, and llm-tower's `user-agent`.
//!
//! ```text
//! cargo run --example auth_layer
//! ```

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_tower_auth::AuthLayer;
use llm_tower_core::{ApiKey, BoxError, Endpoint};
use llm_tower_mock::MockProvider;
use tower::{ServiceBuilder, ServiceExt};

const UPSTREAM_KEY: &str = "sk-upstream-example-key";
const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let mock = MockProvider::start().await?;
    println!("mock provider listening at {}", mock.base_url());

    let endpoint = Endpoint::builder("openai-mock", mock.base_url())
        .api_key(ApiKey::new(UPSTREAM_KEY)?)
        .build()?;
    // The layer does not route: the request must already carry the absolute upstream URL.
    let uri = endpoint
        .base_url()
        .join(&Uri::from_static("/chat/completions"))?;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(AuthLayer::for_endpoint(endpoint))
        .service(client);

    let client_token = "Bearer client-own-token";
    let request = Request::post(&uri)
        .header("authorization", client_token)
        .header("content-type", "application/json")
        .header("user-agent", "example-client/1.0")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))?;
    println!("POST {uri}");
    println!("  client sent  authorization: {}", mask(client_token));
    println!("  client sent  user-agent:    example-client/1.0");

    let response = service.oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("response: {status} ({} bytes)", body.len());

    let recorded = mock.requests();
    let seen = recorded.first().ok_or("the mock recorded no request")?;
    let authorization = seen.header("authorization").unwrap_or("<none>");
    let user_agent = seen.header("user-agent").unwrap_or("<none>");
    println!("  upstream got authorization: {}", mask(authorization));
    println!("  upstream got user-agent:    {user_agent}");

    assert_eq!(authorization, format!("Bearer {UPSTREAM_KEY}"));
    assert_eq!(user_agent, llm_tower_core::USER_AGENT);
    println!("the client's credential never reached the upstream");

    mock.shutdown().await;
    Ok(())
}

/// `Bearer sk-upstream…` → `Bearer sk-***`: the scheme and the first 3 characters of the
/// credential, never the secret itself.
fn mask(value: &str) -> String {
    let (scheme, secret) = value
        .split_once(' ')
        .map_or(("", value), |(scheme, secret)| (scheme, secret));
    let shown: String = secret.chars().take(3).collect();
    if scheme.is_empty() {
        format!("{shown}***")
    } else {
        format!("{scheme} {shown}***")
    }
}
