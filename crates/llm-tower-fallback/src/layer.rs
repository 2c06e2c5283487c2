//! [`FallbackLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use llm_tower_core::{ConfigError, Endpoint};
use tower::Layer;

use crate::balancer::Balancer;
use crate::registry::HealthRegistry;
use crate::service::Fallback;
use crate::settings::{FallbackSettings, Strategy, WhenAllUnhealthy, check_endpoints};

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

    /// Validates and builds the layer over `registry`.
    ///
    /// # Errors
    ///
    /// No endpoints, duplicate ids, or a setting out of range ([`FallbackSettings::validate`]).
    pub fn build(self, registry: HealthRegistry) -> Result<FallbackLayer, ConfigError> {
        check_endpoints(&self.endpoints)?;
        self.settings.validate()?;
        Ok(FallbackLayer {
            balancer: Arc::new(Balancer::new(self.endpoints, registry, self.settings)),
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
        }
    }

    /// The health registry this layer reports to.
    pub fn registry(&self) -> &HealthRegistry {
        &self.balancer.registry
    }

    /// The endpoints, sorted by priority.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.balancer.pool.members.iter().map(|m| &m.endpoint)
    }

    /// The settings in force.
    pub fn settings(&self) -> &FallbackSettings {
        &self.balancer.settings
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;

    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback::new(inner, self.balancer.clone())
    }
}
