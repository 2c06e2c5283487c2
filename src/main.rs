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

use llm_tower_gateway::cli::{Command, USAGE};
use llm_tower_gateway::{DEFAULT_LISTEN, GatewayConfig, LiveRoutes, Reloader};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;

// A faster allocator than glibc's for many small, short-lived allocations per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            tracing_subscriber::fmt()
                // Colours for a terminal, not for a file or a log collector.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
                )
                .init();
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("error: cannot start the runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(serve(config, listen, watch))
        }
    }
}

async fn serve(config_path: Option<String>, listen: Option<String>, watch: bool) -> ExitCode {
    // The demo's providers must outlive the server.
    let (config, demo) = match load(config_path.as_deref(), listen.as_deref()).await {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };

    let metrics = match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(err) => {
            tracing::warn!("metrics disabled: {err}");
            None
        }
    };
    let app = match llm_tower_gateway::router(&config, metrics.clone()) {
        Ok(app) => app,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    // The routes are served through the reloader, so that SIGHUP (and `--watch`) reach them.
    let reloader = config_path.as_ref().map(|path| {
        Arc::new(Reloader::new(path, config.clone(), &app, metrics).listen_override(listen.clone()))
    });
    spawn_reloads(reloader.clone(), watch);
    let (main_routes, admin_routes) = match &reloader {
        Some(reloader) => (reloader.main().clone(), reloader.admin().cloned()),
        None => (LiveRoutes::new(app.main), app.admin.map(LiveRoutes::new)),
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
                    "admin routes (/healthz, /upstreams, /metrics) on http://{addr}"
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
        llm_tower_gateway::shutdown_signal().await;
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

/// Reloads on SIGHUP and, with `watch`, when the file changes. Without a file (the demo),
/// SIGHUP is logged and ignored.
fn spawn_reloads(reloader: Option<Arc<Reloader>>, watch: bool) {
    let reload = |reloader: &Reloader, why: &str| match reloader.reload() {
        Ok(report) => tracing::info!(why, "{report}"),
        Err(err) => tracing::error!(
            why,
            "configuration not reloaded, the running one stays: {err}"
        ),
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let reloader = reloader.clone();
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        if let Some(reloader) = &reloader {
                            reload(reloader, "SIGHUP");
                        } else {
                            tracing::warn!("SIGHUP: the demo has no configuration file to reload");
                        }
                    }
                });
            }
            Err(err) => tracing::warn!("SIGHUP will not reload: {err}"),
        }
    }
    if let (true, Some(reloader)) = (watch, reloader) {
        tokio::spawn(async move {
            let mut changes = llm_tower_gateway::FileChanges::new(reloader.path());
            loop {
                changes.next().await;
                reload(&reloader, "the file changed");
            }
        });
    }
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
