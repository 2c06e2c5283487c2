//! Helpers shared by the balancer tests; the scripted upstream is
//! `llm_tower_mock::scripted::ScriptedUpstream`.
#![allow(dead_code)] // each test binary uses a part

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use llm_tower_core::{BoxError, Endpoint, EndpointBuilder, Error};
use llm_tower_fallback::{Fallback, FallbackBuilder, FallbackLayer, HealthRegistry};
use llm_tower_health::Status;
use llm_tower_mock::scripted::ScriptedUpstream;
use tower::{Layer, ServiceExt};

/// An endpoint `id` at `https://{id}.example/v1`.
pub(crate) fn ep(id: &str) -> Endpoint {
    with(id, |b| b)
}

/// Like [`ep`], configured by `f`.
pub(crate) fn with(id: &str, f: impl FnOnce(EndpointBuilder) -> EndpointBuilder) -> Endpoint {
    f(Endpoint::builder(id, format!("https://{id}.example/v1")))
        .build()
        .unwrap()
}

/// A balancer over a scripted upstream, with its registry.
pub(crate) struct Stack {
    pub(crate) upstream: ScriptedUpstream,
    pub(crate) registry: HealthRegistry,
    pub(crate) service: Fallback<ScriptedUpstream>,
}

impl Stack {
    pub(crate) fn new(endpoints: Vec<Endpoint>) -> Self {
        Self::with(endpoints, |b| b)
    }

    pub(crate) fn with(
        endpoints: Vec<Endpoint>,
        f: impl FnOnce(FallbackBuilder) -> FallbackBuilder,
    ) -> Self {
        Self::build(endpoints, f, false)
    }

    /// Like [`Stack::with`], with the health checker started: checks go to the same scripted
    /// upstream (as `GET …/models`, unless an endpoint's check says otherwise).
    pub(crate) fn checked(
        endpoints: Vec<Endpoint>,
        f: impl FnOnce(FallbackBuilder) -> FallbackBuilder,
    ) -> Self {
        Self::build(endpoints, f, true)
    }

    fn build(
        endpoints: Vec<Endpoint>,
        f: impl FnOnce(FallbackBuilder) -> FallbackBuilder,
        checks: bool,
    ) -> Self {
        let registry = HealthRegistry::new();
        let layer = f(FallbackLayer::builder(endpoints))
            .build(registry.clone())
            .unwrap();
        let upstream = ScriptedUpstream::new();
        if checks {
            assert!(layer.start_health_checks(upstream.clone()).unwrap());
        }
        Self {
            service: layer.layer(upstream.clone()),
            upstream,
            registry,
        }
    }

    pub(crate) async fn send(&self) -> Result<Response<Bytes>, BoxError> {
        self.send_request(
            Request::post("/chat/completions")
                .body(String::from("{\"q\":1}"))
                .unwrap(),
        )
        .await
    }

    /// Sends `request`; the response body is the upstream's (`{endpoint}:{status}`).
    pub(crate) async fn send_request(
        &self,
        request: Request<String>,
    ) -> Result<Response<Bytes>, BoxError> {
        let response = self.service.clone().oneshot(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }

    pub(crate) async fn ok(&self) -> Response<Bytes> {
        self.send().await.expect("a response")
    }

    pub(crate) fn status(&self, id: &str) -> Status {
        self.registry.get(id).unwrap().status
    }
}

pub(crate) fn error_of(err: &BoxError) -> &Error {
    err.downcast_ref::<Error>().expect("an llm-tower Error")
}
