//! [`FallbackLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use llm_tower_core::{ConfigError, Endpoint, EndpointId, ModelRoute};
use tower::Layer;

use llm_tower_health::CheckService;

use crate::balancer::Balancer;
use crate::models::ModelFallbacks;
use crate::service::Fallback;
use crate::settings::{FallbackSettings, Strategy, WhenAllUnhealthy};
use llm_tower_health::HealthRegistry;

/// Builder for [`FallbackLayer`]; see [`FallbackLayer::builder`].
///
/// ```
/// use llm_tower_core::Endpoint;
/// use llm_tower_fallback::{FallbackLayer, FallbackSettings, HealthRegistry, Strategy};
///
/// let endpoints = [Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap()];
/// let layer = FallbackLayer::builder(endpoints)
///     .settings(FallbackSettings { strategy: Strategy::Weighted, ..FallbackSettings::default() })
///     .max_body_bytes(1 << 20)
///     .build(HealthRegistry::new())
///     .unwrap();
/// assert_eq!(layer.settings().max_body_bytes, 1 << 20);
/// ```
#[derive(Debug)]
pub struct FallbackBuilder {
    endpoints: Vec<Endpoint>,
    settings: FallbackSettings,
    models: ModelFallbacks,
}

impl FallbackBuilder {
    /// All settings at once.
    #[must_use]
    pub fn settings(mut self, settings: FallbackSettings) -> Self {
        self.settings = settings;
        self
    }
    /// Selection strategy (default round-robin).
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.settings.strategy = strategy;
        self
    }
    /// What to do when every candidate is cooling down (default: try the soonest).
    #[must_use]
    pub fn when_all_unhealthy(mut self, when: WhenAllUnhealthy) -> Self {
        self.settings.when_all_unhealthy = when;
        self
    }
    /// Cap for buffered request bodies (default 32 MiB).
    #[must_use]
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.settings.max_body_bytes = max;
        self
    }
    /// Consecutive exhausted requests before an ejection (default 1).
    #[must_use]
    pub fn unhealthy_threshold(mut self, threshold: u32) -> Self {
        self.settings.unhealthy_threshold = threshold;
        self
    }
    /// Cap for escalating cooldowns and `Retry-After` hints (default 60 s).
    #[must_use]
    pub fn max_cooldown(mut self, max: Duration) -> Self {
        self.settings.max_cooldown = max;
        self
    }

    /// The longest wait between two probes of an ejected deployment (default 10 s).
    #[must_use]
    pub fn max_probe_interval(mut self, max: Duration) -> Self {
        self.settings.max_probe_interval = max;
        self
    }

    /// How fast `least_latency` forgets (default 10 s).
    #[must_use]
    pub fn latency_decay(mut self, decay: Duration) -> Self {
        self.settings.latency_decay = decay;
        self
    }

    /// Model fallback chains (default none): see [`ModelFallbacks`].
    #[must_use]
    pub fn model_fallbacks(mut self, models: ModelFallbacks) -> Self {
        self.models = models;
        self
    }

    /// Validates and builds the layer over `registry`.
    ///
    /// # Errors
    ///
    /// No endpoints, duplicate ids, a setting out of range ([`FallbackSettings::validate`]),
    /// or a model chain naming a model nobody serves or leading in a cycle
    /// ([`ModelFallbacks::validate`]).
    pub fn build(self, registry: HealthRegistry) -> Result<FallbackLayer, ConfigError> {
        Endpoint::check_list(&self.endpoints)?;
        self.settings.validate()?;
        self.models.validate(&self.endpoints)?;
        Ok(FallbackLayer {
            balancer: Arc::new(Balancer::new(
                self.endpoints,
                registry,
                self.settings,
                self.models,
            )),
        })
    }
}

/// Layer that balances and falls back; see the [crate documentation](crate).
///
/// ```
/// use llm_tower_core::Endpoint;
/// use llm_tower_fallback::{FallbackLayer, HealthRegistry};
///
/// let endpoints = [
///     Endpoint::builder("primary", "http://127.0.0.1:1").build().unwrap(),
///     Endpoint::builder("backup", "http://127.0.0.1:2").priority(1).build().unwrap(),
/// ];
/// let layer = FallbackLayer::builder(endpoints).build(HealthRegistry::new()).unwrap();
/// let ids: Vec<_> = layer.endpoints().map(|e| e.id().to_string()).collect();
/// assert_eq!(ids, ["primary", "backup"]);
/// ```
#[derive(Clone)]
pub struct FallbackLayer {
    balancer: Arc<Balancer>,
}

impl fmt::Debug for FallbackLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<_> = self.endpoints().map(|e| e.id()).collect();
        f.debug_struct("FallbackLayer")
            .field("endpoints", &ids)
            .field("settings", &self.balancer.settings)
            .finish_non_exhaustive()
    }
}

impl FallbackLayer {
    /// Starts a builder over these endpoints (order matters for ties in priority), with
    /// [`FallbackSettings::default`].
    pub fn builder(endpoints: impl IntoIterator<Item = Endpoint>) -> FallbackBuilder {
        FallbackBuilder {
            endpoints: endpoints.into_iter().collect(),
            settings: FallbackSettings::default(),
            models: ModelFallbacks::default(),
        }
    }

    /// The health registry this layer reports to.
    pub fn registry(&self) -> &HealthRegistry {
        &self.balancer.registry
    }

    /// The endpoints, sorted by priority, each once.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        let members = &self.balancer.pool.members;
        members
            .iter()
            .enumerate()
            .filter(|(i, m)| *i == 0 || !Arc::ptr_eq(&members[i - 1].endpoint, &m.endpoint))
            .map(|(_, m)| &m.endpoint)
    }

    /// The deployments, sorted by priority: each endpoint once per model it lists (once
    /// when it lists one model or serves any), with the deployment id its health, metrics and
    /// attempts are kept under.
    ///
    /// ```
    /// use llm_tower_core::{Endpoint, ModelRoute};
    /// use llm_tower_fallback::{FallbackLayer, HealthRegistry};
    ///
    /// let endpoints = [
    ///     Endpoint::builder("azure", "http://127.0.0.1:1")
    ///         .models([ModelRoute::alias("gpt-4o", "gpt4o-prod"), ModelRoute::from("gpt-4o-mini")])
    ///         .build()
    ///         .unwrap(),
    ///     Endpoint::builder("openai", "http://127.0.0.1:2").models(["gpt-4o"]).build().unwrap(),
    /// ];
    /// let layer = FallbackLayer::builder(endpoints).build(HealthRegistry::new()).unwrap();
    /// let ids: Vec<_> = layer.deployments().map(|(id, _, _)| id.to_string()).collect();
    /// assert_eq!(ids, ["azure/gpt-4o", "azure/gpt-4o-mini", "openai"]);
    /// assert_eq!(layer.models(), ["gpt-4o", "gpt-4o-mini"]);
    /// ```
    pub fn deployments(
        &self,
    ) -> impl Iterator<Item = (&EndpointId, Option<&ModelRoute>, &Arc<Endpoint>)> {
        self.balancer
            .pool
            .members
            .iter()
            .map(|m| (m.id(), m.route.as_ref(), &m.endpoint))
    }

    /// The model names endpoints list, sorted (the names clients may ask for; an endpoint
    /// that serves any model adds none).
    pub fn models(&self) -> Vec<&str> {
        self.balancer.pool.listed_models().map(|m| &**m).collect()
    }

    /// The model fallback chains in force.
    pub fn model_fallbacks(&self) -> &ModelFallbacks {
        &self.balancer.models
    }

    /// The settings in force.
    pub fn settings(&self) -> &FallbackSettings {
        &self.balancer.settings
    }

    /// Starts the active health checks of the endpoints that have a
    /// [`HealthCheck`](llm_tower_core::HealthCheck), sending them through `probe`: the part of
    /// the stack below retry (typically `AuthLayer` over the HTTP client), so that checks
    /// carry the endpoint's key and use the same connections as traffic, and are never
    /// retried. The checker is one background task for every clone of this layer and the
    /// services built from it; it ends when the last of them is dropped. Until it runs,
    /// the next request after a cooldown is the half-open probe, as without checks.
    ///
    /// Returns whether the checker started now: not when no endpoint has a check, or when it
    /// already runs.
    ///
    /// # Errors
    ///
    /// Outside a Tokio runtime, where the checker cannot run (naming an endpoint with a
    /// check): without it, the next request after a cooldown would be the probe.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{Request, Response};
    /// use llm_tower_core::{BufferedBody, Endpoint, HealthCheck};
    /// use llm_tower_fallback::{FallbackLayer, HealthRegistry};
    /// use tower::service_fn;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let check = HealthCheck { interval: Some(Duration::from_secs(10)), ..HealthCheck::default() };
    /// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1/v1").health_check(check).build().unwrap();
    /// let registry = HealthRegistry::new();
    /// let layer = FallbackLayer::builder([endpoint]).build(registry.clone()).unwrap();
    /// // A stand-in for auth over a client: every check answers 200.
    /// let probe = service_fn(|_: Request<BufferedBody>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    /// });
    /// assert!(layer.start_health_checks(probe).unwrap());
    /// assert!(!layer.start_health_checks(probe).unwrap(), "one checker per layer");
    /// tokio::time::sleep(Duration::from_secs(2)).await;
    /// assert!(registry.get("a").unwrap().last_check.unwrap().passed);
    /// # }
    /// ```
    #[must_use = "the checker may not have started: see the result"]
    pub fn start_health_checks(&self, probe: impl CheckService) -> Result<bool, ConfigError> {
        self.balancer.start_health_checks(probe)
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;

    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback::new(inner, self.balancer.clone())
    }
}
