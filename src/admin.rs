//! The admin routes: `/healthz`, `/upstreams` (health as JSON), `/ui` (the page that draws
//! `/upstreams` for the person on call), `/limits` (each client key against its limits) and
//! `/metrics` (Prometheus: the recorder's series, then the health of the deployments the
//! registry has now).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderValue, Response};
use llm_tower::HealthRegistry;
use llm_tower::health::metrics::render_health_metrics;
use llm_tower::health_store::{HealthStore, HealthStoreStatus};
use llm_tower::limits::store::{LimitsStore, LimitsStoreStatus};
use llm_tower::limits::{ClientStanding, Limiter, Limits};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::websocket::{DeploymentSockets, Sockets};

/// `GET /healthz`: 200 while the process serves.
pub(crate) fn healthz() -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" }))
}

/// The admin routes over `registry`: `/upstreams` (with the configuration's `generation`,
/// and the health store's status when there is one), and `/metrics` with a Prometheus
/// handle.
pub(crate) fn routes(
    registry: &HealthRegistry,
    metrics: Option<PrometheusHandle>,
    store: Option<Arc<HealthStore>>,
    generation: Generation,
    limited: Limited,
    sockets: Option<Arc<Sockets>>,
) -> Router {
    let snapshot_registry = registry.clone();
    let mut router = Router::new().route(
        "/upstreams",
        get(move || {
            let registry = snapshot_registry.clone();
            let health_store = store.as_ref().map(|store| store.status());
            let websocket = sockets.as_ref().map(|sockets| sockets.snapshot());
            async move {
                json_response(&Upstreams {
                    config: generation,
                    health_store,
                    websocket,
                    upstreams: registry.snapshot(),
                })
            }
        }),
    );
    router = router.route("/ui", get(|| async { ui_page() }));
    let limited = Arc::new(limited);
    router = router.route(
        "/limits",
        get(move || {
            let limited = limited.clone();
            async move { json_response(&limited.standings().await) }
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
                    handle.run_upkeep();
                    let mut text = handle.render();
                    if !text.is_empty() && !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str(&render_health_metrics(&registry));
                    Response::builder()
                        .header(CONTENT_TYPE, "text/plain; version=0.0.4")
                        .body(Body::from(text))
                        .expect("valid response")
                }
            }),
        );
    }
    router
}

/// The client keys with limits, and where their counts are.
pub(crate) struct Limited {
    pub(crate) clients: Vec<(Arc<str>, Arc<Limits>)>,
    pub(crate) limiter: Arc<Limiter>,
}

/// `GET /limits`: each client key with limits, its limits, and where it stands; and the
/// store's status when replicas share them.
#[derive(serde::Serialize)]
struct LimitsPage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<LimitsStoreStatus>,
    limits: Vec<KeyStanding<'a>>,
}

#[derive(serde::Serialize)]
struct KeyStanding<'a> {
    client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<&'a [llm_tower::ModelName]>,
    #[serde(flatten)]
    standing: ClientStanding,
}

impl Limited {
    /// Every key's standing, read at once (from Redis, with `limits_store`).
    async fn standings(&self) -> LimitsPage<'_> {
        let limits =
            futures_util::future::join_all(self.clients.iter().map(|(client, of)| async move {
                KeyStanding {
                    client,
                    models: of.models.as_deref(),
                    standing: self.limiter.standing(client, of).await,
                }
            }))
            .await;
        LimitsPage {
            store: self.limiter.store().map(LimitsStore::status),
            limits,
        }
    }
}

/// `GET /upstreams`: which configuration is in force, and the health of its deployments.
#[derive(serde::Serialize)]
#[allow(clippy::struct_field_names)] // the JSON's keys
struct Upstreams {
    config: Generation,
    /// Present with `health_store`.
    #[serde(skip_serializing_if = "Option::is_none")]
    health_store: Option<HealthStoreStatus>,
    /// Present with `websocket`: each deployment's sessions (opened, open, closed by code).
    #[serde(skip_serializing_if = "Option::is_none")]
    websocket: Option<BTreeMap<String, DeploymentSockets>>,
    upstreams: Vec<llm_tower::EndpointSnapshot>,
}

/// A configuration as loaded: its number (1 at start, one more for each reload that took
/// effect) and when it was loaded.
///
/// ```
/// use llm_tower_gateway::Generation;
///
/// let first = Generation::first();
/// assert_eq!(first.number, 1);
/// assert_eq!(first.next().number, 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Generation {
    /// 1 for the configuration the gateway started with.
    #[serde(rename = "generation")]
    pub number: u64,
    /// Seconds since the Unix epoch.
    #[serde(rename = "loaded_at_unix")]
    pub loaded_at: u64,
}

impl Generation {
    /// The configuration the gateway starts with, loaded now.
    pub fn first() -> Self {
        Self {
            number: 1,
            loaded_at: unix_now(),
        }
    }

    /// The one after this, loaded now.
    #[must_use]
    pub fn next(self) -> Self {
        Self {
            number: self.number + 1,
            loaded_at: unix_now(),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map_or(0, |since| since.as_secs())
}

/// The Prometheus recorder whose handle `/metrics` renders: every histogram in seconds (the
/// upstream latency) in the [`DURATION_BUCKETS`](llm_tower::llm_tower_core::DURATION_BUCKETS)
/// buckets, as `_bucket{le=..}`, `_sum` and `_count` series. Buckets, not the exporter's
/// default summaries: a histogram's buckets add up across replicas, where quantiles cannot,
/// and a sample costs a search of seventeen bounds where a summary's sketch costs several
/// times that.
///
/// ```
/// let recorder = llm_tower_gateway::prometheus_builder().build_recorder();
/// let handle = recorder.handle();
/// metrics::with_local_recorder(&recorder, || {
///     metrics::histogram!("llm_tower_upstream_latency_seconds").record(0.03);
/// });
/// handle.run_upkeep();
/// assert!(handle.render().contains(r#"llm_tower_upstream_latency_seconds_bucket{le="0.04"} 1"#));
/// ```
pub fn prometheus_builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &llm_tower::llm_tower_core::DURATION_BUCKETS,
        )
        .expect("the buckets are not empty")
}

/// Histogram samples are kept until upkeep folds them into buckets; without it they pile up.
/// One task for the process, however often the routes are rebuilt (each reload does).
fn spawn_metrics_upkeep(handle: PrometheusHandle) {
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if STARTED.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    {
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
}

/// The page, embedded in the binary: the gateway often runs without internet access.
const UI: &str = include_str!("ui.html");

/// `GET /ui`. The page runs its own inline script and fetches nothing but `/upstreams`: the
/// policy allows exactly that, and no framing.
fn ui_page() -> Response<Body> {
    Response::builder()
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .header(CACHE_CONTROL, "no-store")
        .header(
            CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        )
        .header(X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(REFERRER_POLICY, "no-referrer")
        .body(Body::from(UI))
        .expect("valid response")
}

pub(crate) fn json_response(value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    Response::builder()
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Body::from(body))
        .expect("valid response")
}
