//! `FallbackLayer`: pick an endpoint, stay away from endpoints that are failing, let them back
//! in carefully, and fall back until a request succeeds.
//!
//! Per request the balancer
//!
//! 1. buffers the body once, up to `max_body_bytes` (over the cap: an
//!    [`ErrorKind::BodyTooLarge`](llm_tower_core::ErrorKind::BodyTooLarge) error, 413, and nothing is sent upstream);
//! 2. picks an endpoint: the best available `priority` tier first, then the strategy
//!    (round-robin, smooth weighted round-robin, or least-in-flight by power of two choices);
//!    endpoints that are cooling down are skipped, and after a cooldown exactly one request
//!    goes through as a probe;
//! 3. rewrites the URI to `base_url + path_and_query` (an absolute-form request URI never
//!    changes the destination), drops the inbound `Host`, inserts [`Selected`](llm_tower_core::Selected) and the
//!    [`Attempts`](llm_tower_core::Attempts) log, and calls the inner service (typically
//!    retry → auth → client);
//! 4. on a failure that [`classify`](llm_tower_core::classify) marks as falling back, counts it against the endpoint's
//!    health and tries the next untried endpoint (the rest of the tier, wrapping around, then
//!    the next tiers) unless the endpoint has `fallback: false`; other 4xx are returned at once
//!    and leave health alone;
//! 5. returns the first success, or the last upstream response as it came, or — when no
//!    response was ever received — an [`Error`](llm_tower_core::Error) (502/503/504). Either
//!    way the [`Attempts`](llm_tower_core::Attempts) list travels in the extensions, and a
//!    response also carries the [`Selected`](llm_tower_core::Selected) endpoint that sent it.
//!
//! Health lives in a [`HealthRegistry`] (a `DashMap` keyed by deployment id, in
//! `llm_tower_health`) that can be shared between stacks and shown on an admin endpoint with
//! [`HealthRegistry::snapshot`]; this crate only balances over it.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use llm_tower_core::{BufferedBody, Endpoint, Selected};
//! use llm_tower_fallback::{FallbackLayer, HealthRegistry};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let endpoints = vec![
//!     Endpoint::builder("primary", "http://10.0.0.1/v1").build().unwrap(),
//!     Endpoint::builder("backup", "http://10.0.0.2/v1").priority(1).build().unwrap(),
//! ];
//! let registry = HealthRegistry::new();
//! let layer = FallbackLayer::builder(endpoints).build(registry.clone()).unwrap();
//!
//! // A stand-in upstream: the primary is down, the backup answers.
//! let upstream = service_fn(|req: Request<BufferedBody>| async move {
//!     let endpoint = Selected::of(req.extensions()).unwrap().id().to_string();
//!     let status = if endpoint == "primary" { 503 } else { 200 };
//!     let response = Response::builder().status(status).body(endpoint).unwrap();
//!     Ok::<_, std::convert::Infallible>(response)
//! });
//! let service = ServiceBuilder::new().layer(layer).service(upstream);
//!
//! let response = service.oneshot(Request::new(String::from("{}"))).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.body().get_ref().map(String::as_str), Some("backup"));
//! // The primary is now cooling down.
//! assert_eq!(registry.get("primary").unwrap().status, llm_tower_health::Status::Ejected);
//! # }
//! ```

mod balancer;
mod body;
mod failed;
mod headroom;
mod hedge;
mod layer;
mod mask;
mod models;
mod pool;
mod prepared;
mod resume;
mod run;
mod service;
mod settings;
mod upgrade;

pub use body::ResponseBody;
pub use headroom::{HeadroomSettings, Share};
pub use layer::{FallbackBuilder, FallbackLayer};
pub use models::ModelFallbacks;
pub use service::{Fallback, ResponseFuture};
pub use settings::{FallbackSettings, Strategy, WhenAllUnhealthy};

/// What [`FallbackBuilder::build`] takes and
/// [`FallbackLayer::start_health_checks`] sends checks through: the rest of health is
/// `llm_tower_health`'s.
pub use llm_tower_health::{CheckService, HealthRegistry};
