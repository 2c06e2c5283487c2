//! Security suite: credentials, secrets in output, request targets, message framing.
//!
//! Over 500 lines on purpose: one checklist a security review reads top to bottom, each
//! section a few short tests sharing the same helpers.

mod common;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{CHAT, body, endpoint, everything, only, raw_upstream, start};
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use llm_tower::{BufferedBody, Config, ConfigError, EndpointConfig, ProviderName, Secret};
use llm_tower::{FallbackLayer, HealthRegistry, RetryLayer, Upstream};
use llm_tower_gateway::GatewayConfig;
use llm_tower_mock::{Behavior, MockProvider};
use tower::{Layer, ServiceExt, service_fn};

const CLIENT_SECRET: &str = "client-secret-c4f3";

fn keyed(id: &str, base_url: String, provider: ProviderName) -> EndpointConfig {
    EndpointConfig {
        provider,
        ..endpoint(id, base_url, 0)
    }
}

#[tokio::test(start_paused = true)]
async fn client_credentials_never_reach_any_provider() {
    for provider in [
        ProviderName::Openai,
        ProviderName::Azure,
        ProviderName::Anthropic,
        ProviderName::Gemini,
    ] {
        let mock = MockProvider::start().await.unwrap();
        let gw = start(Config::with_endpoints(vec![keyed(
            "p",
            mock.base_url(),
            provider,
        )]))
        .await;
        let request = Request::post(gw.url("/v1/chat/completions?key=client-secret-c4f3&alt=sse"))
            .header("Authorization", format!("Bearer {CLIENT_SECRET}"))
            .header("authorization", format!("Bearer {CLIENT_SECRET}-2"))
            .header("X-API-Key", CLIENT_SECRET)
            .header("Api-Key", CLIENT_SECRET)
            .header("X-Goog-Api-Key", CLIENT_SECRET)
            .header("Proxy-Authorization", format!("Basic {CLIENT_SECRET}"))
            .body(Full::new(Bytes::from(CHAT)))
            .unwrap();
        let status = gw.send(request).await.status();
        let seen = &mock.requests()[0];
        if provider == ProviderName::Anthropic {
            // Translated for Anthropic: the mock, which speaks OpenAI only, has no such path.
            assert_eq!(seen.uri.path(), "/v1/messages");
        } else if provider == ProviderName::Gemini {
            // Translated for Gemini, the model in the path (the mock has none such either).
            assert!(
                seen.uri.path().ends_with(":generateContent"),
                "{}",
                seen.uri
            );
        } else {
            assert_eq!(status, StatusCode::OK, "{provider:?}");
        }
        let everything = format!("{:?} {}", seen.headers, seen.uri);
        assert!(
            !everything.contains(CLIENT_SECRET),
            "{provider:?}: {everything}"
        );
        let expected = match provider {
            ProviderName::Openai => ("authorization", "Bearer sk-upstream-p"),
            ProviderName::Azure => ("api-key", "sk-upstream-p"),
            ProviderName::Anthropic => ("x-api-key", "sk-upstream-p"),
            _ => ("x-goog-api-key", "sk-upstream-p"),
        };
        assert_eq!(seen.header(expected.0), Some(expected.1), "{provider:?}");
        assert_eq!(seen.headers.get_all(expected.0).iter().count(), 1);
        assert_eq!(seen.uri.query(), Some("alt=sse"));
    }
}

#[tokio::test]
async fn debug_of_configuration_endpoints_requests_and_errors_hides_keys() {
    let yaml = "endpoints:\n  - id: a\n    base_url: http://127.0.0.1:9/v1\n    api_key: sk-debug-secret\n";
    let config = Config::from_yaml_str(yaml).unwrap();
    let endpoints = config.build_endpoints().unwrap();
    let upstream = Upstream::from_config(&config).unwrap();
    let mut shown = format!(
        "{config:?} {endpoints:?} {upstream:?} {:?}",
        upstream.layer().unwrap()
    );
    shown.push_str(&serde_json::to_string(&config).unwrap());

    // The request as the stack hands it to the client.
    let captured = Arc::new(Mutex::new(String::new()));
    let sink = captured.clone();
    let inner = service_fn(move |request: Request<BufferedBody>| {
        let _ = write!(sink.lock().unwrap(), "{request:?}");
        async { Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new())) }
    });
    let response = upstream
        .layer()
        .unwrap()
        .layer(inner)
        .oneshot(Request::new(Full::new(Bytes::from(CHAT))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let request_debug = captured.lock().unwrap().clone();
    assert!(request_debug.contains("authorization"), "{request_debug}");
    shown.push_str(&request_debug);

    // An error from the layers.
    let failing = service_fn(|_: Request<BufferedBody>| async {
        Err::<Response<Empty<Bytes>>, _>(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))
    });
    let stack = FallbackLayer::builder(config.build_endpoints().unwrap())
        .settings(config.fallback)
        .build(HealthRegistry::new())
        .unwrap()
        .layer(RetryLayer::new().layer(llm_tower::AuthLayer::new().layer(failing)));
    let err = stack
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .unwrap_err();
    let _ = write!(shown, "{err:?} {err}");

    assert!(!shown.contains("sk-debug-secret"), "{shown}");
}

#[test]
fn keys_with_control_characters_are_rejected_at_load() {
    for key in [
        "sk\\r\\nx-injected: 1",
        "sk\\nabc",
        "sk\\u0000",
        "sk\\tkey",
        "sk\\u007f",
    ] {
        let yaml =
            format!("endpoints:\n  - id: a\n    base_url: http://h/v1\n    api_key: \"{key}\"\n");
        let err = Config::from_yaml_str(&yaml).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{message}");
        assert!(
            message.contains("api_key") && message.contains("control character"),
            "{message}"
        );
        assert!(
            !message.contains("injected"),
            "the key is not echoed: {message}"
        );
    }
    let mut config = Config::with_endpoints(vec![EndpointConfig {
        api_key: Some(Secret::new("sk-fine\r\n")),
        ..EndpointConfig::new("a", "http://h/v1")
    }]);
    assert!(Upstream::from_config(&config).is_err());
    config.endpoints[0].api_key = Some(Secret::new("sk-fine"));
    assert!(GatewayConfig::new(config).validate().is_ok());
}

#[tokio::test(start_paused = true)]
async fn request_targets_cannot_change_the_upstream() {
    let mock = MockProvider::start().await.unwrap();
    // Mounted at the root, so every target reaches the balancer; even a host name the
    // gateway answers to cannot choose the upstream.
    let mut config = GatewayConfig::new(only(&mock));
    config.mount = "/".into();
    config.allowed_hosts = vec!["evil.example".into()];
    let gw = common::serve(config, None, std::future::pending()).await;
    let targets = [
        "http://evil.example/chat/completions",
        "https://evil.example:443/chat/completions",
        "//evil.example/chat/completions",
        "//evil.example:80",
    ];
    for target in targets {
        let answer = gw
            .raw(&format!(
                "POST {target} HTTP/1.1\r\nhost: evil.example\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            ))
            .await;
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 4"),
            "{target}: {answer}"
        );
    }
    let expected_host = mock.addr().to_string();
    assert!(mock.request_count() >= 2);
    for seen in mock.requests() {
        assert_eq!(
            seen.header("host"),
            Some(expected_host.as_str()),
            "{}",
            seen.uri
        );
        assert!(seen.uri.path().starts_with("/v1/"), "{}", seen.uri);
    }
}

#[tokio::test(start_paused = true)]
async fn dot_segments_cannot_climb_out_of_the_base_path() {
    let mock = MockProvider::start().await.unwrap();
    let base = format!("http://{}/openai/deployments/small", mock.addr());
    let gw = start(Config::with_endpoints(vec![endpoint("only", base, 0)])).await;
    for target in [
        "/v1/../large/chat/completions",
        "/v1/%2e%2e/large/chat/completions",
        "/v1/.%2E/large/chat/completions",
        "/v1/x%2f..%2f..%2flarge/chat/completions",
    ] {
        let answer = gw
            .raw(&format!(
                "POST {target} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            ))
            .await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{target}: {answer}");
    }
    assert_eq!(
        mock.request_count(),
        0,
        "nothing outside the base path was called"
    );
    assert_eq!(gw.post(CHAT).await.status(), StatusCode::OK);
    assert_eq!(
        mock.requests()[0].uri.path(),
        "/openai/deployments/small/chat/completions"
    );
}

#[tokio::test(start_paused = true)]
async fn framing_headers_are_never_copied_blindly() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(only(&mock)).await;
    // A chunked upload: the upstream gets a fresh content-length and no transfer-encoding.
    let answer = gw
        .raw(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
        )
        .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = &mock.requests()[0];
    assert_eq!(seen.body, "{\"a\":1}");
    assert_eq!(seen.header("content-length"), Some("7"));
    assert_eq!(seen.header("transfer-encoding"), None);
    // A smuggling attempt (both framings): whatever the server answers, the smuggled request
    // never reaches the upstream.
    let _ = gw
        .raw(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n",
        )
        .await;
    assert!(
        !answer.starts_with("HTTP/1.1 200") || mock.request_count() <= 2,
        "{answer}"
    );
    for seen in mock.requests() {
        assert_ne!(seen.uri.path(), "/admin");
    }
    // The response side: what the client gets has consistent framing.
    mock.push(Behavior::Reply);
    let response = gw.post(CHAT).await;
    let declared: Option<usize> = response
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    assert_eq!(response.headers().get("transfer-encoding"), None);
    let bytes = body(response).await;
    if let Some(declared) = declared {
        assert_eq!(declared, bytes.len());
    }
}

#[tokio::test(start_paused = true)]
async fn a_key_echoed_by_the_upstream_never_reaches_the_client() {
    // Upstreams that quote the key they got: in the body of a 401, and in a header.
    let mock = MockProvider::start().await.unwrap();
    for status in [401, 403, 400, 500] {
        mock.push(Behavior::Status {
            status,
            retry_after: None,
            headers: vec![(
                "www-authenticate".into(),
                "Bearer realm=\"api\", key=\"Bearer sk-upstream-only\"".into(),
            )],
            body: Some(
                r#"{"error":{"message":"Incorrect API key provided: sk-upstream-only (Bearer sk-upstream-only)"}}"#
                    .into(),
            ),
        });
    }
    let mut config = Config::with_endpoints(vec![endpoint("only", mock.base_url(), 0)]);
    config.endpoints[0].retry_policy = llm_tower::RetryPolicy::NoRetry;
    config.endpoints[0].health_check_interval = std::time::Duration::from_millis(1);
    let gw = start(config).await;
    for status in [401, 403, 400, 500] {
        tokio::time::advance(std::time::Duration::from_millis(10)).await;
        let response = gw.post(CHAT).await;
        assert_eq!(response.status().as_u16(), status);
        let everything = everything(response).await;
        assert!(
            !everything.contains("sk-upstream-only"),
            "{status}: {everything}"
        );
        assert!(everything.contains("sk-...only"), "{status}: {everything}");
    }
}

/// The status line is written by the gateway: an upstream's reason phrase is free text, and
/// can quote the key it got.
#[tokio::test]
async fn an_upstream_reason_phrase_or_header_never_relays_its_key() {
    for reply in [
        &b"HTTP/1.1 401 Bad key sk-upstream-only\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"[..],
        b"HTTP/1.1 200 OK sk-upstream-only\r\nx-echo: key=sk-upstream-only;\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    ] {
        let upstream = raw_upstream(reply).await;
        let mut config = Config::with_endpoints(vec![endpoint("only", upstream, 0)]);
        config.endpoints[0].retry_policy = llm_tower::RetryPolicy::NoRetry;
        let gw = start(config).await;
        let answer = gw
            .raw(&format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{CHAT}",
                CHAT.len()
            ))
            .await;
        assert!(
            answer.starts_with("HTTP/1.1 401 Unauthorized\r\n")
                || answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{answer}"
        );
        assert!(!answer.contains("sk-upstream-only"), "{answer}");
        if answer.starts_with("HTTP/1.1 200") {
            assert!(answer.contains("x-echo: key=sk-...only;"), "{answer}");
        }
    }
}

/// Trailers are headers too: a success's trailers are masked, and a header named after the
/// key is dropped.
#[tokio::test]
async fn an_upstream_key_in_a_successs_trailers_or_a_header_name_never_reaches_the_client() {
    let upstream = raw_upstream(
        b"HTTP/1.1 200 OK\r\nx-sk-upstream-only: 1\r\ntransfer-encoding: chunked\r\ntrailer: x-echo\r\nconnection: close\r\n\r\n2\r\n{}\r\n0\r\nx-echo: key=sk-upstream-only\r\n\r\n",
    )
    .await;
    let mut config = Config::with_endpoints(vec![endpoint("only", upstream, 0)]);
    config.endpoints[0].retry_policy = llm_tower::RetryPolicy::NoRetry;
    let gw = start(config).await;
    // Over HTTP/2, where trailers reach the client whatever it asked.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let response = h2.request(gw.chat(CHAT)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let head = format!("{:?}", response.headers());
    assert!(!head.contains("sk-upstream-only"), "{head}");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    let trailers = body.trailers().expect("the trailers came").clone();
    assert_eq!(trailers["x-echo"], "key=sk-...only");
}

#[tokio::test(start_paused = true)]
async fn credentials_in_any_spelling_are_stripped() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(only(&mock)).await;
    let target = format!(
        "/v1/chat/completions?%6bey={CLIENT_SECRET}&KEY={CLIENT_SECRET}&api_key={CLIENT_SECRET}\
         &access_token={CLIENT_SECRET}&key[]={CLIENT_SECRET}&Token={CLIENT_SECRET}&alt=sse\
         &x=1;key={CLIENT_SECRET}&key%00={CLIENT_SECRET}&%20key={CLIENT_SECRET}\
         &subscription-key={CLIENT_SECRET}&client_secret={CLIENT_SECRET}&monkey=1&q=%6bey"
    );
    let request = Request::post(gw.url(&target))
        .header("anthropic-api-key", CLIENT_SECRET)
        .header("api_key", CLIENT_SECRET)
        .header("x-goog-user-project", CLIENT_SECRET)
        .header("ocp-apim-subscription-key", CLIENT_SECRET)
        .header("apikey", CLIENT_SECRET)
        .header("x-auth-token", CLIENT_SECRET)
        .header("x-anthropic-api-key", CLIENT_SECRET)
        // A compressed error body could hide an echoed key from the check.
        .header("accept-encoding", "gzip, br")
        .body(Full::new(Bytes::from(CHAT)))
        .unwrap();
    assert_eq!(gw.send(request).await.status(), StatusCode::OK);
    let seen = &mock.requests()[0];
    let everything = format!("{:?} {}", seen.headers, seen.uri);
    assert!(!everything.contains(CLIENT_SECRET), "{everything}");
    assert!(seen.headers.get("accept-encoding").is_none());
    // Every other parameter is kept, byte for byte.
    assert_eq!(seen.uri.query(), Some("alt=sse&monkey=1&q=%6bey"));
}

#[tokio::test(start_paused = true)]
async fn path_forms_that_upstreams_normalise_are_refused() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(only(&mock)).await;
    for target in [
        "/v1/..;/admin",
        "/v1/.;/admin",
        "/v1/%252e%252e/admin",
        "/v1/%c0%ae%c0%ae/admin",
        "/v1/..%00/admin",
        "/v1/..%3b/admin",
        "/v1/%2e%2e%3b/admin",
        "/v1/..%20/admin",
        "/v1/%u002e%u002e/admin",
        "/v1/%ef%bc%8e%ef%bc%8e/admin",
        // The full-width dots again, sent as UTF-8 rather than percent-encoded.
        "/v1/\u{ff0e}\u{ff0e}/admin",
    ] {
        let answer = gw
            .raw(&format!(
                "POST {target} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            ))
            .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
        assert!(answer.contains("invalid_request"), "{target}: {answer}");
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn http_1_1_needs_exactly_one_host() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(only(&mock)).await;
    let post = |headers: &str, version: &str| {
        format!(
            "POST /v1/chat/completions {version}\r\n{headers}content-length: 2\r\nconnection: close\r\n\r\n{{}}"
        )
    };
    let none = gw.raw(&post("", "HTTP/1.1")).await;
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    assert!(none.contains("no Host"), "{none}");
    let two = gw.raw(&post("host: a\r\nhost: b\r\n", "HTTP/1.1")).await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    assert_eq!(mock.request_count(), 0);
    // HTTP/1.0 had no Host requirement.
    let old = gw.raw(&post("", "HTTP/1.0")).await;
    assert!(
        old.starts_with("HTTP/1.1 200") || old.starts_with("HTTP/1.0 200"),
        "{old}"
    );
}

#[tokio::test(start_paused = true)]
async fn expect_continue_is_answered_here_and_not_forwarded() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(only(&mock)).await;
    let request = Request::post(gw.url("/v1/chat/completions"))
        .header("expect", "100-continue")
        .body(Full::new(Bytes::from(CHAT)))
        .unwrap();
    assert_eq!(gw.send(request).await.status(), StatusCode::OK);
    assert!(mock.requests()[0].headers.get("expect").is_none());
}
#[tokio::test(start_paused = true)]
async fn a_key_echoed_in_a_long_chunked_error_body_is_masked_too() {
    // 100 KiB of error page with the key in the middle, split across two chunks.
    let padding = "x".repeat(50 * 1024);
    let first = format!("{padding}Incorrect API key provided: sk-upstr");
    let second = format!("eam-only. {padding}");
    let reply: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
            first.len(),
            second.len()
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let upstream = common::raw_upstream(reply).await;
    let gw = start(Config::with_endpoints(vec![endpoint("only", upstream, 0)])).await;
    let response = gw.post(CHAT).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let text = everything(response).await;
    assert!(
        !text.contains("sk-upstream-only"),
        "the key reached the client"
    );
    assert!(text.contains("sk-...only"));
    assert!(text.len() > 100 * 1024, "the body arrived whole");
}
