//! The admin routes: `/healthz`, `/upstreams` (health as JSON) and `/metrics` (Prometheus).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};
use llm_tower::HealthRegistry;
use llm_tower::error_response::record_health_metrics;
use metrics_exporter_prometheus::PrometheusHandle;

/// `GET /healthz`: 200 while the process serves.
pub(crate) fn healthz() -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" }))
}

/// The admin routes over `registry`: `/upstreams`, and `/metrics` with a Prometheus handle.
pub(crate) fn routes(registry: &HealthRegistry, metrics: Option<PrometheusHandle>) -> Router {
    let snapshot_registry = registry.clone();
    let mut router = Router::new().route(
        "/upstreams",
        get(move || {
            let registry = snapshot_registry.clone();
            async move { json_response(&registry.snapshot()) }
        }),
    );
    if let Some(handle) = metrics {
        spawn_metrics_upkeep(handle.clone());
        let metrics_registry = registry.clone();
        router = router.route(
            "/metrics",
            get(move || {
                let registry = metrics_registry.clone();
                let handle = handle.clone();
                async move {
                    record_health_metrics(&registry);
                    handle.run_upkeep();
                    Response::builder()
                        .header(CONTENT_TYPE, "text/plain; version=0.0.4")
                        .body(Body::from(handle.render()))
                        .expect("valid response")
                }
            }),
        );
    }
    router
}

/// Histogram samples are kept until upkeep folds them into buckets; without it they pile up.
fn spawn_metrics_upkeep(handle: PrometheusHandle) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
}

pub(crate) fn json_response(value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    Response::builder()
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Body::from(body))
        .expect("valid response")
}
