//! What a web page can make a browser do to the gateway: reach a loopback gateway through a
//! name rebound to 127.0.0.1 (refused by `Host`), read a completion cross-origin (refused by
//! `Origin`, and no upstream CORS header passes), or spend a key the browser holds as a Basic
//! password (accepted only for reading the operator's pages). Over real sockets; the CORS
//! and form cases once more in a real headless Chromium (skipped, saying why, without one).

mod common;

use bytes::Bytes;
use common::{CHAT, Gateway, header, only, serve, with_keys};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use llm_tower_gateway::{CorsSettings, GatewayConfig};
use llm_tower_mock::{Behavior, MockProvider};

/// "team-a:gw-team-a-0123456789abcdef" in base64.
const BASIC: &str = "Basic dGVhbS1hOmd3LXRlYW0tYS0wMTIzNDU2Nzg5YWJjZGVm";

/// An upstream whose answers allow every origin, with credentials: what the gateway must
/// not pass on.
async fn permissive_upstream() -> MockProvider {
    let mock = MockProvider::start().await.unwrap();
    mock.set_default(Behavior::Status {
        status: 200,
        retry_after: None,
        headers: vec![
            ("access-control-allow-origin".into(), "*".into()),
            ("access-control-allow-credentials".into(), "true".into()),
            ("Access-Control-Expose-Headers".into(), "*".into()),
        ],
        body: Some(r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[]}"#.into()),
    });
    mock
}

fn request(
    gw: &Gateway,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let body = if method == Method::POST { CHAT } else { "" };
    let mut request = Request::builder().method(method).uri(gw.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(Bytes::from(body))).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_loopback_gateway_without_keys_answers_only_its_own_host_names() {
    let mock = MockProvider::start().await.unwrap();
    let mut config = GatewayConfig::new(only(&mock));
    config.allowed_hosts = vec!["gw.internal".into()];
    let gw = serve(config, None, std::future::pending()).await;
    let port = gw.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
        "gw.internal".into(),
    ] {
        let post = request(
            &gw,
            Method::POST,
            "/v1/chat/completions",
            &[("host", &host)],
        );
        assert_eq!(gw.send(post).await.status(), StatusCode::OK, "{host}");
    }
    assert_eq!(mock.request_count(), 6);
    // A page whose name was rebound to 127.0.0.1 sends its own name.
    for host in [
        format!("evil.example:{port}"),
        "localhost.evil.example".into(),
        "127.0.0.1.evil.example".into(),
        "gw.internal.evil.example".into(),
        format!("localhost:{port}@evil.example"),
    ] {
        let post = request(
            &gw,
            Method::POST,
            "/v1/chat/completions",
            &[("host", &host)],
        );
        let response = gw.send(post).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{host}");
        let error = common::error_json(response).await;
        assert_eq!(error["error"]["code"], "forbidden");
        let get = request(&gw, Method::GET, "/upstreams", &[("host", &host)]);
        assert_eq!(gw.send(get).await.status(), StatusCode::FORBIDDEN, "{host}");
    }
    // So does an absolute-form target.
    let answer = gw
        .raw(&format!(
            "POST http://evil.example:{port}/v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{CHAT}",
            CHAT.len()
        ))
        .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(mock.request_count(), 6, "nothing refused went upstream");
}

#[tokio::test(start_paused = true)]
async fn the_admin_listener_checks_host_names_too_and_a_keyed_listener_does_not() {
    let mock = MockProvider::start().await.unwrap();
    let mut config = with_keys(&mock);
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let gw = serve(config, None, std::future::pending()).await;
    let admin = gw.admin.unwrap();
    let answer = |host: String| async move {
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        let request =
            format!("GET /upstreams HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
            .await
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(
        answer(format!("localhost:{}", admin.port()))
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        answer(format!("evil.example:{}", admin.port()))
            .await
            .starts_with("HTTP/1.1 403")
    );
    // The main listener has keys: a name it is reached by is none of its concern.
    let post = request(
        &gw,
        Method::POST,
        "/v1/chat/completions",
        &[
            ("host", "gateway.example.com"),
            ("authorization", "Bearer gw-team-a-0123456789abcdef"),
        ],
    );
    assert_eq!(gw.send(post).await.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn pages_of_other_origins_are_refused_and_upstream_cors_headers_never_pass() {
    let mock = permissive_upstream().await;
    let gw = serve(
        GatewayConfig::new(only(&mock)),
        None,
        std::future::pending(),
    )
    .await;
    let port = gw.addr.port();
    for origin in ["https://evil.example", "null", "http://localhost:1"] {
        let post = request(
            &gw,
            Method::POST,
            "/v1/chat/completions",
            &[("origin", origin)],
        );
        let response = gw.send(post).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(header(&response, "access-control-allow-origin"), "");
        let preflight = request(
            &gw,
            Method::OPTIONS,
            "/v1/chat/completions",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
            ],
        );
        assert_eq!(gw.send(preflight).await.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(mock.request_count(), 0);
    // The gateway's own origin (its page, or a same-origin POST) is served, and no
    // `access-control-*` header of the upstream's reaches the client.
    let own = format!("http://127.0.0.1:{port}");
    for headers in [vec![], vec![("origin", own.as_str())]] {
        let response = gw
            .send(request(&gw, Method::POST, "/v1/chat/completions", &headers))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let cors: Vec<_> = response
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{cors:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn listed_origins_get_cors_answers_from_the_gateway_itself() {
    let mock = permissive_upstream().await;
    let mut config = with_keys(&mock);
    config.cors = Some(CorsSettings {
        allow_origins: vec!["https://app.example.com".into()],
        max_age: std::time::Duration::from_secs(120),
    });
    let gw = serve(config, None, std::future::pending()).await;
    // The preflight is answered here, before any key is asked for, and never forwarded.
    let preflight = request(
        &gw,
        Method::OPTIONS,
        "/v1/chat/completions",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type, x-stainless-os",
            ),
        ],
    );
    let response = gw.send(preflight).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        "https://app.example.com"
    );
    assert_eq!(
        header(&response, "access-control-allow-methods"),
        "GET, POST, OPTIONS"
    );
    assert_eq!(
        header(&response, "access-control-allow-headers"),
        "authorization, content-type, x-stainless-os"
    );
    assert_eq!(header(&response, "access-control-max-age"), "120");
    assert_eq!(mock.request_count(), 0);
    // The request itself still needs a key, and its answer names the origin, not `*`.
    let post = request(
        &gw,
        Method::POST,
        "/v1/chat/completions",
        &[
            ("origin", "https://app.example.com"),
            ("authorization", "Bearer gw-team-a-0123456789abcdef"),
        ],
    );
    let response = gw.send(post).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        "https://app.example.com"
    );
    assert!(header(&response, "access-control-expose-headers").contains("x-request-id"));
    assert!(header(&response, "vary").contains("origin"));
    let unkeyed = request(
        &gw,
        Method::POST,
        "/v1/chat/completions",
        &[("origin", "https://app.example.com")],
    );
    assert_eq!(gw.send(unkeyed).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(start_paused = true)]
async fn a_basic_password_opens_the_operators_pages_and_nothing_else() {
    let mock = MockProvider::start().await.unwrap();
    let gw = serve(with_keys(&mock), None, std::future::pending()).await;
    for path in ["/ui", "/upstreams", "/metrics"] {
        let get = request(&gw, Method::GET, path, &[("authorization", BASIC)]);
        assert_ne!(
            gw.send(get).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    // What a cross-site form would send with the password the browser holds: refused, on
    // the key alone (this one names no Origin) and on the Origin when it does.
    for headers in [
        vec![("authorization", BASIC), ("content-type", "text/plain")],
        vec![
            ("authorization", BASIC),
            ("content-type", "text/plain"),
            ("origin", "https://evil.example"),
        ],
    ] {
        let post = request(&gw, Method::POST, "/v1/chat/completions", &headers);
        let response = gw.send(post).await;
        assert!(
            matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ),
            "{headers:?}: {}",
            response.status()
        );
    }
    let get = request(&gw, Method::GET, "/v1/models", &[("authorization", BASIC)]);
    let response = gw.send(get).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        common::error_json(response).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Basic password opens only")
    );
    assert_eq!(mock.request_count(), 0);
    // The same key as a bearer token spends as before.
    let post = request(
        &gw,
        Method::POST,
        "/v1/chat/completions",
        &[("authorization", "Bearer gw-team-a-0123456789abcdef")],
    );
    assert_eq!(gw.send(post).await.status(), StatusCode::OK);
}

/// A page's server on another loopback port (another origin): every request gets `page`.
async fn page_server(page: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    origin
}

/// In Chromium: a page of another origin can neither read a completion through a gateway
/// without keys (a simple `text/plain` POST, which needs no preflight), nor, once the
/// operator gave the browser a key for `/ui`, make it spend that key with a form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_a_page_of_another_origin_reads_nothing_and_spends_nothing() {
    use common::browser::Browser;
    let browser = match Browser::start().await {
        Ok(browser) => browser,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let mock = permissive_upstream().await;
    let open = serve(
        GatewayConfig::new(only(&mock)),
        None,
        std::future::pending(),
    )
    .await;
    let evil = page_server("<!doctype html><title>another origin</title>").await;
    browser.open(&evil).await;
    let read = browser
        .eval(&format!(
            "return fetch({:?}, {{method: 'POST', headers: {{'content-type': 'text/plain'}}, body: {CHAT:?}}})
               .then(r => r.text()).then(t => 'read: ' + t, e => 'blocked: ' + e.name);",
            open.url("/v1/chat/completions")
        ))
        .await;
    assert_eq!(read, "blocked: TypeError");
    assert_eq!(
        mock.request_count(),
        0,
        "the request was refused, not just hidden"
    );

    // The operator opens /ui, giving the browser the key as a Basic password.
    let keyed = serve(with_keys(&mock), None, std::future::pending()).await;
    let ui = keyed
        .url("/ui")
        .replace("http://", "http://team-a:gw-team-a-0123456789abcdef@");
    browser.open(&ui).await;
    assert_eq!(
        browser.eval("return document.title").await,
        "llm-tower · upstreams"
    );
    // Then a page of another origin posts a form to the gateway.
    browser.open(&evil).await;
    browser
        .eval(&format!(
            "const form = document.createElement('form');
             form.method = 'POST'; form.enctype = 'text/plain'; form.action = {:?};
             const input = document.createElement('input');
             input.name = {:?}; input.value = '\"}}';
             form.appendChild(input); document.body.appendChild(form); form.submit(); return null;",
            keyed.url("/v1/chat/completions"),
            r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}],"x":""#,
        ))
        .await;
    let started = std::time::Instant::now();
    let landed = loop {
        let text = browser
            .eval("return location.href.includes('/v1/') ? document.body.innerText : null")
            .await;
        if let Some(text) = text.as_str() {
            break text.to_owned();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the form never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(landed.contains("not allowed"), "{landed}");
    assert_eq!(mock.request_count(), 0, "the form spent nothing");
}
