//! Behaviour of the auth rewriter as an upstream would see it.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderMap, Request, Response};
use llm_tower_auth::AuthLayer;
use llm_tower_core::{ApiKey, Endpoint, Provider, Selected};
use tower::{Layer, ServiceExt, service_fn};

fn endpoint(provider: Provider, key: Option<&str>) -> Arc<Endpoint> {
    let mut builder = Endpoint::builder("ep", "https://upstream.example/v1").provider(provider);
    if let Some(key) = key {
        builder = builder.api_key(ApiKey::new(key).unwrap());
    }
    Arc::new(builder.build().unwrap())
}

/// Sends `request` through `layer` and returns what the inner service saw.
async fn seen(layer: AuthLayer, request: Request<()>) -> Request<()> {
    let inner = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(req) });
    layer
        .layer(inner)
        .oneshot(request)
        .await
        .expect("the request was forwarded")
}

fn client_request_with_credentials() -> Request<()> {
    Request::builder()
        .uri("/chat/completions")
        .header("Authorization", "Bearer client-token")
        .header("authorization", "Bearer second-client-token")
        .header("X-Api-Key", "client-x-api-key")
        .header("api-key", "client-azure-key")
        .header("X-Goog-Api-Key", "client-goog-key")
        .header("proxy-authorization", "Basic cHJveHk=")
        .header("cookie", "session=client-session")
        .header("OpenAI-Organization", "org-client")
        .header("openai-project", "proj_client")
        .header("user-agent", "curl/8.0")
        .body(())
        .unwrap()
}

fn with_selected(mut request: Request<()>, endpoint: Arc<Endpoint>) -> Request<()> {
    request.extensions_mut().insert(Selected(endpoint));
    request
}

fn assert_no_client_credentials(headers: &HeaderMap) {
    for value in headers.values() {
        let value = value.to_str().unwrap_or_default();
        assert!(
            !value.contains("client"),
            "client credential forwarded: {value}"
        );
        assert!(!value.contains("cHJveHk="), "proxy credential forwarded");
    }
}

#[tokio::test]
async fn each_provider_gets_its_own_header() {
    let cases = [
        (Provider::OpenAi, "authorization", "Bearer sk-upstream"),
        (Provider::Azure, "api-key", "sk-upstream"),
        (Provider::Anthropic, "x-api-key", "sk-upstream"),
        (Provider::Gemini, "x-goog-api-key", "sk-upstream"),
        (
            Provider::Custom {
                header: "x-custom-token".parse().unwrap(),
                prefix: Some("Token ".into()),
            },
            "x-custom-token",
            "Token sk-upstream",
        ),
        (
            Provider::Custom {
                header: "x-plain".parse().unwrap(),
                prefix: None,
            },
            "x-plain",
            "sk-upstream",
        ),
    ];
    for (provider, header, expected) in cases {
        let name = provider.name();
        let ep = endpoint(provider, Some("sk-upstream"));
        let req = seen(
            AuthLayer::new(),
            with_selected(client_request_with_credentials(), ep),
        )
        .await;
        let values: Vec<_> = req.headers().get_all(header).iter().collect();
        assert_eq!(values.len(), 1, "{name}: exactly one {header}");
        assert_eq!(values[0], expected, "{name}");
        assert!(
            values[0].is_sensitive(),
            "{name}: credential must be sensitive"
        );
        assert_no_client_credentials(req.headers());
        // Only the provider's own credential header is present.
        let credential_headers = ["authorization", "api-key", "x-api-key", "x-goog-api-key"]
            .iter()
            .filter(|h| req.headers().contains_key(**h))
            .count();
        let expected_count = usize::from(
            ["authorization", "api-key", "x-api-key", "x-goog-api-key"].contains(&header),
        );
        assert_eq!(credential_headers, expected_count, "{name}");
        assert!(!req.headers().contains_key("proxy-authorization"));
        assert_eq!(req.headers()["user-agent"], llm_tower_core::USER_AGENT);
    }
}

#[tokio::test]
async fn custom_header_from_client_is_stripped() {
    let ep = endpoint(
        Provider::Custom {
            header: "x-custom-token".parse().unwrap(),
            prefix: None,
        },
        None,
    );
    let req = Request::builder()
        .header("X-Custom-Token", "client-custom")
        .body(())
        .unwrap();
    let req = seen(AuthLayer::new(), with_selected(req, ep)).await;
    assert!(!req.headers().contains_key("x-custom-token"));
}

#[tokio::test]
async fn anthropic_version_added_unless_sent() {
    let ep = endpoint(Provider::Anthropic, Some("k"));
    let req = seen(
        AuthLayer::new(),
        with_selected(Request::new(()), ep.clone()),
    )
    .await;
    assert_eq!(req.headers()["anthropic-version"], "2023-06-01");
    let sent = Request::builder()
        .header("anthropic-version", "2024-10-22")
        .body(())
        .unwrap();
    let req = seen(AuthLayer::new(), with_selected(sent, ep)).await;
    let versions: Vec<_> = req.headers().get_all("anthropic-version").iter().collect();
    assert_eq!(versions, ["2024-10-22"]);
    // Not added for other providers.
    let req = seen(
        AuthLayer::new(),
        with_selected(Request::new(()), endpoint(Provider::OpenAi, Some("k"))),
    )
    .await;
    assert!(!req.headers().contains_key("anthropic-version"));
}

#[tokio::test]
async fn byok_mode() {
    // Off (default): client credentials never pass, even when the endpoint has no key.
    let keyless = endpoint(Provider::OpenAi, None);
    let req = seen(
        AuthLayer::new(),
        with_selected(client_request_with_credentials(), keyless.clone()),
    )
    .await;
    assert_no_client_credentials(req.headers());
    assert!(!req.headers().contains_key("authorization"));

    // On, endpoint without a key: the client's credentials pass (not proxy-authorization).
    let layer = AuthLayer::new().forward_client_credentials(true);
    let req = seen(
        layer.clone(),
        with_selected(client_request_with_credentials(), keyless),
    )
    .await;
    let auth: Vec<_> = req.headers().get_all("authorization").iter().collect();
    assert_eq!(auth, ["Bearer client-token", "Bearer second-client-token"]);
    assert_eq!(req.headers()["x-goog-api-key"], "client-goog-key");
    assert!(!req.headers().contains_key("proxy-authorization"));

    // On, endpoint with a key: the endpoint's key wins and the client's are stripped.
    let keyed = endpoint(Provider::OpenAi, Some("sk-upstream"));
    let req = seen(
        layer,
        with_selected(client_request_with_credentials(), keyed),
    )
    .await;
    assert_no_client_credentials(req.headers());
    assert_eq!(req.headers()["authorization"], "Bearer sk-upstream");
}

#[tokio::test]
async fn fixed_endpoint_and_no_endpoint() {
    let fixed = endpoint(Provider::Azure, Some("sk-fixed"));
    let req = seen(
        AuthLayer::for_endpoint(fixed),
        client_request_with_credentials(),
    )
    .await;
    assert_eq!(req.headers()["api-key"], "sk-fixed");
    // Selected wins over the fixed endpoint.
    let selected = endpoint(Provider::Gemini, Some("sk-selected"));
    let layer = AuthLayer::for_endpoint(endpoint(Provider::Azure, Some("sk-fixed")));
    let req = seen(layer, with_selected(Request::new(()), selected)).await;
    assert_eq!(req.headers()["x-goog-api-key"], "sk-selected");
    assert!(!req.headers().contains_key("api-key"));
}

#[tokio::test]
async fn no_endpoint_is_an_error_and_nothing_is_sent() {
    // An AuthLayer outside the balancer sees no `Selected`: it must not forward the request
    // without a key (nor with the client's), but say what is wrong.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let inner = {
        let calls = calls.clone();
        service_fn(move |req: Request<()>| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, Infallible>(req) }
        })
    };
    let err = AuthLayer::new()
        .layer(inner)
        .oneshot(client_request_with_credentials())
        .await
        .unwrap_err();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    let err = err.downcast::<llm_tower_core::Error>().unwrap();
    assert_eq!(err.kind(), llm_tower_core::ErrorKind::Internal);
    assert!(err.message().contains("FallbackLayer"), "{err}");
    assert!(!err.message().contains("client"), "{err}");
}

#[tokio::test]
async fn user_agent_configurable() {
    let req = seen(
        AuthLayer::for_endpoint(endpoint(Provider::OpenAi, Some("sk-upstream"))).user_agent(None),
        client_request_with_credentials(),
    )
    .await;
    assert_eq!(req.headers()["user-agent"], "curl/8.0");
    let req = seen(
        AuthLayer::for_endpoint(endpoint(Provider::OpenAi, Some("sk-upstream")))
            .user_agent(Some("my-gateway/1".parse().unwrap())),
        client_request_with_credentials(),
    )
    .await;
    let agents: Vec<_> = req.headers().get_all("user-agent").iter().collect();
    assert_eq!(agents, ["my-gateway/1"]);
}

#[tokio::test]
async fn key_query_parameter_is_removed() {
    let ep = endpoint(Provider::Gemini, Some("sk-upstream"));
    let req = Request::builder()
        .uri("/models/gemini:generateContent?alt=sse&key=client-key&x=1")
        .body(())
        .unwrap();
    let req = seen(AuthLayer::new(), with_selected(req, ep.clone())).await;
    assert_eq!(req.uri(), "/models/gemini:generateContent?alt=sse&x=1");
    let req = Request::builder()
        .uri("/m?key=client-key")
        .body(())
        .unwrap();
    let req = seen(AuthLayer::new(), with_selected(req, ep)).await;
    assert_eq!(req.uri(), "/m");
    // A parameter that merely ends in "key" is kept.
    let req = Request::builder().uri("/m?monkey=1").body(()).unwrap();
    let fixed = AuthLayer::for_endpoint(endpoint(Provider::Gemini, Some("sk-upstream")));
    assert_eq!(seen(fixed, req).await.uri(), "/m?monkey=1");
}

#[tokio::test]
async fn debug_of_the_rewritten_request_shows_no_key() {
    let ep = endpoint(Provider::OpenAi, Some("sk-very-secret-upstream-key"));
    let req = seen(AuthLayer::new(), with_selected(Request::new(()), ep)).await;
    let shown = format!("{req:?}");
    assert!(!shown.contains("sk-very-secret-upstream-key"), "{shown}");
    assert!(shown.contains("Sensitive"), "{shown}");
}

#[tokio::test]
async fn inside_an_axum_router() {
    use axum::Router;
    use axum::body::Body;
    use axum::error_handling::HandleErrorLayer;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceBuilder;

    async fn echo(headers: HeaderMap) -> String {
        let mut seen: Vec<String> = headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        seen.sort();
        seen.join("\n")
    }

    // The layer's error type is `BoxError` (it refuses requests without an endpoint), so in
    // an axum router it sits behind an error handler, as every fallible tower layer does.
    let ep = endpoint(Provider::OpenAi, Some("sk-upstream"));
    let layer = || {
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(
                |err: llm_tower_core::BoxError| async move {
                    (http::StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
                },
            ))
            .layer(AuthLayer::for_endpoint(ep.clone()))
    };
    let app: Router = Router::new()
        .route("/v1/chat/completions", post(echo))
        .route_layer(layer());
    let app2: Router = Router::new()
        .route("/v1/chat/completions", post(echo))
        .layer(layer());
    for app in [app, app2] {
        let request = Request::post("/v1/chat/completions")
            .header("authorization", "Bearer client-token")
            .header("x-api-key", "client-x")
            .body(Body::empty())
            .unwrap();
        let response: Response<Body> = app.oneshot(request).await.unwrap();
        let text = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(text.contains("authorization: Bearer sk-upstream"), "{text}");
        assert!(!text.contains("client"), "{text}");
        assert!(text.contains("user-agent: llm-tower/"), "{text}");
    }
}
