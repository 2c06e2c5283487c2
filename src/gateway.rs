//! The ready-made gateway: an axum router that forwards everything under a mount path through
//! the stack, with admin routes, request ids, tracing and a body limit.
//!
//! `cargo run --release --example gateway` runs it; with no arguments it serves [`demo`].
//!
//! | route | what |
//! |---|---|
//! | `<mount>/...` (default `/v1/...`) | forwarded: the mount prefix is replaced by each endpoint's `base_url` |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /upstreams` | the health registry snapshot as JSON |
//! | `GET /metrics` | Prometheus text (when a recorder handle is given) |

use std::future::Future;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, PROXY_AUTHORIZATION};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use llm_tower_core::{
    Config, ConfigError, EndpointConfig, Error, ExponentialBackoff, RetryPolicy, Secret,
    read_document,
};
use llm_tower_fallback::HealthRegistry;
use llm_tower_mock::{Behavior, MockProvider};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::ServiceBuilderExt;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::{Upstream, record_health_metrics};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default mount path.
pub const DEFAULT_MOUNT: &str = "/v1";

/// The gateway's configuration: the upstream [`Config`] plus `listen` and `mount`.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    /// Where to listen (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Path prefix that is forwarded (default `/v1`); replaced by each endpoint's `base_url`.
    pub mount: String,
    /// The upstream configuration.
    pub upstream: Config,
}

impl GatewayConfig {
    /// Defaults for `listen` and `mount` around an upstream configuration.
    pub fn new(upstream: Config) -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            mount: DEFAULT_MOUNT.to_owned(),
            upstream,
        }
    }

    /// Reads a YAML or TOML file (the upstream schema plus optional `listen` and `mount`).
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`], naming the field.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let mut document = read_document(path.as_ref())?;
        let mut take = |key: &str| -> Result<Option<String>, ConfigError> {
            match document.as_object_mut().and_then(|map| map.remove(key)) {
                None => Ok(None),
                Some(serde_json::Value::String(text)) => Ok(Some(text)),
                Some(other) => Err(ConfigError::Invalid {
                    field: key.into(),
                    message: format!("expected a string, found {other}"),
                }),
            }
        };
        let listen = take("listen")?;
        let mount = take("mount")?;
        let mut config = Self::new(Config::from_value(document)?);
        if let Some(listen) = listen {
            config.set_listen(&listen)?;
        }
        if let Some(mount) = mount {
            config.mount = mount;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets `listen` from text such as `127.0.0.1:8080`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for `listen` when it is not `IP:PORT`.
    pub fn set_listen(&mut self, listen: &str) -> Result<(), ConfigError> {
        self.listen = listen.parse().map_err(|_| ConfigError::Invalid {
            field: "listen".into(),
            message: format!("`{listen}` is not an address such as 127.0.0.1:8080"),
        })?;
        Ok(())
    }

    /// Checks `mount` and the upstream configuration.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.mount.starts_with('/') || self.mount.contains(['?', '#', '{', '}', '*']) {
            return Err(ConfigError::Invalid {
                field: "mount".into(),
                message: format!("`{}` must be a plain path starting with `/`", self.mount),
            });
        }
        self.upstream.validate()
    }
}

/// Builds the gateway router and returns it with the health registry it reports to.
/// `metrics` is the handle of an installed Prometheus recorder, for `GET /metrics`.
///
/// # Errors
///
/// Any configuration error.
pub fn router(
    config: &GatewayConfig,
    metrics: Option<PrometheusHandle>,
) -> Result<(Router, HealthRegistry), ConfigError> {
    config.validate()?;
    let upstream = Upstream::from_config(&config.upstream)?
        .response_headers(true)
        .metrics(metrics.is_some())
        .access_log(true);
    let registry = upstream.health().clone();
    let service = upstream.build()?;

    let snapshot_registry = registry.clone();
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
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
    let mount = config.mount.trim_end_matches('/');
    router = if mount.is_empty() {
        router.fallback_service(service)
    } else {
        router.nest_service(mount, service)
    };

    let sensitive: [HeaderName; 6] = [
        AUTHORIZATION,
        PROXY_AUTHORIZATION,
        COOKIE,
        HeaderName::from_static("x-api-key"),
        HeaderName::from_static("api-key"),
        HeaderName::from_static("x-goog-api-key"),
    ];
    let max_body_bytes = config.upstream.max_body_bytes;
    let middleware = ServiceBuilder::new()
        .sensitive_request_headers(sensitive.into())
        .set_x_request_id(SequentialRequestId::new())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &http::Request<Body>| {
                    // Method and path only: a query string may carry a client's `?key=`.
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = request.uri().path(),
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .propagate_x_request_id()
        .layer(RequestBodyLimitLayer::new(max_body_bytes));
    // tower-http answers a declared length over the limit itself, in plain text; clients of
    // an OpenAI-compatible API expect the JSON error shape.
    let json_413 = axum::middleware::map_response(move |response: Response<Body>| async move {
        let plain = response
            .headers()
            .get(CONTENT_TYPE)
            .is_none_or(|v| !v.as_bytes().starts_with(b"application/json"));
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE && plain {
            Error::body_too_large(max_body_bytes).to_response()
        } else {
            response
        }
    });
    Ok((router.layer(middleware).layer(json_413), registry))
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

/// `x-request-id` values: a random per-process prefix and a counter. Unique and cheap: no
/// system call per request, unlike a fresh random UUID.
#[derive(Clone, Debug)]
struct SequentialRequestId {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl SequentialRequestId {
    fn new() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Self {
            prefix: format!("{seed:016x}").into(),
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

fn json_response(value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    Response::builder()
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Body::from(body))
        .expect("valid response")
}

/// Serves `router` on `listener` until `shutdown` completes, then lets in-flight requests
/// (streams included) finish.
///
/// # Errors
///
/// An I/O error from the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Responses are written whole; Nagle's algorithm would only hold them back.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The self-contained demo: two mock providers on loopback and a configuration in front of
/// them. Keep the returned providers alive while the gateway runs.
#[derive(Debug)]
pub struct Demo {
    /// Fails now and then: 503 (retried) and 429 with `Retry-After: 3` (cooled down).
    pub primary: MockProvider,
    /// Always healthy, lower priority.
    pub backup: MockProvider,
    /// The gateway configuration pointing at them.
    pub config: GatewayConfig,
}

/// Starts the demo providers and returns the configuration for a gateway on `listen`.
///
/// # Errors
///
/// When a mock provider cannot bind a loopback port.
pub async fn demo(listen: SocketAddr) -> std::io::Result<Demo> {
    let primary = MockProvider::start().await?;
    let backup = MockProvider::start().await?;
    let mut cycle = vec![Behavior::Reply; 10];
    cycle[2] = Behavior::status(503);
    cycle[6] = Behavior::retry_after(429, "3");
    primary.set_cycle(cycle);

    let endpoint = |id: &str, base_url: String, priority: u32| EndpointConfig {
        priority,
        health_check_interval: Duration::from_secs(2),
        api_key: Some(Secret::new(format!("sk-demo-{id}"))),
        retry_policy: RetryPolicy::ExponentialBackoff(ExponentialBackoff {
            times: 1,
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(500),
            multiplier: 2.0,
        }),
        ..EndpointConfig::new(id, base_url)
    };
    let upstream = Config::with_endpoints(vec![
        endpoint("primary", primary.base_url(), 0),
        endpoint("backup", backup.base_url(), 1),
    ]);
    let mut config = GatewayConfig::new(upstream);
    config.listen = listen;
    Ok(Demo {
        primary,
        backup,
        config,
    })
}
