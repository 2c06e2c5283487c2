//! Per-deployment health of LLM provider endpoints, for a balancer to stay away from the ones
//! that fail and let them back in carefully.
//!
//! - A **cell** per deployment (an endpoint, or one model of an endpoint that lists several)
//!   holds its state machine: healthy → ejected after `unhealthy_threshold` failures, for a
//!   cooldown that doubles up to `max_cooldown` (or the upstream's `Retry-After`) → half-open
//!   (exactly one probe, released if it is dropped) → healthy again; a passing health check
//!   restores on probation.
//! - The [`HealthRegistry`] keeps the cells in a `DashMap` by deployment id, shared between
//!   stacks and across reloads, and shows them as [`EndpointSnapshot`]s.
//! - A [`DeploymentHealth`] is one deployment as a balancer uses it: admission, the end of
//!   each request, the cost a strategy compares (attempts in flight, latency estimate).
//! - [`HealthChecker`] probes ejected deployments (and, with an interval, healthy ones) in the
//!   background, so that no user request pays for finding out.
//! - [`HealthEvent`]s tell other replicas of ejections and restores; [`store`] carries them
//!   through Redis (feature `redis`); [`metrics`] exports the health series (feature
//!   `metrics`).
//!
//! Modules are in dependency order: each uses only those above it.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use llm_tower_core::{Endpoint, Outcome};
//! use llm_tower_health::{Admission, DeploymentHealth, HealthPolicy, HealthRegistry, Status};
//! use tokio::time::Instant;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let registry = HealthRegistry::new();
//! let endpoint = Endpoint::builder("openai", "https://api.openai.com/v1").build().unwrap();
//! let policy = HealthPolicy { unhealthy_threshold: 2, max_cooldown: Duration::from_secs(60), max_probe_interval: Duration::from_secs(10) };
//! let openai = Arc::new(DeploymentHealth::new(&registry, "openai".into(), &endpoint, None, policy));
//!
//! let overloaded = Outcome::Status(http::StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(openai.failed(Instant::now(), overloaded, None, None), None, "below the threshold");
//! let cooldown = openai.failed(Instant::now(), overloaded, Some(Duration::from_secs(30)), None);
//! assert_eq!(cooldown, Some(Duration::from_secs(30)), "ejected, for its Retry-After");
//! assert!(matches!(openai.admit(Instant::now()), Admission::Closed(_)));
//! assert_eq!(registry.snapshot()[0].status, Status::Ejected);
//! # }
//! ```

mod latency;

mod activity;
mod check_log;
mod headroom;
mod snapshot;

mod cell;

mod events;
mod registry;

mod deployment;

mod check;

#[cfg(feature = "metrics")]
pub mod metrics;
pub mod store;

pub use activity::{LastFailure, LastMinute};
pub use cell::{Admission, HealthPolicy, ProbeGuard};
pub use check::{CheckService, HealthChecker};
pub use check_log::CheckSnapshot;
pub use deployment::{DeploymentHealth, InFlight};
pub use events::{HealthEvent, HealthEvents};
pub use headroom::{DEFAULT_HEADROOM_MIN, RateLimitsSnapshot, WindowSnapshot};
pub use registry::HealthRegistry;
pub use snapshot::{EndpointSnapshot, Status};
