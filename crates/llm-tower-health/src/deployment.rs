//! [`DeploymentHealth`]: one deployment's health as a balancer uses it — the cell in the
//! registry, the policy its failures are judged by, and where its changes are told (the
//! checkers over the registry, other replicas). What a request does to a deployment goes
//! through here, so that the balancer and the health checker say it the same way.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use llm_tower_core::{
    Endpoint, EndpointId, ErrorKind, ModelName, Outcome, RateLimits, classify_error_kind,
};
use tokio::time::Instant;

use crate::activity::Ended;
use crate::cell::{Admission, EndpointHealth, HealthPolicy, Placement, ProbeGuard};
use crate::registry::HealthRegistry;

/// The health of one deployment (an endpoint, or one model of an endpoint that lists
/// several) in a [`HealthRegistry`]: whether a request may go there now, and
/// what each request's end does to it.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_core::{Endpoint, Outcome};
/// use llm_tower_health::{Admission, DeploymentHealth, HealthPolicy, HealthRegistry, Status};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let registry = HealthRegistry::new();
/// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
/// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: Duration::from_secs(60), max_probe_interval: Duration::from_secs(10) };
/// let a = DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy);
/// assert!(matches!(a.admit(Instant::now()), Admission::Open));
///
/// // One failure at the threshold of 1 ejects it for its endpoint's base cooldown (5 s).
/// let cooldown = a.failed(Instant::now(), Outcome::Status(http::StatusCode::BAD_GATEWAY), None, None);
/// assert_eq!(cooldown, Some(Duration::from_secs(5)));
/// assert_eq!(registry.get("a").unwrap().status, Status::Ejected);
/// assert!(matches!(a.admit(Instant::now()), Admission::Closed(_)));
///
/// // After the cooldown, one request is the half-open probe; its success restores it.
/// tokio::time::advance(Duration::from_secs(5)).await;
/// let Admission::Probe(probe) = a.admit(Instant::now()) else { panic!("half-open") };
/// assert!(a.succeeded(Instant::now(), None, false, Some(probe)));
/// assert_eq!(registry.get("a").unwrap().status, Status::Healthy);
/// # }
/// ```
pub struct DeploymentHealth {
    id: EndpointId,
    pub(crate) cell: Arc<EndpointHealth>,
    pub(crate) registry: HealthRegistry,
    /// The first cooldown of an ejection (its endpoint's `health_check_interval`).
    base_cooldown: Duration,
    policy: HealthPolicy,
}

impl fmt::Debug for DeploymentHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeploymentHealth")
            .field("id", &self.id)
            .field("healthy", &self.cell.is_healthy())
            .finish_non_exhaustive()
    }
}

impl DeploymentHealth {
    /// The health of deployment `id` of `endpoint` (serving `model`, for an endpoint that
    /// lists models) in `registry`, judged by `policy`: its cell is created healthy on first
    /// use and kept across later calls (a reloaded configuration keeps the health of the
    /// deployments it still has). The registry's
    /// [`max_cooldown`](HealthRegistry::max_cooldown) becomes `policy`'s.
    pub fn new(
        registry: &HealthRegistry,
        id: EndpointId,
        endpoint: &Endpoint,
        model: Option<ModelName>,
        policy: HealthPolicy,
    ) -> Self {
        let cell = registry.cell(&id);
        cell.place(
            Placement {
                endpoint: endpoint.id().clone(),
                model,
                priority: endpoint.priority(),
            },
            policy.max_probe_interval,
        );
        registry.set_max_cooldown(policy.max_cooldown);
        Self {
            id,
            cell,
            registry: registry.clone(),
            base_cooldown: endpoint.health_check_interval(),
            policy,
        }
    }

    /// Skipped, like a cooling deployment, while its provider's answers say less than `min`
    /// (a fraction) of a rate-limit window is left, until the window resets (default
    /// [`DEFAULT_HEADROOM_MIN`](crate::DEFAULT_HEADROOM_MIN); 0: only while nothing is left).
    #[must_use]
    pub fn headroom_min(self, min: f64) -> Self {
        self.cell.headroom.set_min(min, Instant::now());
        self
    }

    /// Keeps what an answer's headers say of the deployment's rate limits, as of now. A
    /// window below the headroom threshold keeps requests away until it resets; an answer
    /// without such headers changes nothing, and costs no clock read. Other replicas hear of
    /// it (see [`HealthEvent::RateLimits`](crate::HealthEvent::RateLimits)).
    pub fn read_rate_limits(&self, headers: &http::HeaderMap) {
        if let Some(limits) = RateLimits::read(headers) {
            // Skipped at most as long as a cooldown may last.
            let limits = limits.capped(self.policy.max_cooldown);
            if self.cell.headroom.observe(&limits, Instant::now()) {
                self.registry.read_rate_limits(&self.id, &self.cell);
            }
        }
    }

    /// The deployment's id: its endpoint's, or `endpoint/model`.
    pub fn id(&self) -> &EndpointId {
        &self.id
    }

    /// Whether a request may go here now. When the cooldown is over and no probe is out (and
    /// no health checker probes it), the request is the half-open probe and holds its slot.
    ///
    /// A deployment whose provider said it is nearly out of a rate-limit window is closed
    /// until the window resets, or until its cooldown ends if that is later (a probe slot it
    /// would have taken is given back).
    pub fn admit(&self, now: Instant) -> Admission {
        self.admit_needing(now, &|| 0)
    }

    /// [`admit`](Self::admit) for a request expected to use `needs()` tokens: closed too
    /// while its provider's tokens window has less than that left, until it resets.
    /// `needs` is asked only of a deployment whose provider told a tokens window.
    pub fn admit_needing(&self, now: Instant, needs: &dyn Fn() -> u64) -> Admission {
        let admission = self.cell.admit(now);
        match (self.cell.headroom.skip_until(now, needs), admission) {
            (None, admission) => admission,
            (Some(reset), Admission::Closed(until)) => Admission::Closed(reset.max(until)),
            (Some(reset), _) => Admission::Closed(reset),
        }
    }

    /// Counts an attempt in flight here until the returned guard drops; the guard also
    /// reports a response stream that fails after its head was sent.
    pub fn start_attempt(self: &Arc<Self>) -> InFlight {
        self.cell.start_attempt();
        InFlight(self.clone())
    }

    /// Attempts in flight here: the load `least_in_flight` compares.
    pub fn in_flight(&self) -> usize {
        self.cell.in_flight()
    }

    /// A request answered here at `at`, `latency` after its last try was sent (`retried`: not
    /// on its first try). Resets the failures; as the `probe`, or sent after the deployment
    /// was put out, restores it and tells other replicas. Returns whether it restored it.
    pub fn succeeded(
        &self,
        at: Instant,
        latency: Option<Duration>,
        retried: bool,
        probe: Option<ProbeGuard>,
    ) -> bool {
        let ended = if retried {
            Ended::Retried
        } else {
            Ended::Success
        };
        self.cell.activity.record(at, ended, latency);
        if probe.is_some() {
            tracing::info!(endpoint = %self.id, "probe succeeded; endpoint restored");
        }
        // When the answering try was sent: it answered `latency` after that.
        let sent = latency.map_or(at, |latency| at - latency);
        let restored = self.cell.record_success(probe, sent);
        if restored {
            self.registry.restored(&self.id);
        }
        restored
    }

    /// A request failed here with `outcome` after its retries (`hint`: the upstream's
    /// cooldown, such as its `Retry-After`). Returns the cooldown when this ejected it (or a
    /// `Retry-After` below the threshold cooled it down).
    pub fn failed(
        &self,
        now: Instant,
        outcome: Outcome,
        hint: Option<Duration>,
        probe: Option<ProbeGuard>,
    ) -> Option<Duration> {
        self.cell.activity.record_failure(now, outcome);
        self.count_failure(now, hint, probe)
    }

    /// Another deployment of the same endpoint had its key rejected (401/403): this one
    /// shares the key, so the failure counts here too (not as a request of its own).
    pub fn key_rejected(&self, now: Instant, hint: Option<Duration>) -> Option<Duration> {
        self.count_failure(now, hint, None)
    }

    fn count_failure(
        &self,
        now: Instant,
        hint: Option<Duration>,
        probe: Option<ProbeGuard>,
    ) -> Option<Duration> {
        let cooldown =
            self.cell
                .record_failure(now, self.base_cooldown, hint, probe, self.policy)?;
        tracing::warn!(
            endpoint = %self.id,
            cooldown_ms = cooldown.as_millis() as u64,
            "endpoint ejected"
        );
        // Whichever stack's checker probes it (registries can be shared) learns of its
        // deadline, and so do other replicas.
        self.registry.ejected(&self.id, &self.cell);
        Some(cooldown)
    }

    /// A health check passed; as the `probe`, it restores the deployment on probation (and
    /// tells other replicas). Returns whether it restored it.
    pub(crate) fn check_passed(&self, probe: Option<ProbeGuard>, now: Instant) -> bool {
        let restored = self.cell.check_passed(probe, now);
        if restored {
            self.registry.restored(&self.id);
        }
        restored
    }

    /// A health check failed. Returns the cooldown when it ejected the deployment.
    pub(crate) fn check_failed(
        &self,
        probe: Option<ProbeGuard>,
        now: Instant,
        hint: Option<Duration>,
    ) -> Option<Duration> {
        let cooldown = self
            .cell
            .check_failed(probe, now, self.base_cooldown, hint, self.policy)?;
        self.registry.ejected(&self.id, &self.cell);
        Some(cooldown)
    }

    /// `least_latency`'s estimate of the time to first byte here, in seconds, decayed over
    /// `decay` (`None` until the deployment answered or was seeded).
    pub fn latency_estimate(&self, now: Instant, decay: Duration) -> Option<f64> {
        self.cell
            .latency
            .get(now, decay, self.cell.in_flight() == 0)
    }

    /// Starts the estimate of a deployment that has none at `estimate` seconds (its tier's
    /// median), so that it neither takes every request nor none.
    pub fn seed_latency(&self, estimate: f64, now: Instant) {
        self.cell.latency.seed(estimate, now);
    }

    /// An answer here took `latency` to its first byte.
    pub fn observe_latency(&self, latency: Duration, now: Instant, decay: Duration) {
        self.cell.latency.observe(latency, now, decay);
    }
}

/// An attempt in flight on a deployment, from [`DeploymentHealth::start_attempt`]: counted
/// until dropped, and what a response body reports its stream's failure through (a narrow
/// handle: the body holds nothing of the balancer).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use llm_tower_core::{Endpoint, ErrorKind};
/// use llm_tower_health::{DeploymentHealth, HealthPolicy, HealthRegistry, Status};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = HealthRegistry::new();
/// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
/// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: Duration::from_secs(60), max_probe_interval: Duration::from_secs(10) };
/// let a = Arc::new(DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy));
/// let attempt = a.start_attempt();
/// assert_eq!(a.in_flight(), 1);
/// attempt.stream_failed(ErrorKind::StreamIdleTimeout);
/// drop(attempt);
/// assert_eq!(a.in_flight(), 0);
/// assert_eq!(registry.get("a").unwrap().status, Status::Ejected);
/// # }
/// ```
pub struct InFlight(Arc<DeploymentHealth>);

impl InFlight {
    /// The response stream of this attempt failed with `kind` after its head was sent
    /// (stalled past its idle timeout, reset, malformed): too late to fall back, but when the
    /// failure is the upstream's it counts against the deployment's health.
    pub fn stream_failed(&self, kind: ErrorKind) {
        if !classify_error_kind(kind).counts_against_health() {
            return;
        }
        let deployment = &self.0;
        tracing::warn!(endpoint = %deployment.id, %kind, "response stream failed after its head was sent");
        deployment.failed(Instant::now(), Outcome::Error(kind), None, None);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.cell.end_attempt();
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InFlight").field(&self.0.id).finish()
    }
}
