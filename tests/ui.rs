//! `/ui`, the operator's page, and what `/upstreams` tells it: the page as served, the same
//! credentials as `/upstreams`, the last minute and last failure of each deployment, and the
//! page in a real headless Chromium driven through chromedriver (WebDriver). The browser test
//! is skipped, saying why, without `chromium` and `chromedriver` (`.ci/run` installs both).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::browser::Browser;
use common::{CHAT, Gateway, body, endpoint, header, serve, with_keys};
use http::{Request, StatusCode};
use http_body_util::Full;
use llm_tower::Config;
use llm_tower_gateway::GatewayConfig;
use llm_tower_mock::{Behavior, MockProvider};
use serde_json::{Value, json};

#[tokio::test(start_paused = true)]
async fn the_page_is_one_self_contained_file() {
    let mock = MockProvider::start().await.unwrap();
    let gw = serve(
        GatewayConfig::new(common::only(&mock)),
        None,
        std::future::pending(),
    )
    .await;
    let response = gw.client.get(gw.url("/ui").parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "content-type"),
        "text/html; charset=utf-8"
    );
    let policy = header(&response, "content-security-policy").to_owned();
    assert!(policy.contains("connect-src 'self'") && policy.contains("default-src 'none'"));
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let page = String::from_utf8(body(response).await.to_vec()).unwrap();
    assert!(page.contains("new URL(\"upstreams\", location.href)"));
    for external in ["<script src", "<link", "@import", "https://", "cdn"] {
        assert!(
            !page.contains(external),
            "the page loads nothing else: {external}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_page_needs_the_credentials_upstreams_needs() {
    let mock = MockProvider::start().await.unwrap();
    let gw = serve(with_keys(&mock), None, std::future::pending()).await;
    let get = |path: &str, authorization: Option<&str>| {
        let mut request = Request::get(gw.url(path));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        gw.send(request.body(Full::new(Bytes::new())).unwrap())
    };
    // "team-a:gw-team-a-0123456789abcdef" and "x:wrong-key-0123456789", in base64.
    let basic = "Basic dGVhbS1hOmd3LXRlYW0tYS0wMTIzNDU2Nzg5YWJjZGVm";
    let wrong_basic = "Basic eDp3cm9uZy1rZXktMDEyMzQ1Njc4OQ==";
    for path in ["/ui", "/upstreams"] {
        let refused = get(path, None).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{path}");
        let challenges: Vec<_> = refused
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic realm=")),
            "a browser asks for the key: {challenges:?}"
        );
        assert_eq!(
            get(path, Some(wrong_basic)).await.status(),
            StatusCode::UNAUTHORIZED
        );
        let bearer = get(path, Some("Bearer gw-team-b-0123456789abcdef")).await;
        assert_eq!(bearer.status(), StatusCode::OK, "{path}");
        assert_eq!(
            get(path, Some(basic)).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
}

/// One minute of outcomes and the last failure per deployment, with where the deployment
/// sits (endpoint, model, priority) for the page to group by.
#[tokio::test(start_paused = true)]
async fn upstreams_shows_the_last_minute_and_the_last_failure() {
    let primary = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    let gw = common::start(Config::with_endpoints(vec![
        endpoint("primary", primary.base_url(), 0),
        endpoint("backup", backup.base_url(), 1),
    ]))
    .await;
    gw.post(CHAT).await;
    primary.script([Behavior::status(503), Behavior::Reply]);
    gw.post(CHAT).await;
    primary.script([Behavior::status(503), Behavior::retry_after(429, "5")]);
    let response = gw.post(CHAT).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "backup");

    let primary = gw.upstream("primary").await;
    let minute = &primary["last_minute"];
    let total = |kind: &str| {
        minute[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        minute["success"].as_array().unwrap().len(),
        llm_tower::health::LastMinute::SLOTS
    );
    assert_eq!(
        (total("success"), total("retried"), total("failed")),
        (1, 1, 1)
    );
    assert_eq!(
        minute["failed"][llm_tower::health::LastMinute::SLOTS - 1],
        1,
        "the newest slot is last"
    );
    assert_eq!(primary["last_failure"]["outcome"], "429");
    assert!(primary["recent_latency_ms"].as_f64().is_some());
    assert_eq!(
        (&primary["endpoint"], &primary["priority"]),
        (&json!("primary"), &json!(0))
    );
    let backup = gw.upstream("backup").await;
    assert_eq!(
        backup["last_minute"]["success"][llm_tower::health::LastMinute::SLOTS - 1],
        1
    );
    assert!(backup.get("last_failure").is_none());
    assert_eq!(backup["priority"], 1);
}

/// A 200 whose headers say 59 of 60 requests are left.
fn telling_its_rate_limits() -> Behavior {
    Behavior::Status {
        status: 200,
        retry_after: None,
        headers: vec![
            ("x-ratelimit-limit-requests".into(), "60".into()),
            ("x-ratelimit-remaining-requests".into(), "59".into()),
            ("x-ratelimit-reset-requests".into(), "1s".into()),
        ],
        body: None,
    }
}

/// A WebDriver session with headless Chromium, ended when dropped.
impl Browser {
    /// What the page shows per deployment: `{id: {status, countdown}}`, read from the
    /// rendered DOM.
    async fn deployments(&self) -> Value {
        self.eval(
            "const shown = {};
             for (const row of document.querySelectorAll('.dep')) {
               shown[row.dataset.id] = {
                 status: row.querySelector('.status').textContent,
                 countdown: row.querySelector('.countdown').textContent,
                 failure: row.querySelector('.last-failure').textContent,
                 tokens: row.querySelector('.tokens').firstChild.textContent,
                 provider: row.querySelector('.provider-limits')?.textContent ?? null,
                 bars: row.querySelectorAll('svg rect').length,
               };
             }
             return shown;",
        )
        .await
    }

    /// Looks at the page until `done` holds, at most `within` (the page polls every second).
    async fn until(&self, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let shown = self.deployments().await;
            if done(&shown) {
                return shown;
            }
            assert!(
                started.elapsed() < within,
                "the page never got there: {shown}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The page in Chromium: an ejected deployment shows as ejected with a live countdown, the
/// healthy one as healthy; when the upstream recovers and the health check's probe passes,
/// the page shows it healthy without a reload; when the gateway goes away, it says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_a_browser_follows_an_ejection_and_a_recovery() {
    let browser = match Browser::start().await {
        Ok(browser) => browser,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let primary = MockProvider::start().await.unwrap();
    let backup = MockProvider::start().await.unwrap();
    let checked = llm_tower::EndpointConfig {
        health_check_interval: Duration::from_secs(3),
        health_check: Some(llm_tower::HealthCheck::default()),
        ..endpoint("primary", primary.base_url(), 0)
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gw: Gateway = serve(
        GatewayConfig::new(Config::with_endpoints(vec![
            checked,
            endpoint("backup", backup.base_url(), 1),
        ])),
        None,
        async move {
            let _ = stopped.await;
        },
    )
    .await;
    browser.open(&gw.url("/ui")).await;
    browser
        .until(Duration::from_secs(10), |shown| {
            shown["primary"]["status"] == "healthy"
        })
        .await;

    // The primary fails both tries: the request falls back, the primary is out for 3 s. The
    // backup's answer tells its rate limits.
    primary.script([Behavior::status(503), Behavior::status(503)]);
    backup.push(telling_its_rate_limits());
    assert_eq!(
        header(&gw.post(CHAT).await, "x-llm-tower-endpoint"),
        "backup"
    );
    let shown = browser
        .until(Duration::from_secs(3), |shown| {
            shown["primary"]["status"] == "ejected"
        })
        .await;
    let countdown = shown["primary"]["countdown"].as_str().unwrap().to_owned();
    assert!(
        countdown.starts_with("back in ") && countdown.ends_with('s'),
        "{shown}"
    );
    assert_eq!(shown["backup"]["status"], "healthy", "{shown}");
    // The answer's tokens (the mock's 9 in, 6 out), on the deployment that gave it.
    assert_eq!(shown["backup"]["tokens"], "9 / 6 tok", "{shown}");
    assert_eq!(shown["primary"]["tokens"], "0 / 0 tok", "{shown}");
    // What the backup's provider said is left of its rate limits; nothing of the primary's.
    assert_eq!(shown["backup"]["provider"], "59/60 req left", "{shown}");
    assert_eq!(shown["primary"]["provider"], Value::Null, "{shown}");
    assert!(
        shown["primary"]["failure"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{shown}"
    );
    assert!(
        shown["primary"]["bars"].as_u64().unwrap() >= 1,
        "the sparkline drew the failure"
    );
    // The countdown counts down between polls.
    let later = browser
        .until(Duration::from_secs(3), |s| {
            s["primary"]["countdown"].as_str() != Some(&countdown)
        })
        .await;
    assert_eq!(later["primary"]["status"], "ejected", "{later}");

    // The mock answers again: the check at the cooldown's end restores it, and the page shows
    // it without being reloaded, on probation until a request succeeds.
    let recovered = browser
        .until(Duration::from_secs(8), |shown| {
            shown["primary"]["status"] == "healthy"
        })
        .await;
    assert_eq!(
        recovered["primary"]["countdown"], "on probation",
        "{recovered}"
    );
    assert_eq!(
        browser
            .eval("return performance.getEntriesByType('navigation').length")
            .await,
        1
    );

    // The gateway goes away: the page says so, and keeps what it last saw.
    let _ = stop.send(());
    let _ = gw.server.await;
    let banner = "return document.getElementById('banner').classList.contains('shown') \
                  ? document.getElementById('banner').textContent : null";
    let started = Instant::now();
    let text = loop {
        if let Some(text) = browser.eval(banner).await.as_str() {
            break text.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no unreachable banner"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(text.contains("Gateway unreachable"), "{text}");
    assert_eq!(browser.deployments().await["backup"]["status"], "healthy");
}

/// The page shows each client key against its limits, from `/limits` (here on the admin
/// listener, which asks no key): team A's requests left after two requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_a_browser_shows_each_key_against_its_limits() {
    let browser = match Browser::start().await {
        Ok(browser) => browser,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let mock = MockProvider::start().await.unwrap();
    let mut config = with_keys(&mock);
    config.client_auth.as_mut().unwrap().keys[0].limits = Some(llm_tower::limits::Limits {
        rpm: Some(5),
        ..llm_tower::limits::Limits::default()
    });
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let gw: Gateway = serve(config, None, std::future::pending()).await;
    for _ in 0..2 {
        let request = Request::post(gw.url("/v1/chat/completions"))
            .header("authorization", "Bearer gw-team-a-0123456789abcdef")
            .body(Full::new(Bytes::from(CHAT)))
            .unwrap();
        assert_eq!(gw.send(request).await.status(), StatusCode::OK);
    }
    browser
        .open(&format!("http://{}/ui", gw.admin.unwrap()))
        .await;
    let started = Instant::now();
    let row = loop {
        let row = browser
            .eval(
                "const row = document.querySelector('#limits tr[data-client=\"team-a\"]');
                 return row && !document.getElementById('limits').hidden
                   ? [...row.children].map(cell => cell.textContent) : null;",
            )
            .await;
        if !row.is_null() {
            break row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no limits shown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Refilled a little by the time the page asks: 3 of 5 left, or 4.
    let requests = row[1].as_str().unwrap();
    assert!(requests == "3 / 5" || requests == "4 / 5", "{row}");
    assert_eq!(row[2], "—", "no tokens limit");
}
