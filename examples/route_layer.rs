//! An existing axum app with routes of its own, where one route gets the llm-tower stack with
//! `route_layer`. The route's handler is the innermost service: it receives the request with
//! the chosen endpoint (`Selected`), the attempt log (`Attempts`), the endpoint's absolute URI
//! and credential already in place, and performs the upstream call itself.
//!
//! ```text
//! cargo run --example route_layer
//! ```
//!
//! It starts two mock providers (the first failing three times), serves the app on a loopback port,
//! sends a few requests to it and exits.

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use llm_tower::{Attempts, Config, EndpointConfig, HttpClient, Selected, Upstream};
use llm_tower_mock::{Behavior, MockProvider};

/// The route's handler: called once per upstream attempt by the stack around it, with the
/// request ready to send (absolute URI, the endpoint's credential). `HttpClient::forward`
/// sends it whatever its body type; an error answers with its status (a 502 for a refused
/// connection), which the stack retries and falls back on.
async fn chat(
    State(client): State<HttpClient>,
    Extension(selected): Extension<Selected>,
    Extension(attempts): Extension<Attempts>,
    request: Request,
) -> Response {
    println!(
        "  handler: attempt #{} goes to `{}` at {}",
        attempts.len() + 1,
        selected.id(),
        request.uri()
    );
    match client.forward(request).await {
        Ok(response) => response.map(Body::new),
        Err(err) => err.to_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flaky = MockProvider::start().await?;
    let steady = MockProvider::start().await?;
    // Three 503s: the first try and both retries fail, so the request falls back.
    flaky.script([
        Behavior::status(503),
        Behavior::status(503),
        Behavior::status(503),
    ]);

    // The route is not nested, so the request path (`/v1/chat/completions`) is appended to
    // the base URL as it is: the base URLs stop at the authority.
    let config = Config::with_endpoints(vec![
        EndpointConfig::new("flaky", format!("http://{}", flaky.addr())),
        EndpointConfig {
            priority: 1,
            ..EndpointConfig::new("steady", format!("http://{}", steady.addr()))
        },
    ]);
    let upstream = Upstream::from_config(&config)?.response_headers(true);
    let client = HttpClient::new(&config.client)?;

    let app = Router::new()
        .route(
            "/",
            get(|| async { "the app's own route, untouched by llm-tower\n" }),
        )
        .route("/v1/chat/completions", post(chat))
        .route_layer(upstream.layer()?)
        .with_state(client);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let home = http.get(format!("http://{addr}/").parse()?).await?;
    println!("GET / -> {}", home.status());
    for i in 1..=2 {
        println!("POST /v1/chat/completions #{i}");
        let request = http::Request::post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"model":"m","messages":[]}"#,
            )))?;
        let response = http.request(request).await?;
        println!(
            "  -> {} from `{}` after {} attempt(s)",
            response.status(),
            response.headers()["x-llm-tower-endpoint"].to_str()?,
            response.headers()["x-llm-tower-attempts"].to_str()?,
        );
    }
    Ok(())
}
