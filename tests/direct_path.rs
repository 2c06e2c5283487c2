//! The server's direct path: requests under the mount path go straight to the stack's route,
//! past the axum router. Whatever the path, key or mount, the answer must be the one the
//! router alone gives (the router stays the reference: it is what people mounting it
//! elsewhere get).

mod common;

use bytes::Bytes;
use common::{CHAT, Gateway, only, serve_exactly, serve_router_only, with_keys};
use http::{Request, StatusCode};
use http_body_util::Full;
use llm_tower_gateway::GatewayConfig;
use llm_tower_mock::MockProvider;

/// What one request got: status, whether it carried a request id (and which, when the client
/// sent one), whether it asked for credentials, and the path and query the upstream saw.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: StatusCode,
    request_id: Option<String>,
    challenged: bool,
    upstream_saw: Option<String>,
}

async fn outcome(
    gw: &Gateway,
    mock: &MockProvider,
    method: &str,
    path: &str,
    key: bool,
) -> Outcome {
    let before = mock.request_count();
    let mut request = Request::builder()
        .method(method)
        .uri(gw.url(path))
        .header("content-type", "application/json");
    if key {
        request = request.header("authorization", "Bearer gw-team-a-0123456789abcdef");
    }
    if path.contains("chat") {
        request = request.header("x-request-id", "client-chosen-id");
    }
    let response = gw
        .send(request.body(Full::new(Bytes::from(CHAT))).unwrap())
        .await;
    let id = response
        .headers()
        .get("x-request-id")
        .map(|id| id.to_str().unwrap().to_owned());
    Outcome {
        status: response.status(),
        // Generated ids differ between two gateways; a client's own must come back as sent.
        request_id: id.map(|id| {
            if id == "client-chosen-id" {
                id
            } else {
                "generated".into()
            }
        }),
        challenged: response.headers().contains_key("www-authenticate"),
        upstream_saw: (mock.request_count() > before).then(|| {
            let requests = mock.requests();
            let uri = &requests.last().unwrap().uri;
            uri.path_and_query().unwrap().to_string()
        }),
    }
}

/// The server takes requests under the mount path straight to the stack, past the router.
/// Whatever the path, key or mount, the answer must be the one the router alone gives.
#[tokio::test]
async fn direct_path_answers_as_the_router_alone_does() {
    let mock = MockProvider::start().await.unwrap();
    let requests = [
        ("POST", "/v1/chat/completions", true),
        ("POST", "/v1/chat/completions", false),
        ("POST", "/v1/chat/completions?api-version=1&x=%2F", true),
        ("POST", "/v1", true),
        ("POST", "/v1/", true),
        ("POST", "/v1x/chat/completions", true),
        ("POST", "/chat/completions", true),
        ("GET", "/healthz", false),
        ("GET", "/upstreams", false),
        ("GET", "/upstreams", true),
        ("GET", "/metrics", true),
        ("GET", "/elsewhere", true),
    ];
    for (mount, keys) in [
        ("/v1", true),
        ("/v1", false),
        ("/v1/", true),
        ("/", true),
        ("/", false),
    ] {
        let config = || {
            let mut config = if keys {
                with_keys(&mock)
            } else {
                GatewayConfig::new(only(&mock))
            };
            config.mount = mount.into();
            config
        };
        let direct = serve_exactly(config(), None, std::future::pending()).await;
        let router = serve_router_only(config()).await;
        for (method, path, key) in requests {
            let expected = outcome(&router, &mock, method, path, key).await;
            let got = outcome(&direct, &mock, method, path, key).await;
            assert_eq!(
                got, expected,
                "{method} {path} (key: {key}) mounted at {mount} (keys: {keys})"
            );
        }
    }
}
