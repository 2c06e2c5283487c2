//! Live reload: re-read the configuration file, and swap in what it says without a restart.
//!
//! - A file that does not load (a syntax error, a bad field, an unset variable) changes
//!   nothing: the error is returned, naming the field, and the running configuration stays.
//! - A good one is built over the same health registry, so every deployment id that still
//!   exists keeps its health (an ejection keeps its deadline), removed ids are forgotten
//!   and new ones start healthy. Its routes replace the old ones from the next request of
//!   every connection on; requests and streams already running finish on the stack they
//!   started with.
//! - What a running listener cannot change (`listen`, `admin_listen`, `server`) keeps its
//!   running value and is reported as needing a restart.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use llm_tower::{ConfigError, EndpointId, HealthRegistry};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::admin::Generation;
use crate::router::{App, build};
use crate::{GatewayConfig, LiveRoutes};

/// Re-reads a configuration file and replaces the routes of a running gateway.
///
/// ```no_run
/// use llm_tower_gateway::{GatewayConfig, Reloader, router, serve};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let path = "gateway.yaml";
/// let config = GatewayConfig::from_path(path)?;
/// let app = router(&config, None)?;
/// let reloader = Reloader::new(path, config.clone(), &app, None);
/// let listener = tokio::net::TcpListener::bind(config.listen).await?;
/// let server = tokio::spawn({
///     let routes = reloader.main().clone();
///     async move { serve(listener, routes, &config.server, std::future::pending()).await }
/// });
/// // Later, on SIGHUP:
/// match reloader.reload() {
///     Ok(report) => println!("{report}"),
///     Err(err) => eprintln!("configuration not reloaded: {err}"),
/// }
/// # Ok(())
/// # }
/// ```
pub struct Reloader {
    path: PathBuf,
    /// `--listen`, which overrides the file's on every load.
    listen: Option<String>,
    metrics: Option<PrometheusHandle>,
    registry: HealthRegistry,
    main: LiveRoutes,
    admin: Option<LiveRoutes>,
    running: Mutex<(GatewayConfig, Generation)>,
}

/// What a reload did.
///
/// ```
/// use llm_tower_gateway::{Generation, Reloaded};
///
/// let report = Reloaded { generation: Generation::first().next(), needs_restart: vec!["listen"] };
/// assert!(report.to_string().contains("generation 2"));
/// assert!(report.to_string().contains("`listen` changed"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// The configuration now in force.
    pub generation: Generation,
    /// Settings that changed in the file but keep their running value until a restart.
    pub needs_restart: Vec<&'static str>,
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration reloaded: generation {}",
            self.generation.number
        )?;
        for setting in &self.needs_restart {
            write!(f, "; `{setting}` changed and takes effect after a restart")?;
        }
        Ok(())
    }
}

impl Reloader {
    /// A reloader for the gateway serving `app`, built from `config` as read from `path`.
    /// Serve [`main`](Self::main) (and [`admin`](Self::admin)) rather than the app's routes,
    /// so that a reload reaches them.
    pub fn new(
        path: impl Into<PathBuf>,
        config: GatewayConfig,
        app: &App,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        Self {
            path: path.into(),
            listen: None,
            metrics,
            registry: app.health.clone(),
            main: LiveRoutes::new(app.main.clone()),
            admin: app.admin.clone().map(LiveRoutes::new),
            running: Mutex::new((config, Generation::first())),
        }
    }

    /// Applies `listen` (a `--listen` override) to every file it loads, as to the first.
    #[must_use]
    pub fn listen_override(mut self, listen: Option<String>) -> Self {
        self.listen = listen;
        self
    }

    /// The file it reads.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The main listener's routes.
    pub fn main(&self) -> &LiveRoutes {
        &self.main
    }

    /// The admin listener's routes, when `admin_listen` is set.
    pub fn admin(&self) -> Option<&LiveRoutes> {
        self.admin.as_ref()
    }

    /// The configuration in force and its generation.
    pub fn running(&self) -> (GatewayConfig, Generation) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the file and, if it is valid, swaps its routes in.
    ///
    /// # Errors
    ///
    /// The file's error (naming the field); nothing changed then.
    pub fn reload(&self) -> Result<Reloaded, ConfigError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let (old, generation) = &*running;
        let mut config = GatewayConfig::from_path(&self.path)?;
        if let Some(listen) = &self.listen {
            config.set_listen(listen)?;
        }
        // The listeners run with what they were started with.
        let mut needs_restart = Vec::new();
        if config.listen != old.listen {
            needs_restart.push("listen");
            config.listen = old.listen;
        }
        if config.admin_listen != old.admin_listen {
            needs_restart.push("admin_listen");
            config.admin_listen = old.admin_listen;
        }
        if config.server != old.server {
            needs_restart.push("server");
            config.server = old.server;
        }
        let generation = generation.next();
        let app = build(
            &config,
            self.metrics.clone(),
            self.registry.clone(),
            generation,
        )?;
        let current: HashSet<&EndpointId> = app.deployment_ids.iter().collect();
        self.registry.retain(|id| current.contains(id));
        self.main.replace(app.main);
        if let (Some(live), Some(admin)) = (&self.admin, app.admin) {
            live.replace(admin);
        }
        *running = (config, generation);
        Ok(Reloaded {
            generation,
            needs_restart,
        })
    }
}

impl fmt::Debug for Reloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .field("generation", &self.running().1.number)
            .finish_non_exhaustive()
    }
}
