//! `llm-tower-gateway`: an OpenAI-compatible endpoint in front of several providers, with
//! retries, fallback, cooldowns and health probes.
//!
//! ```text
//! cargo run --release                                   # self-contained demo
//! cargo run --release -- --config gateway.yaml [--listen 0.0.0.0:8080]
//! cargo run --release -- --config gateway.yaml --check  # validate and exit
//! ```
//!
//! Set `RUST_LOG` (for example `RUST_LOG=debug`) for more log lines.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use std::sync::Arc;

use llm_tower::otel::Telemetry;
use llm_tower_gateway::cli::{Command, USAGE};
use llm_tower_gateway::{DEFAULT_LISTEN, GatewayConfig, LiveRoutes, Reloader};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

// A faster allocator than glibc's for many small, short-lived allocations per request.
#[global_allocator]
static ALLOCATOR: llm_tower_alloc::MiMalloc = llm_tower_alloc::MiMalloc;

fn main() -> ExitCode {
    let command = match Command::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("llm-tower-gateway {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config, listen } => {
            let checked = GatewayConfig::from_path(&config).and_then(|mut loaded| match listen {
                Some(listen) => loaded.set_listen(&listen).and_then(|()| loaded.validate()),
                None => Ok(()),
            });
            match checked {
                Ok(()) => {
                    println!("{config}: ok");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: {config}: {err}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve {
            config,
            listen,
            watch,
        } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("error: cannot start the runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let telemetry = match start_telemetry(&runtime, config.as_deref()) {
                Ok(telemetry) => telemetry,
                Err(err) => {
                    eprintln!("error: {err}");
                    return ExitCode::from(2);
                }
            };
            init_logging(telemetry.as_ref());
            let code = runtime.block_on(serve(config, listen, watch, telemetry.as_ref()));
            if let Some(telemetry) = telemetry {
                // What is still waiting is sent before the process ends.
                let _ = runtime.block_on(tokio::task::spawn_blocking(move || telemetry.shutdown()));
            }
            code
        }
    }
}

/// The OpenTelemetry pipeline, when the file sets `otel`. The file is read for it before
/// logging starts (the pipeline is part of it); `serve` reads it again and reports any
/// problem with it then.
fn start_telemetry(
    runtime: &tokio::runtime::Runtime,
    config: Option<&str>,
) -> Result<Option<Telemetry>, llm_tower::ConfigError> {
    let Some(settings) = config
        .and_then(|path| GatewayConfig::from_path(path).ok())
        .and_then(|config| config.otel)
    else {
        return Ok(None);
    };
    let _runtime = runtime.enter();
    Telemetry::start(&settings).map(Some)
}

/// Log lines on stdout, filtered by `RUST_LOG` (default `info`); with `telemetry`, the
/// stack's spans exported beside them. Those spans never show in log lines.
fn init_logging(telemetry: Option<&Telemetry>) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(
            format!("{}=off", llm_tower::TELEMETRY_TARGET)
                .parse()
                .expect("a valid directive"),
        );
    // Colours for a terminal, not for a file or a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match telemetry {
        None => tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init(),
        Some(telemetry) => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_filter(filter),
            )
            .with(telemetry.layer())
            .init(),
    }
}

/// The Prometheus recorder `/metrics` renders, with the telemetry's series shown from the
/// start.
fn install_metrics(
    telemetry: Option<&Telemetry>,
) -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let handle = llm_tower_gateway::prometheus_builder()
        .install_recorder()
        .inspect_err(|err| tracing::warn!("metrics disabled: {err}"))
        .ok()?;
    if let Some(telemetry) = telemetry {
        telemetry.describe_metrics();
    }
    Some(handle)
}

async fn serve(
    config_path: Option<String>,
    listen: Option<String>,
    watch: bool,
    telemetry: Option<&Telemetry>,
) -> ExitCode {
    // Every connection, client or upstream, takes a descriptor: the soft limit (often
    // 1 024) is raised to the hard one, which the connection cap is then derived from.
    if let Some(limit) = llm_tower_gateway::raise_descriptor_limit() {
        tracing::debug!(limit, "limit of open files");
    }
    // Listened for before anything is bound: a SIGTERM while the gateway starts drains it
    // rather than killing it.
    let shutdown = llm_tower_gateway::shutdown_signal();
    // Looked at before the file is read: a change made while it loads is not missed.
    let changes = config_path
        .as_ref()
        .filter(|_| watch)
        .map(llm_tower_gateway::FileChanges::new);
    // The demo's providers must outlive the server.
    let (config, demo) = match load(config_path.as_deref(), listen.as_deref()).await {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };

    let metrics = install_metrics(telemetry);
    let app = match llm_tower_gateway::router(&config, metrics.clone()) {
        Ok(app) => app,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    // With a file, the routes are served through the reloader, so that SIGHUP (and
    // `--watch`) reach them; it takes the app, so that the first stack ends like the others.
    let (main_routes, admin_routes) = if let Some(path) = &config_path {
        let reloader =
            Arc::new(Reloader::new(path, config.clone(), app).listen_override(listen.clone()));
        let routes = (reloader.main().clone(), reloader.admin().cloned());
        spawn_reloads(Some(reloader), changes);
        routes
    } else {
        spawn_reloads(None, None);
        (LiveRoutes::new(app.main), app.admin.map(LiveRoutes::new))
    };
    let listener = match bind(config.listen).await {
        Ok(listener) => listener,
        Err(code) => return code,
    };
    let addr = listener.local_addr().unwrap_or(config.listen);
    let mount = config.mount.trim_end_matches('/');
    // Output is best effort: a daemon may run with stdout closed.
    let _ = writeln!(
        std::io::stdout(),
        "llm-tower gateway listening on http://{addr}{mount}"
    );
    let admin = match (admin_routes, config.admin_listen) {
        (Some(router), Some(admin_addr)) => match bind(admin_addr).await {
            Ok(listener) => {
                let addr = listener.local_addr().unwrap_or(admin_addr);
                let _ = writeln!(
                    std::io::stdout(),
                    "admin routes (/healthz, /upstreams, /ui, /metrics) on http://{addr}"
                );
                Some((listener, router))
            }
            Err(code) => return code,
        },
        _ => None,
    };
    if let Some(demo) = &demo {
        demo.print_try_it(addr, mount);
    }

    // One signal stops both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let main = llm_tower_gateway::serve(
        listener,
        main_routes,
        &config.server,
        until_stopped(stopped.clone()),
    );
    let result = match admin {
        Some((listener, router)) => {
            let admin =
                llm_tower_gateway::serve(listener, router, &config.server, until_stopped(stopped));
            let (main, admin) = tokio::join!(main, admin);
            main.and(admin)
        }
        None => main.await,
    };
    match result {
        Ok(()) => {
            // Whoever read stdout may be gone by now: that is no reason to fail.
            let _ = writeln!(std::io::stdout(), "shut down cleanly");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Reloads on SIGHUP and on each of `changes` (`--watch`). One task does the reloads, off
/// the runtime's threads (a build makes a client and reads the file), and triggers that
/// come while it works make one more reload, not one each. Without a file (the demo),
/// SIGHUP is logged and ignored.
fn spawn_reloads(reloader: Option<Arc<Reloader>>, changes: Option<llm_tower_gateway::FileChanges>) {
    let wanted = Arc::new(tokio::sync::Notify::new());
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (wanted, has_file) = (wanted.clone(), reloader.is_some());
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        if has_file {
                            tracing::info!("SIGHUP: reloading the configuration");
                            wanted.notify_one();
                        } else {
                            tracing::warn!("SIGHUP: the demo has no configuration file to reload");
                        }
                    }
                });
            }
            Err(err) => tracing::warn!("SIGHUP will not reload: {err}"),
        }
    }
    if let Some(mut changes) = changes {
        let wanted = wanted.clone();
        tokio::spawn(async move {
            loop {
                changes.next().await;
                tracing::info!("the configuration file changed: reloading it");
                wanted.notify_one();
            }
        });
    }
    let Some(reloader) = reloader else { return };
    tokio::spawn(async move {
        loop {
            wanted.notified().await;
            let reloader = reloader.clone();
            match tokio::task::spawn_blocking(move || reloader.reload()).await {
                Ok(Ok(report)) => tracing::info!("{report}"),
                Ok(Err(err)) => {
                    tracing::error!("configuration not reloaded, the running one stays: {err}");
                }
                Err(err) => tracing::error!("configuration not reloaded: {err}"),
            }
        }
    });
}

/// The configuration to serve: the file, or the demo's (with its providers started), and
/// the `--listen` override, checked like the file.
async fn load(
    path: Option<&str>,
    listen: Option<&str>,
) -> Result<(GatewayConfig, Option<llm_tower_gateway::Demo>), ExitCode> {
    let (mut config, demo) = if let Some(path) = path {
        match GatewayConfig::from_path(path) {
            Ok(config) => (config, None),
            Err(err) => {
                eprintln!("error: {path}: {err}");
                return Err(ExitCode::from(2));
            }
        }
    } else {
        let listen: SocketAddr = DEFAULT_LISTEN.parse().expect("valid default");
        match llm_tower_gateway::demo(listen).await {
            Ok(started) => (started.config.clone(), Some(started)),
            Err(err) => {
                eprintln!("error: cannot start the demo providers: {err}");
                return Err(ExitCode::FAILURE);
            }
        }
    };
    if let Some(listen) = listen {
        // The override is checked like the file: a public address needs client keys.
        if let Err(err) = config.set_listen(listen).and_then(|()| config.validate()) {
            eprintln!("error: {err}");
            return Err(ExitCode::from(2));
        }
    }
    Ok((config, demo))
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ExitCode> {
    tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        eprintln!("error: cannot listen on {addr}: {err}");
        ExitCode::FAILURE
    })
}
