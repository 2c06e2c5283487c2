//! Shared model of llm-tower: endpoints, outcome classification, `Retry-After` parsing,
//! attempt records, the replayable request body and the error type. It knows no file format:
//! configuration files are read by the `llm-tower` facade (features `yaml`, `toml`).
//!
//! Every other llm-tower crate builds on these types. The main entry points are:
//!
//! - [`Endpoint`] (built with [`Endpoint::builder`] or from an [`EndpointConfig`]) and the
//!   [`Selected`] request extension that tells inner layers which endpoint a request goes to;
//! - [`classify`] / [`classify_status`] / [`classify_error`], the one place that decides
//!   whether an outcome is a success, worth a retry, a bad key, or the client's own fault;
//!   [`ClassifyErrorsLayer`] is the hook for errors of your own types;
//! - [`retry_after`], which reads `retry-after`, `retry-after-ms` and `x-ms-retry-after-ms`;
//! - [`Attempts`], the per-request log of upstream attempts;
//! - [`BufferedBody`] and [`buffer_request`], the size-capped, cheaply clonable request body;
//! - [`Error`], which renders as an OpenAI-style JSON error response, and [`ConfigError`],
//!   which every settings check returns, naming the field.
//!
//! How the pieces fit together is described in the repository's `ARCHITECTURE.md`.
//!
//! ```
//! use llm_tower_core::{ApiKey, Endpoint, EndpointConfig, Provider, ProviderName, Secret};
//!
//! // In code, with typed values...
//! let main = Endpoint::builder("main", "https://api.openai.com/v1")
//!     .api_key(ApiKey::new("sk-not-a-real-key").unwrap())
//!     .build()
//!     .unwrap();
//! // ...or as a configuration file says it.
//! let backup = EndpointConfig {
//!     provider: ProviderName::Azure,
//!     api_key: Some(Secret::new("not-a-real-key-either")),
//!     priority: 1,
//!     ..EndpointConfig::new("backup", "https://example-resource.openai.azure.com/openai")
//! }
//! .build()
//! .unwrap();
//! assert_eq!(backup.provider(), &Provider::Azure);
//! // Keys never show up in Debug output.
//! assert!(!format!("{main:?} {backup:?}").contains("not-a-real-key"));
//! ```

mod attempt;
mod attempt_context;
mod body;
pub mod civil;
mod classify;
mod classify_errors;
mod client_api;
mod config_error;
mod context_overflow;
pub mod duration;
mod endpoint;
mod error;
mod estimate;
mod extensions;
mod headers;
mod macros;
mod model;
mod outcome;
mod percent;
mod policy;
mod rate_limits;
mod redis_url;
mod retry_after;
mod retry_on;
mod sse;
mod telemetry;
mod transport;
mod usage;

pub use attempt::{Attempt, AttemptKind, Attempts};
pub use attempt_context::{AttemptContext, AttemptFacts};
pub use body::{
    BufferedBody, DEFAULT_MAX_BODY_BYTES, ERROR_BODY_LIMIT, buffer_body, buffer_request,
    check_declared_length, check_declared_size,
};
pub use classify::{
    Classification, classify, classify_error, classify_error_kind, classify_status,
    informational_as_error, is_upgrade_answer,
};
pub use classify_errors::{ClassifyErrors, ClassifyErrorsFuture, ClassifyErrorsLayer};
pub use client_api::{ClientApi, anthropic_error_type};
pub use config_error::{ConfigError, MAX_COOLDOWN_LIMIT};
pub use context_overflow::is_context_overflow;
pub use endpoint::{
    ApiKey, BaseUrl, Continuation, Endpoint, EndpointBuilder, EndpointConfig, EndpointId,
    ExpectStatus, HealthCheck, Hedge, ModelsConfig, Provider, ProviderName, Secret, Translation,
    port_is_valid,
};
pub use error::{BoxError, Error, ErrorKind};
pub use estimate::{DEFAULT_OUTPUT, estimate_usage};
pub use extensions::{
    Caller, ContextOverflow, CooldownHint, CredentialsSet, Deployment, Replay, Selected, SingleTry,
    WebSocketUpgrade, rewrite_attempt,
};
pub use headers::{
    HOP_BY_HOP, HeaderNames, is_event_stream, remove_where, strip_hop_by_hop, strip_hop_by_hop_and,
};
#[doc(hidden)] // For `header_names!`.
pub use http as __http;
pub use model::{
    ModelInBody, ModelName, ModelRoute, TopLevel, find_model, find_model_and, find_top_level,
    for_each_member, is_generation_path, model_in_path, model_in_query, requested_model,
    requested_model_in, with_model, with_query_param,
};
pub use outcome::Outcome;
pub use percent::percent_decode;
pub use policy::{CountBased, ExponentialBackoff, RetryPolicy};
pub use rate_limits::{MAX_RESET, RateLimits, RateWindow, cooldown_hint};
pub use redis_url::{RedisUrl, validate_key_prefix};
pub use retry_after::{retry_after, retry_after_at};
pub use retry_on::{RetryOn, RetryReason};
pub use sse::{SseEvent, SseSplitter, write_sse_event};
pub use telemetry::{
    AttemptSpan, DURATION_BUCKETS, HeldSpan, TARGET as TELEMETRY_TARGET, continue_trace,
    inject_context, operation_name, provider_name, set_propagation,
};
pub use usage::{Usage, UsageRecord};

/// The `User-Agent` llm-tower sends upstream by default: `llm-tower/<version>`.
pub const USER_AGENT: &str = concat!("llm-tower/", env!("CARGO_PKG_VERSION"));
