//! The llm-tower gateway: an OpenAI-compatible endpoint in front of several LLM providers,
//! with retries, fallback, cooldowns and half-open probes, built from the `llm-tower` library.
//!
//! The binary `llm-tower-gateway` is the product (`cargo run --release` at the repository
//! root serves the built-in [`demo`]); this library holds its parts so the black-box tests
//! can start it in-process:
//!
//! | route | what |
//! |---|---|
//! | `<mount>/...` (default `/v1/...`) | forwarded: the mount prefix is replaced by each endpoint's `base_url` |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /upstreams` | the health registry snapshot as JSON |
//! | `GET /ui` | a live page of that snapshot, for the person on call |
//! | `GET /metrics` | Prometheus text (when a recorder handle is given) |
//!
//! ```no_run
//! use llm_tower_gateway::{GatewayConfig, router, serve, shutdown_signal};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = GatewayConfig::from_path("gateway.yaml")?;
//! let app = router(&config, None)?;
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! serve(listener, app.main, &config.server, shutdown_signal()).await?;
//! # Ok(())
//! # }
//! ```

mod admin;
mod browser;
pub mod cli;
mod config;
mod demo;
mod models;
mod reload;
mod routes;
mod server;
mod watch;
mod websocket;

pub use admin::{Generation, prometheus_builder};
pub use browser::CorsSettings;
pub use config::{DEFAULT_LISTEN, DEFAULT_MOUNT, GatewayConfig};
pub use demo::{Demo, demo};
pub use reload::{Reloaded, Reloader};
pub use routes::client_auth::{ClientAuth, ClientKey};
pub use routes::{App, Routes, router};
pub use server::{LiveRoutes, ServerSettings, raise_descriptor_limit, serve, shutdown_signal};
pub use watch::FileChanges;
pub use websocket::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_MESSAGE_BYTES, WebSocketSettings};
