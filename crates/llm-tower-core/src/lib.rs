//! Shared model of [llm-tower](https://example.invalid/llm-tower): endpoints, configuration,
//! outcome classification, `Retry-After` parsing, attempt records, the replayable request body
//! and the error type.
//!
//! Every other llm-tower crate builds on these types. The main entry points are:
//!
//! - [`Endpoint`] (built with [`Endpoint::builder`] or loaded from a [`Config`]) and the
//!   [`Selected`] request extension that tells inner layers which endpoint a request goes to;
//! - [`classify`] / [`classify_status`], the one place that decides whether an outcome is a
//!   success, worth a retry, a bad key, or the client's own fault;
//! - [`retry_after`], which reads `retry-after`, `retry-after-ms` and `x-ms-retry-after-ms`;
//! - [`Attempts`], the per-request log of upstream attempts;
//! - [`BufferedBody`] and [`buffer_request`], the size-capped, cheaply clonable request body;
//! - [`Error`], which renders as an OpenAI-style JSON error response.
//!
//! ```
//! use llm_tower_core::{Config, Provider};
//!
//! let yaml = r#"
//! endpoints:
//!   - id: main
//!     base_url: https://api.openai.com/v1
//!     api_key: sk-not-a-real-key
//!   - id: backup
//!     base_url: https://example-resource.openai.azure.com/openai
//!     provider: azure
//!     api_key: not-a-real-key-either
//!     priority: 1
//! "#;
//! let config = Config::from_yaml_str(yaml).unwrap();
//! let endpoints = config.build_endpoints().unwrap();
//! assert_eq!(endpoints[1].provider(), &Provider::Azure);
//! // Keys never show up in Debug output.
//! assert!(!format!("{endpoints:?}").contains("not-a-real-key"));
//! ```

mod attempt;
mod body;
mod classify;
mod config;
pub mod duration;
mod endpoint;
mod error;
mod headers;
mod policy;
mod retry_after;

pub use attempt::{Attempt, AttemptKind, Attempts, Outcome};
pub use body::{BufferedBody, DEFAULT_MAX_BODY_BYTES, buffer_body, buffer_request};
pub use classify::{Classification, classify, classify_error, classify_status};
pub use config::{
    ClientConfig, Config, ConfigError, EndpointConfig, InterpolationError, MAX_COOLDOWN_LIMIT,
    ProviderName, RetryBudgetConfig, Secret, Strategy, WhenAllUnhealthy, interpolate_env,
    read_document,
};
pub use endpoint::{ApiKey, BaseUrl, Endpoint, EndpointBuilder, EndpointId, Provider, Selected};
pub use error::{BoxError, CooldownHint, Error, ErrorKind};
pub use headers::{HOP_BY_HOP, strip_hop_by_hop};
pub use policy::{CountBased, ExponentialBackoff, RetryPolicy};
pub use retry_after::{retry_after, retry_after_at};

/// The `User-Agent` llm-tower sends upstream by default: `llm-tower/<version>`.
pub const USER_AGENT: &str = concat!("llm-tower/", env!("CARGO_PKG_VERSION"));
