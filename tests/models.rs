//! Model-aware routing through the gateway, over loopback against llm-tower-mock: requests
//! reach only deployments of their model, aliases change only the bytes of the `model` value,
//! unknown and missing models are refused, health is kept per deployment, model fallback
//! chains, streaming through an alias, and `GET /v1/models`.

mod common;

use bytes::Bytes;
use common::{CHAT, body, chat, endpoint, error_json, header, models_seen, serving, start};
use http::{Request, StatusCode};
use http_body_util::Full;
use llm_tower::{Config, ModelFallbacks};
use llm_tower_mock::{Behavior, MockProvider};
use serde_json::Value;

fn status(code: u16) -> Behavior {
    Behavior::Status {
        status: code,
        retry_after: None,
        headers: Vec::new(),
        body: None,
    }
}

#[tokio::test(start_paused = true)]
async fn requests_reach_only_deployments_of_their_model() {
    let (a, b, c, d) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let gw = start(Config::with_endpoints(vec![
        serving("openai", &a, 0, &[("gpt-4o", "gpt-4o")]),
        serving("azure", &b, 0, &[("gpt-4o", "gpt4o-prod")]),
        serving("mini-1", &c, 0, &[("gpt-4o-mini", "gpt-4o-mini")]),
        serving("mini-2", &d, 0, &[("gpt-4o-mini", "gpt-4o-mini")]),
    ]))
    .await;

    for _ in 0..4 {
        for (model, allowed) in [
            ("gpt-4o", ["openai", "azure"]),
            ("gpt-4o-mini", ["mini-1", "mini-2"]),
        ] {
            let response = gw.post(&chat(model)).await;
            assert_eq!(response.status(), StatusCode::OK);
            let answered = header(&response, "x-llm-tower-endpoint").to_owned();
            assert!(
                allowed.contains(&answered.as_str()),
                "{model} answered by {answered}"
            );
            assert_eq!(
                header(&response, "x-llm-tower-model"),
                "",
                "no model fallback"
            );
        }
    }
    // Round robin within each model's deployments, and nothing crossed over.
    assert_eq!(models_seen(&a), ["gpt-4o"; 2]);
    assert_eq!(models_seen(&b), ["gpt4o-prod"; 2]);
    assert_eq!(models_seen(&c), ["gpt-4o-mini"; 2]);
    assert_eq!(models_seen(&d), ["gpt-4o-mini"; 2]);
}

#[tokio::test(start_paused = true)]
async fn anthropic_messages_bodies_are_routed_the_same_way() {
    let (sonnet, opus) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    // Anthropic endpoints: a messages request goes to them as it came.
    let anthropic = |endpoint: llm_tower::EndpointConfig| llm_tower::EndpointConfig {
        provider: llm_tower::ProviderName::Anthropic,
        ..endpoint
    };
    let gw = start(Config::with_endpoints(vec![
        anthropic(serving(
            "sonnet",
            &sonnet,
            0,
            &[("claude-sonnet", "claude-sonnet-4-20250514")],
        )),
        anthropic(serving(
            "opus",
            &opus,
            0,
            &[("claude-opus", "claude-opus-4-20250514")],
        )),
    ]))
    .await;
    let request = |model: &str| {
        Request::post(gw.url("/v1/messages"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!(
                r#"{{"max_tokens":64,"messages":[{{"role":"user","content":"hi"}}],"model":"{model}"}}"#
            ))))
            .unwrap()
    };
    gw.send(request("claude-opus")).await;
    gw.send(request("claude-sonnet")).await;
    assert_eq!(models_seen(&opus), ["claude-opus-4-20250514"]);
    assert_eq!(models_seen(&sonnet), ["claude-sonnet-4-20250514"]);
    assert_eq!(opus.requests()[0].uri.path(), "/v1/messages");
}

#[tokio::test(start_paused = true)]
async fn an_alias_changes_only_the_bytes_of_the_model_value() {
    let azure = MockProvider::start().await.unwrap();
    let gw = start(Config::with_endpoints(vec![serving(
        "azure",
        &azure,
        0,
        &[("gpt-4o", "gpt4o-\"prod\"")],
    )]))
    .await;
    // Odd spacing, key order, a nested `model` and the word in content: only the top-level
    // value changes.
    let original = "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"\\\"model\\\": \\\"gpt-4o\\\"\",\"model\":\"gpt-4o\"} ],\n\t\"model\" :  \"gpt-4o\" , \"temperature\":0.2 }";
    let response = gw.post(original).await;
    assert_eq!(response.status(), StatusCode::OK);

    let seen = &azure.requests()[0];
    let at = original.rfind("\"gpt-4o\"").unwrap();
    let expected = format!(
        "{}{}{}",
        &original[..at],
        r#""gpt4o-\"prod\"""#,
        &original[at + "\"gpt-4o\"".len()..]
    );
    assert_eq!(seen.body, expected.as_bytes(), "byte for byte");
    assert_eq!(
        seen.header("content-length"),
        Some(expected.len().to_string().as_str())
    );
    assert_eq!(seen.json().unwrap()["model"], "gpt4o-\"prod\"");
}

#[tokio::test(start_paused = true)]
async fn unknown_missing_and_repeated_models_are_refused_before_any_upstream() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(Config::with_endpoints(vec![serving(
        "openai",
        &mock,
        0,
        &[("gpt-4o", "gpt-4o"), ("gpt-4o-mini", "gpt-4o-mini")],
    )]))
    .await;

    let response = gw.post(&chat("claude-3")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let error = error_json(response).await;
    assert_eq!(error["error"]["code"], "model_not_found");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("`claude-3`"), "{message}");
    assert!(message.contains("gpt-4o, gpt-4o-mini"), "{message}");

    // A long name is quoted shortened.
    let long = "x".repeat(5000);
    let message = error_json(gw.post(&chat(&long)).await).await["error"]["message"].to_string();
    assert!(message.len() < 400 && message.contains("xxx…"), "{message}");

    for body in [r#"{"messages":[]}"#, "not json", r#"{"model":null}"#] {
        let response = gw.post(body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let message = error_json(response).await["error"]["message"].to_string();
        assert!(message.contains("`model` is required"), "{message}");
    }

    let response = gw.post(r#"{"model":"gpt-4o","model":"gpt-4o-mini"}"#).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    assert!(mock.requests().is_empty(), "nothing reached the upstream");
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_model_go_to_endpoints_that_serve_any() {
    let (listed, any) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let gw = start(Config::with_endpoints(vec![
        serving("listed", &listed, 0, &[("gpt-4o", "gpt-4o-2024-08-06")]),
        endpoint("any", any.base_url(), 0),
    ]))
    .await;

    for _ in 0..3 {
        let response = gw.post(r#"{"messages":[]}"#).await;
        assert_eq!(header(&response, "x-llm-tower-endpoint"), "any");
    }
    // A model nobody lists goes to the endpoint that serves any model, as it was sent.
    let response = gw.post(&chat("llama-3")).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "any");
    // A listed model goes to both: the listed endpoint gets its own name for it.
    for _ in 0..2 {
        assert_eq!(gw.post(&chat("gpt-4o")).await.status(), StatusCode::OK);
    }
    assert_eq!(models_seen(&listed), ["gpt-4o-2024-08-06"]);
    assert_eq!(models_seen(&any), ["-", "-", "-", "llama-3", "gpt-4o"]);
}

#[tokio::test(start_paused = true)]
async fn health_is_kept_per_deployment_and_a_rejected_key_cools_them_all() {
    let (shared, backup) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let both = [("gpt-4o", "gpt-4o"), ("gpt-4o-mini", "gpt-4o-mini")];
    let gw = start(Config::with_endpoints(vec![
        serving("shared", &shared, 0, &both),
        serving("backup", &backup, 1, &both),
    ]))
    .await;

    // A 503 storm on gpt-4o (both tries): that deployment is ejected, its sibling is not.
    shared.push(status(503));
    shared.push(status(503));
    let response = gw.post(&chat("gpt-4o")).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "backup/gpt-4o");
    assert_eq!(gw.upstream("shared/gpt-4o").await["status"], "ejected");
    assert_eq!(gw.upstream("shared/gpt-4o-mini").await["status"], "healthy");
    let response = gw.post(&chat("gpt-4o-mini")).await;
    assert_eq!(
        header(&response, "x-llm-tower-endpoint"),
        "shared/gpt-4o-mini"
    );

    // Once its cooldown is over, gpt-4o is probed and restored.
    tokio::time::advance(std::time::Duration::from_secs(120)).await;
    let response = gw.post(&chat("gpt-4o")).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "shared/gpt-4o");
    assert_eq!(gw.upstream("shared/gpt-4o").await["status"], "healthy");

    // The endpoint rejects its key on a gpt-4o-mini request: every deployment of it cools
    // down (the key is shared); the backup's are untouched.
    shared.push(status(401));
    let response = gw.post(&chat("gpt-4o-mini")).await;
    assert_eq!(
        header(&response, "x-llm-tower-endpoint"),
        "backup/gpt-4o-mini"
    );
    for id in ["shared/gpt-4o", "shared/gpt-4o-mini"] {
        assert_eq!(gw.upstream(id).await["status"], "ejected", "{id}");
    }
    for id in ["backup/gpt-4o", "backup/gpt-4o-mini"] {
        assert_eq!(gw.upstream(id).await["status"], "healthy", "{id}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_model_chain_falls_back_to_the_next_model_with_its_name() {
    let (big, small) = (
        MockProvider::start().await.unwrap(),
        MockProvider::start().await.unwrap(),
    );
    let mut config = Config::with_endpoints(vec![
        serving("big", &big, 0, &[("gpt-4o", "gpt-4o")]),
        serving("small", &small, 0, &[("gpt-4o-mini", "mini-prod")]),
    ]);
    config.models = ModelFallbacks::new().chain("gpt-4o", ["gpt-4o-mini"]);
    let gw = start(config).await;

    big.push(status(503));
    big.push(status(503));
    let response = gw.post(&chat("gpt-4o")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "small");
    assert_eq!(header(&response, "x-llm-tower-model"), "gpt-4o-mini");
    assert_eq!(header(&response, "x-llm-tower-attempts"), "3");
    assert_eq!(models_seen(&big), ["gpt-4o", "gpt-4o"]);
    assert_eq!(models_seen(&small), ["mini-prod"]);

    // The big model is cooling down: the chain's model is tried first, not a deployment
    // that is probably still down.
    let response = gw.post(&chat("gpt-4o")).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "small");
    assert_eq!(big.requests().len(), 2);

    // A client error of the first model ends the request: no chain.
    tokio::time::advance(std::time::Duration::from_secs(120)).await;
    big.push(status(400));
    let response = gw.post(&chat("gpt-4o")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(small.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_chain_on_an_endpoint_that_serves_any_model_keeps_health_per_chained_model() {
    let account = MockProvider::start().await.unwrap();
    let mut config = Config::with_endpoints(vec![endpoint("openai", account.base_url(), 0)]);
    config.models = ModelFallbacks::new().chain("gpt-4o", ["gpt-4o-mini"]);
    let gw = start(config).await;

    account.push(status(503));
    account.push(status(503));
    let response = gw.post(&chat("gpt-4o")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-llm-tower-endpoint"),
        "openai/gpt-4o-mini"
    );
    assert_eq!(header(&response, "x-llm-tower-model"), "gpt-4o-mini");
    assert_eq!(models_seen(&account), ["gpt-4o", "gpt-4o", "gpt-4o-mini"]);
    assert_eq!(gw.upstream("openai/gpt-4o").await["status"], "ejected");
    assert_eq!(gw.upstream("openai/gpt-4o-mini").await["status"], "healthy");
    // A model no chain names goes to the endpoint's one deployment for everything else.
    let response = gw.post(&chat("o1")).await;
    assert_eq!(header(&response, "x-llm-tower-endpoint"), "openai");
    assert_eq!(gw.upstream("openai").await["status"], "healthy");
}

#[tokio::test(start_paused = true)]
async fn streams_pass_through_an_alias() {
    let azure = MockProvider::start().await.unwrap();
    let gw = start(Config::with_endpoints(vec![serving(
        "azure",
        &azure,
        0,
        &[("gpt-4o", "gpt4o-prod")],
    )]))
    .await;
    azure.push(Behavior::Stream {
        chunks: 3,
        interval: std::time::Duration::from_millis(10),
    });
    let response = gw
        .post(r#"{"model":"gpt-4o","stream":true,"messages":[]}"#)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let streamed = body(response).await;
    let text = String::from_utf8_lossy(&streamed);
    assert_eq!(text.matches("data: {").count(), 3, "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));
    assert_eq!(models_seen(&azure), ["gpt4o-prod"]);
}

#[tokio::test(start_paused = true)]
async fn the_models_route_answers_from_configuration() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(Config::with_endpoints(vec![
        serving("a", &mock, 0, &[("gpt-4o", "x"), ("o1", "o1")]),
        serving("b", &mock, 0, &[("gpt-4o", "y")]),
    ]))
    .await;
    let list = gw.json("/v1/models").await;
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-4o", "o1"]);
    for model in list["data"].as_array().unwrap() {
        assert_eq!(model["object"], "model");
        assert!(model["created"].as_u64().unwrap() > 0);
        assert_eq!(model["owned_by"], "llm-tower");
    }
    assert_eq!(gw.json("/v1/models/o1").await["id"], "o1");
    let response = gw
        .send(
            Request::get(gw.url("/v1/models/nope"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        error_json(response).await["error"]["code"],
        "model_not_found"
    );
    assert!(mock.requests().is_empty(), "answered by the gateway itself");
}

#[tokio::test(start_paused = true)]
async fn without_listed_models_the_models_route_goes_upstream() {
    let mock = MockProvider::start().await.unwrap();
    let gw = start(common::only(&mock)).await;
    let list: Value = gw.json("/v1/models").await;
    assert_eq!(list["object"], "list");
    assert_eq!(mock.requests()[0].uri.path(), "/v1/models");
    // And requests naming any model pass as before.
    assert_eq!(gw.post(CHAT).await.status(), StatusCode::OK);
}

#[test]
fn chains_that_cycle_or_name_unknown_models_are_rejected_at_load() {
    let config = |models: &str| {
        Config::from_yaml_str(&format!(
            "models: {models}\nendpoints:\n  - id: a\n    base_url: http://127.0.0.1:1/v1\n    models: [gpt-4o, gpt-4o-mini, o1]\n"
        ))
    };
    assert!(config("{gpt-4o: {fallback: [gpt-4o-mini, o1]}}").is_ok());
    let cycle = config("{gpt-4o: {fallback: [gpt-4o-mini]}, gpt-4o-mini: {fallback: [gpt-4o]}}")
        .unwrap_err()
        .to_string();
    assert!(cycle.contains("cycle"), "{cycle}");
    assert!(cycle.starts_with("models.gpt-4o"), "{cycle}");
    let unknown = config("{gpt-4o: {fallback: [claude]}}")
        .unwrap_err()
        .to_string();
    assert_eq!(
        unknown,
        "models.gpt-4o.fallback: no endpoint serves `claude`"
    );
    let typo = config("{gpt-4o: {fallbak: [o1]}}").unwrap_err().to_string();
    assert!(typo.contains("fallbak"), "{typo}");

    let endpoint = |models: &str| {
        Config::from_yaml_str(&format!(
            "endpoints:\n  - id: a\n    base_url: http://127.0.0.1:1/v1\n    models: {models}\n"
        ))
        .map_err(|e| e.to_string())
    };
    assert_eq!(
        endpoint("[gpt-4o, gpt-4o]").unwrap_err(),
        "endpoint `a`: models: `gpt-4o` is listed twice"
    );
    assert_eq!(
        endpoint("[\"\"]").unwrap_err(),
        "endpoint `a`: models: a model name is empty"
    );
    assert_eq!(
        endpoint("[\" gpt-4o\"]").unwrap_err(),
        "endpoint `a`: models: ` gpt-4o` has spaces around it"
    );
    assert!(endpoint("[]").unwrap_err().contains("lists no model"));
    assert!(endpoint("{gpt-4o: gpt4o-prod, o1: null}").is_ok());
    assert!(endpoint("gpt-4o").unwrap_err().contains("models"));
}
