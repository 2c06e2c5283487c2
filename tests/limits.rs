//! Per-client limits, black-box on one gateway: requests and tokens per minute (exactly the
//! limit admitted), a budget in USD priced with the price table, the models a key may use,
//! OpenAI's rate-limit headers on every answer, refusals in the client's API, and a key
//! without limits unaffected.

mod common;

use bytes::Bytes;
use common::{Gateway, body, header, with_keys};
use http::{Request, StatusCode};
use http_body_util::Full;
use llm_tower::limits::{Budget, Limits, Period};
use llm_tower_gateway::GatewayConfig;
use llm_tower_mock::MockProvider;
use serde_json::{Value, json};

const TEAM_A: &str = "Bearer gw-team-a-0123456789abcdef";
const TEAM_B: &str = "Bearer gw-team-b-0123456789abcdef";

/// `with_keys(mock)`, team A held to `limits`.
fn limited(mock: &MockProvider, limits: Limits) -> GatewayConfig {
    let mut config = with_keys(mock);
    config.client_auth.as_mut().unwrap().keys[0].limits = Some(limits);
    config
}

async fn send(
    gw: &Gateway,
    key: &str,
    path: &str,
    body: &str,
) -> http::Response<hyper::body::Incoming> {
    let request = Request::post(gw.url(path))
        .header("authorization", key)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    gw.send(request).await
}

async fn json(response: http::Response<hyper::body::Incoming>) -> Value {
    serde_json::from_slice(&body(response).await).unwrap()
}

const CHAT: &str = "/v1/chat/completions";

#[tokio::test(start_paused = true)]
async fn requests_per_minute_admit_exactly_the_limit() {
    let mock = MockProvider::start().await.unwrap();
    let limits = Limits {
        rpm: Some(3),
        ..Limits::default()
    };
    let gw = common::serve(limited(&mock, limits), None, std::future::pending()).await;
    let request = common::chat("mock-model");
    for remaining in ["2", "1", "0"] {
        let response = send(&gw, TEAM_A, CHAT, &request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "3");
        assert_eq!(
            header(&response, "x-ratelimit-remaining-requests"),
            remaining
        );
        body(response).await;
    }
    let refused = send(&gw, TEAM_A, CHAT, &request).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // A request comes back every 20 s at 3 a minute.
    assert_eq!(header(&refused, "retry-after"), "20");
    let error = json(refused).await;
    assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 requests per minute")
    );
    assert_eq!(mock.requests().len(), 3, "the refused one was not sent");
    // Team B has no limits: unaffected, and told nothing of limits.
    let other = send(&gw, TEAM_B, CHAT, &request).await;
    assert_eq!(other.status(), StatusCode::OK);
    assert!(other.headers().get("x-ratelimit-limit-requests").is_none());
    // `/limits` says where each limited key stands (team B has no limits: not listed).
    let page = Request::get(gw.url("/limits"))
        .header("authorization", TEAM_B)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let page = json(gw.send(page).await).await;
    assert_eq!(
        page["limits"],
        json!([{"client": "team-a", "requests": {"limit": 3, "remaining": 0, "reset_seconds": 60.0}}])
    );
    // Twenty seconds on, one more.
    tokio::time::advance(std::time::Duration::from_secs(20)).await;
    assert_eq!(
        send(&gw, TEAM_A, CHAT, &request).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn tokens_per_minute_are_reserved_and_settled_from_the_usage() {
    let mock = MockProvider::start().await.unwrap();
    let request =
        r#"{"model":"mock-model","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;
    // The estimate: the body at 4 bytes a token, and its 50 tokens of output.
    let estimate = request.len() as u64 / 4 + 50;
    let limits = Limits {
        tpm: Some(estimate + 40),
        ..Limits::default()
    };
    let gw = common::serve(limited(&mock, limits), None, std::future::pending()).await;
    // Each answer uses 15 tokens (the mock's 9 in, 6 out): what was reserved beyond them is
    // given back once it has ended.
    let mut left = estimate + 40;
    let mut admitted = 0;
    loop {
        let response = send(&gw, TEAM_A, CHAT, request).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let error = json(response).await;
            assert!(
                error["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("tokens per minute")
            );
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "x-ratelimit-remaining-tokens"),
            (left - estimate).to_string()
        );
        body(response).await;
        left -= 15;
        admitted += 1;
    }
    assert!(
        left < estimate,
        "refused only when the estimate no longer fits: {left}"
    );
    assert_eq!(mock.requests().len(), admitted);
    assert!(admitted >= 2, "settling gave back what was not used");
}

#[tokio::test]
async fn a_budget_admits_no_request_past_it() {
    let mock = MockProvider::start().await.unwrap();
    let request =
        r#"{"model":"mock-model","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut config = limited(
        &mock,
        Limits {
            budget: Some(Budget {
                usd: 0.5,
                per: Period::Day,
            }),
            ..Limits::default()
        },
    );
    // A cent a token, in and out.
    config.upstream.prices =
        serde_json::from_value(json!({"mock-model": {"input": 10000, "output": 10000}})).unwrap();
    let gw = common::serve(config, None, std::future::pending()).await;
    // Each request reserves its estimate and spends its usage: 15 tokens, $0.15.
    let estimate = (request.len() / 4 + 5) as f64 * 0.01;
    let mut spent = 0.0;
    let mut admitted = 0;
    loop {
        let response = send(&gw, TEAM_A, CHAT, request).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(header(&response, "retry-after").parse::<u64>().unwrap() <= 86_400);
            let error = json(response).await;
            assert_eq!(error["error"]["code"], "insufficient_quota", "{error}");
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        body(response).await;
        spent += 0.15;
        admitted += 1;
    }
    assert!(spent <= 0.5 + 1e-9, "never past the budget: {spent}");
    assert!(
        spent + estimate > 0.5,
        "refused only when the estimate no longer fits"
    );
    assert_eq!(mock.requests().len(), admitted);
}

#[tokio::test]
async fn a_model_the_key_may_not_use_is_refused_naming_it() {
    let mock = MockProvider::start().await.unwrap();
    let limits = Limits {
        models: Some(vec!["mock-model".into()]),
        ..Limits::default()
    };
    let gw = common::serve(limited(&mock, limits), None, std::future::pending()).await;
    let refused = send(&gw, TEAM_A, CHAT, &common::chat("gpt-4o")).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let error = json(refused).await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`gpt-4o`"),
        "{error}"
    );
    let unnamed = send(&gw, TEAM_A, CHAT, r#"{"messages":[]}"#).await;
    assert_eq!(unnamed.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        send(&gw, TEAM_A, CHAT, &common::chat("mock-model"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(mock.requests().len(), 1);
    // Gemini's own API names the model in the path: held to the same list.
    let gemini = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let other = send(&gw, TEAM_A, "/v1/models/gemini-pro:generateContent", gemini).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    assert!(
        json(other).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`gemini-pro`")
    );
    let allowed = send(&gw, TEAM_A, "/v1/models/mock-model:generateContent", gemini).await;
    assert_ne!(allowed.status(), StatusCode::FORBIDDEN);
    body(allowed).await;
    assert_eq!(
        mock.requests().len(),
        2,
        "only the allowed model's was sent"
    );
}

#[tokio::test(start_paused = true)]
async fn an_anthropic_client_is_refused_in_anthropic_s_shape() {
    let mock = MockProvider::start().await.unwrap();
    let limits = Limits {
        rpm: Some(1),
        ..Limits::default()
    };
    let gw = common::serve(limited(&mock, limits), None, std::future::pending()).await;
    let ask =
        r#"{"model":"mock-model","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        send(&gw, TEAM_A, "/v1/messages", ask).await.status(),
        StatusCode::OK
    );
    let refused = send(&gw, TEAM_A, "/v1/messages", ask).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(json(refused).await["error"]["type"], "rate_limit_error");
}

#[test]
fn limits_are_checked_at_load() {
    let mock_url = "http://127.0.0.1:1/v1";
    let text = |limits: &str, usage: bool| {
        format!(
            "usage: {usage}\nclient_auth: {{ keys: [ {{ name: a, key: gw-key-a-0123456789abcdef, limits: {limits} }} ] }}\nendpoints: [{{ id: e, base_url: '{mock_url}' }}]"
        )
    };
    let path = std::env::temp_dir().join(format!("llm-tower-limits-{}.yaml", std::process::id()));
    let load = |text: String| {
        std::fs::write(&path, text).unwrap();
        GatewayConfig::from_path(&path).map(|_| ())
    };
    assert!(
        load(text(
            "{ rpm: 600, tpm: 100000, budget: { usd: 5, per: month } }",
            true
        ))
        .is_ok()
    );
    for (limits, usage, says) in [
        ("{ rpm: 0 }", true, "client_auth.keys[0].limits.rpm"),
        (
            "{ budget: { usd: -1, per: day } }",
            true,
            "client_auth.keys[0].limits.budget.usd",
        ),
        ("{ budget: { usd: 5, per: week } }", true, "week"),
        ("{ rpn: 5 }", true, "rpn"),
        ("{ tpm: 1000 }", false, "usage"),
    ] {
        let err = load(text(limits, usage)).unwrap_err().to_string();
        assert!(err.contains(says), "{limits}: {err}");
    }
    std::fs::remove_file(&path).unwrap();
}

/// A request that gets no answer (its only deployment refuses connections) gives back the
/// tokens it reserved: only the request itself is counted.
#[tokio::test(start_paused = true)]
async fn a_request_without_an_answer_gives_back_its_tokens() {
    let mock = MockProvider::start().await.unwrap();
    let mut config = limited(
        &mock,
        Limits {
            rpm: Some(10),
            tpm: Some(10_000),
            ..Limits::default()
        },
    );
    config.upstream = llm_tower::Config::with_endpoints(vec![common::endpoint(
        "down",
        common::refusing_base_url(),
        0,
    )]);
    let gw = common::serve(config, None, std::future::pending()).await;
    let failed = send(&gw, TEAM_A, CHAT, &common::chat("mock-model")).await;
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    body(failed).await;
    let page = Request::get(gw.url("/limits"))
        .header("authorization", TEAM_A)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let page = json(gw.send(page).await).await;
    assert_eq!(page["limits"][0]["tokens"]["remaining"], 10_000, "{page}");
    assert_eq!(page["limits"][0]["requests"]["remaining"], 9, "{page}");
}

/// A stream its client abandons after the first chunk keeps the tokens it delivered counted:
/// the reservation is settled against what was read, not given back whole.
#[tokio::test(start_paused = true)]
async fn an_abandoned_stream_keeps_what_it_delivered_counted() {
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use tower::ServiceExt;

    let mock = MockProvider::start().await.unwrap();
    mock.push(llm_tower_mock::Behavior::Stream {
        chunks: 5,
        interval: std::time::Duration::from_secs(1),
    });
    let limits = Limits {
        tpm: Some(100_000),
        ..Limits::default()
    };
    let limiter = Arc::new(llm_tower::limits::Limiter::default());
    let table = llm_tower::limits::LimitsTable::new([("team-a".into(), limits.clone())], None);
    let service = llm_tower::Upstream::from_config(&common::only(&mock))
        .unwrap()
        .usage(true)
        .limits(table)
        .limiter(limiter.clone())
        .build()
        .unwrap();
    let ask = r#"{"model":"mock-model","stream":true,"max_tokens":20000,"messages":[]}"#;
    let mut request = Request::post(format!("{}/chat/completions", mock.base_url()))
        .body(Full::new(Bytes::from(ask)))
        .unwrap();
    request
        .extensions_mut()
        .insert(llm_tower::Caller::new("team-a"));
    let response = service.oneshot(request).await.unwrap();
    let reserved = ask.len() as u64 / 4 + 20_000;
    let during = limiter
        .standing("team-a", &limits)
        .await
        .tokens
        .unwrap()
        .remaining;
    assert_eq!(during, 100_000 - reserved);
    let mut stream = response.into_body();
    stream.frame().await.unwrap().unwrap();
    drop(stream);
    // "Hello" delivered: 2 tokens, and the request's own, estimated; the rest given back.
    let after = limiter
        .standing("team-a", &limits)
        .await
        .tokens
        .unwrap()
        .remaining;
    assert_eq!(after, 100_000 - (ask.len() as u64 / 4 + 2));
}
