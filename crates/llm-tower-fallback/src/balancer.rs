//! [`Balancer`]: what every clone of a [`Fallback`](crate::Fallback) shares, and the decisions
//! it makes between attempts: which endpoint first, which next, and what a failure costs.

use std::time::Duration;

use http::Response;
use llm_tower_core::{BoxError, CooldownHint, Endpoint, Error, ErrorKind, retry_after};
use tokio::time::Instant;

use crate::health::{HealthPolicy, ProbeGuard};
use crate::registry::HealthRegistry;
use crate::select::{Member, Pick, Pool, Soonest};
use crate::settings::{FallbackSettings, WhenAllUnhealthy};

pub(crate) struct Balancer {
    pub(crate) pool: Pool,
    pub(crate) registry: HealthRegistry,
    pub(crate) settings: FallbackSettings,
}

impl Balancer {
    pub(crate) fn new(
        endpoints: Vec<Endpoint>,
        registry: HealthRegistry,
        settings: FallbackSettings,
    ) -> Self {
        Self {
            pool: Pool::new(endpoints, &registry, settings.strategy),
            registry,
            settings,
        }
    }

    fn health_policy(&self) -> HealthPolicy {
        HealthPolicy {
            unhealthy_threshold: self.settings.unhealthy_threshold,
            max_cooldown: self.settings.max_cooldown,
        }
    }

    /// The first endpoint for a request, or what `when_all_unhealthy` says.
    pub(crate) fn first_pick(&self, now: Instant) -> Result<Pick, Error> {
        let mut soonest = Soonest::default();
        match self.pool.first(now, &mut soonest) {
            Some(pick) => Ok(pick),
            None => self.when_all_unhealthy(&soonest),
        }
    }

    /// The endpoint to fall back to after `failed`, if any.
    pub(crate) fn fallback_pick(
        &self,
        failed: usize,
        tried: &[bool],
        now: Instant,
    ) -> Option<Pick> {
        let mut soonest = Soonest::default();
        self.pool
            .next(failed, tried, now, &mut soonest)
            .or_else(|| {
                let (index, _) = soonest.0?;
                (self.settings.when_all_unhealthy == WhenAllUnhealthy::TrySoonest)
                    .then_some(Pick { index, probe: None })
            })
    }

    /// Counts a failed request against the endpoint, with the upstream's cooldown hint.
    pub(crate) fn record_failure<RB>(
        &self,
        member: &Member,
        probe: Option<ProbeGuard>,
        result: &Result<Response<RB>, BoxError>,
        now: Instant,
    ) {
        let hint = result.as_ref().ok().and_then(|response| {
            response
                .extensions()
                .get::<CooldownHint>()
                .map(|h| h.0)
                .or_else(|| retry_after(response.headers()))
        });
        let endpoint = &member.endpoint;
        if let Some(cooldown) = member.health.record_failure(
            now,
            endpoint.health_check_interval(),
            hint,
            probe,
            self.health_policy(),
        ) {
            tracing::warn!(
                endpoint = %endpoint.id(),
                cooldown_ms = cooldown.as_millis() as u64,
                "endpoint ejected"
            );
        }
    }

    /// A response stream of `member` failed after its head was sent (stalled past its idle
    /// timeout, reset, malformed): too late to fall back, but the endpoint is to blame.
    pub(crate) fn record_stream_failure(&self, member: usize, kind: ErrorKind) {
        let member = &self.pool.members[member];
        let endpoint = &member.endpoint;
        tracing::warn!(endpoint = %endpoint.id(), %kind, "response stream failed after its head was sent");
        if let Some(cooldown) = member.health.record_failure(
            Instant::now(),
            endpoint.health_check_interval(),
            None,
            None,
            self.health_policy(),
        ) {
            tracing::warn!(
                endpoint = %endpoint.id(),
                cooldown_ms = cooldown.as_millis() as u64,
                "endpoint ejected"
            );
        }
    }

    /// No endpoint admits the request: try the one whose cooldown ends first, or fail with 503.
    fn when_all_unhealthy(&self, soonest: &Soonest) -> Result<Pick, Error> {
        let Some((index, until)) = soonest.0 else {
            return Err(Error::new(
                ErrorKind::Internal,
                "the balancer has no endpoints",
            ));
        };
        match self.settings.when_all_unhealthy {
            WhenAllUnhealthy::TrySoonest => {
                tracing::debug!(
                    endpoint = %self.pool.members[index].endpoint.id(),
                    "every endpoint is cooling down; trying the one that returns first"
                );
                Ok(Pick { index, probe: None })
            }
            WhenAllUnhealthy::Fail => {
                let wait = until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1));
                Err(Error::new(
                    ErrorKind::NoEndpointAvailable,
                    "every upstream endpoint is cooling down after failures; retry later",
                )
                .with_retry_after(wait))
            }
        }
    }
}
