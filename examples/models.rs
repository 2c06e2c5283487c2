//! Model-aware routing in the library, with typed values: two models over three deployments,
//! an alias, and a fallback chain.
//!
//! ```text
//! cargo run --example models
//! ```
//!
//! It starts three mock providers: "openai" serves gpt-4o and gpt-4o-mini, "azure" serves
//! gpt-4o under its deployment name `gpt4o-prod`, "vllm" serves Llama. Requests go to the
//! deployments of their body's `model`. Then both providers of gpt-4o fail, and the chain
//! `gpt-4o → llama-3.1-70b` answers from vLLM, with the body's `model` rewritten.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use llm_tower::{Attempts, Endpoint, ModelFallbacks, ModelRoute, Upstream};
use llm_tower_mock::{Behavior, MockProvider};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (openai, azure, vllm) = (
        MockProvider::start().await?,
        MockProvider::start().await?,
        MockProvider::start().await?,
    );
    let endpoints = vec![
        Endpoint::builder("openai", openai.base_url())
            .models(["gpt-4o", "gpt-4o-mini"])
            .build()?,
        Endpoint::builder("azure", azure.base_url())
            .models([ModelRoute::alias("gpt-4o", "gpt4o-prod")])
            .build()?,
        Endpoint::builder("vllm", vllm.base_url())
            .models([("llama-3.1-70b", "meta-llama/Llama-3.1-70B-Instruct")])
            .build()?,
    ];
    let upstream = Upstream::new(endpoints)
        .model_fallbacks(ModelFallbacks::new().chain("gpt-4o", ["llama-3.1-70b"]))
        .response_headers(true);
    let stack = upstream.build()?;

    let ask = |model: &str| {
        let body =
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        Request::post("/chat/completions")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request")
    };
    for model in [
        "gpt-4o",
        "gpt-4o",
        "gpt-4o-mini",
        "llama-3.1-70b",
        "claude-3",
    ] {
        let response = stack.clone().oneshot(ask(model)).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map_or("-", |v| v.to_str().unwrap_or("?"))
                .to_owned()
        };
        println!(
            "{model:>14} -> {} from {}",
            response.status(),
            header("x-llm-tower-endpoint")
        );
    }
    println!(
        "what the deployments were sent: azure {:?}, vllm {:?}",
        azure.requests()[0].json().map(|b| b["model"].clone()),
        vllm.requests()[0].json().map(|b| b["model"].clone()),
    );

    // Every gpt-4o deployment fails (each try): the chain moves on to Llama.
    let failing = Behavior::Status {
        status: 503,
        retry_after: None,
        headers: Vec::new(),
        body: None,
    };
    azure.set_default(failing.clone());
    openai.set_default(failing);
    let response = stack.clone().oneshot(ask("gpt-4o")).await?;
    let attempts = Attempts::of(response.extensions())
        .map(ToString::to_string)
        .unwrap_or_default();
    println!(
        "gpt-4o while its deployments fail -> {} with model {:?}; attempts: {attempts}",
        response.status(),
        response.headers().get("x-llm-tower-model"),
    );
    println!(
        "vllm was sent {:?}",
        vllm.requests()
            .last()
            .and_then(llm_tower_mock::RecordedRequest::json)
            .map(|b| b["model"].clone())
    );
    for deployment in upstream.health().snapshot() {
        println!("{:>20}: {:?}", deployment.id.to_string(), deployment.status);
    }
    Ok(())
}
