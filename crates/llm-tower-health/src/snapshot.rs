//! What operators see of a deployment's health: [`Status`] and [`EndpointSnapshot`], plain
//! data read off a cell by [`HealthRegistry::snapshot`](crate::HealthRegistry::snapshot).

use llm_tower_core::{EndpointId, ModelName};
use serde::Serialize;

use crate::activity::{LastFailure, LastMinute};
use crate::check_log::CheckSnapshot;
use crate::headroom::RateLimitsSnapshot;

/// Health status of an endpoint.
///
/// ```
/// use llm_tower_health::Status;
///
/// assert_eq!(serde_json::to_string(&Status::HalfOpen).unwrap(), "\"half_open\"");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Taking traffic.
    Healthy,
    /// Cooling down: skipped until its cooldown ends.
    Ejected,
    /// Cooldown over: the next request is a probe (or one is in flight).
    HalfOpen,
}

/// A serialisable view of one endpoint's health, for admin endpoints.
///
/// ```
/// use llm_tower_core::Endpoint;
/// use llm_tower_health::{DeploymentHealth, HealthPolicy, HealthRegistry};
///
/// let registry = HealthRegistry::new();
/// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
/// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: std::time::Duration::from_secs(60), max_probe_interval: std::time::Duration::from_secs(10) };
/// let _a = DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy);
/// let snapshot = registry.get("a").unwrap();
/// assert_eq!((snapshot.consecutive_failures, snapshot.in_flight), (0, 0));
/// let json = serde_json::to_value(&snapshot).unwrap();
/// assert_eq!(json["status"], "healthy");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointSnapshot {
    /// The deployment: its endpoint's id, or `endpoint/model` when the endpoint lists
    /// several models.
    pub id: EndpointId,
    /// Its status.
    pub status: Status,
    /// Failed requests since the last success.
    pub consecutive_failures: u32,
    /// Ejections since the last success (each doubles the cooldown).
    pub ejections: u32,
    /// Ejections since the process started (a counter for metrics).
    pub total_ejections: u64,
    /// Seconds until the cooldown ends (0 when not cooling down).
    pub seconds_until_return: f64,
    /// Whether a probe request is in flight.
    pub probe_in_flight: bool,
    /// Attempts in flight right now.
    pub in_flight: usize,
    /// The `least_latency` estimate of the time to first byte, in milliseconds, as last
    /// updated (absent under other strategies, and until the deployment answered or was
    /// seeded with its tier's median; reset when it is restored after an ejection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// The last active health check of its endpoint (absent without `health_check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_check: Option<CheckSnapshot>,
    /// Health checks of its endpoint that passed.
    pub checks_passed: u64,
    /// Health checks of its endpoint that failed.
    pub checks_failed: u64,
    /// The mean time to the first byte of the requests it answered in the last minute, in
    /// milliseconds (absent when it answered none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_latency_ms: Option<f64>,
    /// Its last failure that counted against its health.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailure>,
    /// Its requests over the last minute, by how they ended.
    pub last_minute: LastMinute,
    /// Its endpoint (absent for a cell no balancer placed yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointId>,
    /// The model it serves, for an endpoint that lists models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelName>,
    /// Its endpoint's priority tier (lower is tried first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Healthy again by a passing health check, but not yet by a request: its requests get
    /// a single try, and the first failure ejects it again with the cooldown doubled.
    pub on_probation: bool,
    /// Its rate limits as its provider last told them (absent until an answer told them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitsSnapshot>,
}
