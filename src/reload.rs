//! Live reload: re-read the configuration file, and swap in what it says without a restart.
//!
//! - A file that does not load (a syntax error, a bad field, an unset variable) changes
//!   nothing: the error is returned, naming the field, and the running configuration stays.
//! - A good one is built over the same health registry, so every deployment id that still
//!   exists keeps its health (an ejection keeps its deadline), removed ids are forgotten
//!   and new ones start healthy. Its routes replace the old ones from the next request of
//!   every connection on; requests and streams already running finish on the stack they
//!   started with.
//! - What a running listener cannot change (`listen`, `admin_listen`, `server`), and the
//!   health store the process shares health through (`health_store`), keep their running
//!   values and are reported as needing a restart.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use llm_tower::{ConfigError, EndpointId};

use crate::admin::Generation;
use crate::routes::{App, Process, build};
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
/// let reloader = Reloader::new(path, config.clone(), app);
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
    /// The registry, metrics and health store every configuration is built over.
    process: Process,
    main: LiveRoutes,
    admin: Option<LiveRoutes>,
    running: Mutex<Running>,
}

/// What is in force.
struct Running {
    config: GatewayConfig,
    generation: Generation,
    deployment_ids: Vec<EndpointId>,
}

/// What a reload did.
///
/// ```
/// use llm_tower_gateway::{Generation, Reloaded};
///
/// let report = Reloaded {
///     generation: Generation::first().next(),
///     changed: true,
///     needs_restart: vec!["listen"],
/// };
/// assert!(report.to_string().contains("generation 2"));
/// assert!(report.to_string().contains("`listen` changed"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// The configuration now in force.
    pub generation: Generation,
    /// Whether the file said anything new (when not, nothing was rebuilt).
    pub changed: bool,
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
    /// It takes the app: serve [`main`](Self::main) (and [`admin`](Self::admin)), so that a
    /// reload reaches every connection and the first stack goes away after it like any other.
    pub fn new(path: impl Into<PathBuf>, config: GatewayConfig, app: App) -> Self {
        Self {
            path: path.into(),
            listen: None,
            process: app.process,
            main: LiveRoutes::new(app.main),
            admin: app.admin.map(LiveRoutes::new),
            running: Mutex::new(Running {
                config,
                generation: Generation::first(),
                deployment_ids: app.deployment_ids,
            }),
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
        let running = self.lock();
        (running.config.clone(), running.generation)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads the file and, if it is valid and says something new, swaps its routes in.
    /// Reloads are one at a time: a second caller waits for the first.
    ///
    /// # Errors
    ///
    /// The file's error (naming the field); nothing changed then.
    pub fn reload(&self) -> Result<Reloaded, ConfigError> {
        let mut running = self.lock();
        let old = &running.config;
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
        if config.upstream.health_store != old.upstream.health_store {
            needs_restart.push("health_store");
            config
                .upstream
                .health_store
                .clone_from(&old.upstream.health_store);
        }
        if config.limits_store != old.limits_store {
            needs_restart.push("limits_store");
            config.limits_store.clone_from(&old.limits_store);
        }
        if config.otel != old.otel {
            needs_restart.push("otel");
            config.otel.clone_from(&old.otel);
        }
        if config == *old {
            // Touched, or rewritten the same: nothing to rebuild (no new client, no new
            // checker, no new generation).
            return Ok(Reloaded {
                generation: running.generation,
                changed: false,
                needs_restart,
            });
        }
        let generation = running.generation.next();
        let app = match build(&config, &self.process, generation) {
            Ok(app) => app,
            Err(err) => {
                // The build may have made cells for new ids before it failed.
                self.forget_all_but(&running.deployment_ids);
                return Err(err);
            }
        };
        // Swap first, then forget: what is served never lacks a cell it shows.
        self.main.replace(app.main, generation.number);
        if let (Some(live), Some(admin)) = (&self.admin, app.admin) {
            live.replace(admin, generation.number);
        }
        self.forget_all_but(&app.deployment_ids);
        if let Some(store) = &self.process.store {
            // New deployments learn the cooldowns other replicas already published for them.
            store.refresh();
        }
        *running = Running {
            config,
            generation,
            deployment_ids: app.deployment_ids,
        };
        Ok(Reloaded {
            generation,
            changed: true,
            needs_restart,
        })
    }

    fn forget_all_but(&self, ids: &[EndpointId]) {
        let keep: HashSet<&EndpointId> = ids.iter().collect();
        self.process.registry.retain(|id| keep.contains(id));
    }
}

impl fmt::Debug for Reloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .field("generation", &self.lock().generation.number)
            .finish_non_exhaustive()
    }
}
