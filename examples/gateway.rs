//! The llm-tower gateway: an OpenAI-compatible endpoint in front of several providers, with
//! retries, fallback, cooldowns and health probes.
//!
//! ```text
//! cargo run --release --example gateway                     # self-contained demo
//! cargo run --release --example gateway -- --config gateway.yaml [--listen 0.0.0.0:8080]
//! ```
//!
//! With no arguments it starts two mock providers on loopback — `primary`, which fails now
//! and then (503, and 429 with `Retry-After: 3`), and `backup`, which is healthy — and the
//! gateway on 127.0.0.1:8080 in front of them. Every request logs one line with its attempts.
//! Set `RUST_LOG` (for example `RUST_LOG=debug`) for more.

use std::net::SocketAddr;
use std::process::ExitCode;

use llm_tower::gateway::{self, DEFAULT_LISTEN, GatewayConfig};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: gateway [--config FILE.yaml|FILE.toml] [--listen ADDR]

Without --config, runs a self-contained demo against two mock providers on loopback.";

struct Args {
    config: Option<String>,
    listen: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: None,
        listen: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| iter.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config" | "-c" => args.config = Some(value("--config")?),
            "--listen" | "-l" => args.listen = Some(value("--listen")?),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

// A faster allocator than glibc's for many small, short-lived allocations per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    // The demo's providers must outlive the server.
    let mut demo_providers = None;
    let mut config = if let Some(path) = &args.config {
        match GatewayConfig::from_path(path) {
            Ok(config) => config,
            Err(err) => {
                eprintln!("error: {path}: {err}");
                return ExitCode::from(2);
            }
        }
    } else {
        let listen: SocketAddr = DEFAULT_LISTEN.parse().expect("valid default");
        match gateway::demo(listen).await {
            Ok(demo) => {
                let config = demo.config.clone();
                demo_providers = Some(demo);
                config
            }
            Err(err) => {
                eprintln!("error: cannot start the demo providers: {err}");
                return ExitCode::FAILURE;
            }
        }
    };
    if let Some(listen) = &args.listen {
        if let Err(err) = config.set_listen(listen) {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    }

    let metrics = match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(err) => {
            tracing::warn!("metrics disabled: {err}");
            None
        }
    };
    let (router, _registry) = match gateway::router(&config, metrics) {
        Ok(built) => built,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(config.listen);
    let mount = config.mount.trim_end_matches('/');
    println!("llm-tower gateway listening on http://{addr}{mount}");
    if let Some(demo) = &demo_providers {
        println!(
            "demo: `primary` ({}) fails now and then, `backup` ({}) is healthy",
            demo.primary.base_url(),
            demo.backup.base_url()
        );
        println!("\ntry it:");
        println!(
            "  curl -s http://{addr}{mount}/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"mock-model\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}' -i"
        );
        println!(
            "  curl -sN http://{addr}{mount}/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"mock-model\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
        );
        println!(
            "  for i in $(seq 20); do curl -s -o /dev/null -w '%{{http_code}} ' http://{addr}{mount}/chat/completions -d '{{}}'; done; echo"
        );
        println!("  curl -s http://{addr}/upstreams    # health of each endpoint");
        println!("  curl -s http://{addr}/metrics      # Prometheus metrics\n");
    }
    match gateway::serve(listener, router, gateway::shutdown_signal()).await {
        Ok(()) => {
            println!("shut down cleanly");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
