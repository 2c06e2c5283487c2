//! The gateway's router: everything under the mount path goes through the llm-tower stack;
//! beside it the admin routes, request ids, tracing and a body limit.

pub(crate) mod client_auth;
mod middleware;
mod request_id;
mod span;

use std::sync::Arc;

use axum::Router;
use llm_tower::health_store::HealthStore;
use llm_tower::{ConfigError, EndpointId, HealthRegistry, Upstream};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::GatewayConfig;
use crate::admin::{self, Generation};
use crate::browser::BrowserGuard;
use crate::models;
use crate::server::Direct;
use client_auth::{ClientKeyLayer, ClientKeys};
use middleware::Middleware;
pub(crate) use request_id::{REQUEST_ID, SequentialRequestId};
pub(crate) use span::request_span;

/// The gateway's routers, and the health registry they report.
///
/// ```
/// use llm_tower::{Config, EndpointConfig};
/// use llm_tower_gateway::{GatewayConfig, router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let upstream = Config::with_endpoints(vec![EndpointConfig::new("local", "http://127.0.0.1:11434/v1")]);
/// let mut config = GatewayConfig::new(upstream);
/// config.admin_listen = Some("127.0.0.1:9091".parse().unwrap());
/// let app = router(&config, None).unwrap();
/// assert!(app.admin.is_some());
/// # }
/// ```
#[derive(Debug)]
pub struct App {
    /// For `listen`: `/healthz`, everything under the mount path, and `/upstreams`, `/ui` and
    /// `/metrics` unless `admin_listen` is set (behind client authentication when it is on).
    pub main: Routes,
    /// For `admin_listen`, when set: `/healthz`, `/upstreams`, `/ui`, `/metrics`, without client
    /// authentication.
    pub admin: Option<Routes>,
    /// The health of every endpoint.
    pub health: HealthRegistry,
    /// The deployments the stack balances over (a reload forgets the health of the others).
    pub(crate) deployment_ids: Vec<EndpointId>,
    /// What outlives this configuration, for the next one.
    pub(crate) process: Process,
}

impl App {
    /// The store sharing health with other replicas, when `health_store` is set. It works
    /// as long as the app's routes (or a clone of them) are served.
    pub fn health_store(&self) -> Option<&HealthStore> {
        self.process.store.as_deref()
    }
}

/// What every configuration of one process shares: the metrics handle, the health registry
/// and the health store. A reload builds over it.
#[derive(Clone, Debug)]
pub(crate) struct Process {
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) registry: HealthRegistry,
    pub(crate) store: Option<Arc<HealthStore>>,
}

/// The main listener's routes: an axum [`Router`] that is complete on its own (serve it with
/// anything), and the proxied path for [`serve`](crate::serve) to take without routing.
///
/// ```
/// use llm_tower::{Config, EndpointConfig};
/// use llm_tower_gateway::{GatewayConfig, router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let upstream = Config::with_endpoints(vec![EndpointConfig::new("local", "http://127.0.0.1:11434/v1")]);
/// let app = router(&GatewayConfig::new(upstream), None).unwrap();
/// let router: axum::Router = app.main.into_router();
/// # let _ = router;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Routes {
    pub(crate) router: Router,
    pub(crate) direct: Option<Direct>,
    /// What the listener allows of browsers (`Host`, `Origin`, CORS).
    pub(crate) browsers: BrowserGuard,
}

impl Routes {
    /// The axum router alone.
    pub fn into_router(self) -> Router {
        self.router
    }
}

impl From<Router> for Routes {
    fn from(router: Router) -> Self {
        Self {
            router,
            direct: None,
            browsers: BrowserGuard::default(),
        }
    }
}

/// Builds the gateway's routers. `metrics` is the handle of an installed Prometheus recorder,
/// for `GET /metrics`. With `health_store`, starts sharing health with the other replicas
/// (in the background: Redis being down does not fail this).
///
/// ```
/// use llm_tower::{Config, EndpointConfig};
/// use llm_tower_gateway::{GatewayConfig, router};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let upstream = Config::with_endpoints(vec![EndpointConfig::new("local", "http://127.0.0.1:11434/v1")]);
/// let app = router(&GatewayConfig::new(upstream), None).unwrap();
/// assert_eq!(app.health.snapshot().len(), 1);
/// assert!(app.admin.is_none());
/// # }
/// ```
///
/// # Errors
///
/// Any configuration error; with `health_store`, also a call outside a Tokio runtime.
pub fn router(
    config: &GatewayConfig,
    metrics: Option<PrometheusHandle>,
) -> Result<App, ConfigError> {
    config.validate()?;
    let registry = HealthRegistry::new();
    let store = match &config.upstream.health_store {
        Some(settings) => Some(Arc::new(HealthStore::start(settings, &registry)?)),
        None => None,
    };
    let process = Process {
        metrics,
        registry,
        store,
    };
    let app = build(config, &process, Generation::first())?;
    if let Some(store) = &process.store {
        // The store may have read the cooldowns in force before the stack made its
        // deployments: read them again now that they exist.
        store.refresh();
    }
    Ok(app)
}

/// [`router`] within an existing process (a reload keeps the health of every deployment
/// that still exists), for configuration `generation`.
pub(crate) fn build(
    config: &GatewayConfig,
    process: &Process,
    generation: Generation,
) -> Result<App, ConfigError> {
    config.validate()?;
    let registry = process.registry.clone();
    let metrics = process.metrics.clone();
    let upstream = Upstream::from_config(&config.upstream)?
        .registry(registry.clone())
        .response_headers(true)
        .metrics(metrics.is_some())
        .access_log(true);
    let service = upstream.build()?;
    let deployment_ids = service.get_ref().deployment_ids().cloned().collect();
    let keys = config.client_auth.as_ref().map(|auth| {
        for name in auth.weak_keys() {
            tracing::warn!(
                client = name,
                "the client key of {name} has few different characters and may be easy to \
                 guess: use a long random key (openssl rand -hex 24)"
            );
        }
        ClientKeys::new(auth)
    });
    let ids = SequentialRequestId::new();

    let admin_routes = admin::routes(&registry, metrics, process.store.clone(), generation);
    let browsers = |listen, client_keys| {
        BrowserGuard::new(
            listen,
            client_keys,
            &config.allowed_hosts,
            config.cors.as_ref(),
        )
    };
    let (mut protected, admin) = match config.admin_listen {
        Some(listen) => (
            Router::new(),
            Some(Routes {
                router: admin::healthz().merge(admin_routes),
                direct: None,
                browsers: browsers(listen, false),
            }),
        ),
        None => (admin_routes, None),
    };
    // The paths the router serves itself, for the direct path to leave to it.
    let mut others = vec!["/healthz"];
    if config.admin_listen.is_none() {
        others.extend(["/upstreams", "/ui", "/metrics"]);
    }
    // With models listed, `{mount}/models` is answered from the configuration.
    let models = models::listed(&config.upstream.build_endpoints()?);
    let direct = Direct::new(
        &config.mount,
        others,
        !models.is_empty(),
        service.clone(),
        keys.clone(),
        ids.clone(),
    );
    let mount = config.mount.trim_end_matches('/');
    if !models.is_empty() {
        protected = protected.merge(models::routes(mount, models));
    }
    protected = if mount.is_empty() {
        protected.fallback_service(service)
    } else {
        protected.nest_service(mount, service)
    };
    if let Some(keys) = keys {
        protected = protected.layer(ClientKeyLayer::new(Some(keys)));
    }
    let router = admin::healthz().merge(protected);

    // Credentials are marked sensitive by the server before routing (see `server::service`).
    let middleware = Middleware::new(ids);
    let main = Routes {
        router: router.layer(middleware),
        direct: Some(direct),
        browsers: browsers(config.listen, config.client_auth.is_some()),
    };
    Ok(App {
        main,
        admin,
        health: registry,
        deployment_ids,
        process: process.clone(),
    })
}
