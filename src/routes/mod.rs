//! The gateway's routes, and the one request path through them. Everything under the mount
//! path goes to the llm-tower stack; beside it, the admin routes and `{mount}/models`.
//!
//! The request middleware is written here once, as layers, one concept a file:
//!
//! | file | what |
//! |---|---|
//! | `middleware.rs` | what every request goes through: `request_id.rs` (its id, kept or made, put on the response), then `span.rs` (its span) |
//! | `client_auth/` | the client keys, and the check as a layer (`layer.rs`) |
//! | `mount.rs` | which paths are the stack's, and the path it sees of them |
//! | `proxied.rs` | the stack's route: the middleware, the key check and the mount over the stack |
//!
//! The router puts the middleware over its own routes and routes the mount's paths to the
//! stack's route, which has the same middleware of its own. The server (`server/`, transport
//! only) calls that route directly for the paths it claims, and the router for the rest: so
//! a request to the stack goes through the same layers whichever way it comes.

pub(crate) mod client_auth;
mod middleware;
mod mount;
mod proxied;
mod request_id;
mod span;

use std::sync::Arc;

use axum::Router;
use llm_tower::health_store::HealthStore;
use llm_tower::limits::Limiter;
use llm_tower::limits::store::LimitsStore;
use llm_tower::{ConfigError, EndpointId, HealthRegistry, Upstream};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::GatewayConfig;
use crate::admin::{self, Generation};
use crate::browser::BrowserGuard;
use crate::models;
use crate::websocket::{Sockets, WebSocketRoute};
use client_auth::{ClientAuth, ClientKeyLayer, ClientKeys};
use middleware::Middleware;
use mount::Mount;
pub(crate) use proxied::{Proxied, ProxiedBody, ProxiedFuture};
use request_id::SequentialRequestId;

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
    /// Every client's counts against its limits: a reload keeps them.
    pub(crate) limiter: Arc<Limiter>,
    /// Every deployment's WebSocket sessions: a reload keeps them.
    pub(crate) sockets: Arc<Sockets>,
}

impl Process {
    /// The stack route's WebSockets under `config`, counted in this process's sessions.
    fn websocket(&self, config: &GatewayConfig) -> Option<WebSocketRoute> {
        let settings = config.websocket.clone()?;
        Some(WebSocketRoute {
            settings,
            sockets: self.sockets.clone(),
        })
    }
}

/// The main listener's routes: an axum [`Router`] that is complete on its own (serve it with
/// anything), and the stack's route for [`serve`](crate::serve) to call without routing (the
/// same route the router has at the mount).
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
    /// The stack's route, for the requests it claims.
    pub(crate) proxied: Option<Proxied>,
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
            proxied: None,
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
/// Any configuration error; with `health_store` or `limits_store`, also a call outside a
/// Tokio runtime.
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
    let limiter = match &config.limits_store {
        Some(settings) => Limiter::shared(LimitsStore::start(settings)?),
        None => Limiter::default(),
    };
    let process = Process {
        metrics,
        registry,
        store,
        limiter: Arc::new(limiter),
        sockets: Arc::default(),
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
    let limits = config
        .client_auth
        .as_ref()
        .map(ClientAuth::limits)
        .unwrap_or_default();
    let upstream = Upstream::from_config(&config.upstream)?
        .registry(registry.clone())
        .response_headers(true)
        .metrics(metrics.is_some())
        .access_log(true)
        .mounted_at(&config.mount)
        .limits(limits.clone())
        .limiter(process.limiter.clone());
    let service = upstream.build()?;
    let deployment_ids = service
        .get_ref()
        .get_ref()
        .deployment_ids()
        .cloned()
        .collect();
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

    let limited = admin::Limited {
        clients: config
            .client_auth
            .iter()
            .flat_map(|auth| &auth.keys)
            .filter_map(|key| Some((key.name.as_str().into(), limits.of(&key.name)?.clone())))
            .collect(),
        limiter: process.limiter.clone(),
    };
    let sockets = config.websocket.is_some().then(|| process.sockets.clone());
    let admin_routes = admin::routes(
        &registry,
        metrics,
        process.store.clone(),
        generation,
        limited,
        sockets,
    );
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
                proxied: None,
                browsers: browsers(listen, false),
            }),
        ),
        None => (admin_routes, None),
    };
    // The paths the router serves itself, for the server to leave to it.
    let mut others = vec!["/healthz"];
    if config.admin_listen.is_none() {
        others.extend(["/upstreams", "/ui", "/limits", "/metrics"]);
    }
    // With models listed, `{mount}/models` is answered from the configuration.
    let models = models::listed(&config.upstream.build_endpoints()?);
    let mount = Mount::new(&config.mount, others, !models.is_empty());
    if !models.is_empty() {
        protected = protected.merge(models::routes(mount.prefix(), models));
    }
    let middleware = Middleware::new(SequentialRequestId::new());
    let client_keys = ClientKeyLayer::new(keys);
    // The router's own routes: `/healthz` for anyone, the rest behind the client keys.
    let own = admin::healthz()
        .merge(protected.layer(client_keys.clone()))
        .layer(middleware.clone());
    let websocket = process.websocket(config);
    let proxied = Proxied::new(middleware, client_keys, mount, service, websocket);
    // Credentials are marked sensitive by the server before routing (see `server::service`).
    let main = Routes {
        router: proxied.route(own),
        proxied: Some(proxied),
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
