//! What other replicas' events do to a registry ([`HealthRegistry::apply`]), and what it
//! tells them when it (re)connects ([`HealthRegistry::ejections`],
//! [`HealthRegistry::rate_limits`]). The events themselves are `events.rs`'s; the cell's side
//! of a remote ejection or restore is `cell/remote.rs`'s.

use std::time::Duration;

use tokio::time::Instant;

use super::HealthRegistry;
use crate::cell::Cooldown;
use crate::events::{self, Clocks, HealthEvent};

impl HealthRegistry {
    /// Applies another replica's event to the deployment it names, if this registry has it
    /// (ids of deployments this configuration does not have are ignored). An ejection only
    /// pushes the local deadline out, and never beyond this configuration's `max_cooldown`
    /// from now (a replica with a wrong clock, or a bad message, cannot shut a deployment
    /// out for longer than a local failure could); a restore ends the local cooldown now,
    /// so that the half-open probe decides; rate limits replace each window they are newer
    /// on (capped at `max_cooldown` too). Returns whether anything changed. Applied
    /// events are not local events: a subscriber does not see them.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use llm_tower_core::Endpoint;
    /// use llm_tower_health::{DeploymentHealth, HealthEvent, HealthPolicy, HealthRegistry, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = HealthRegistry::new();
    /// let endpoint = Endpoint::builder("a", "http://127.0.0.1:1").build().unwrap();
    /// let policy = HealthPolicy { unhealthy_threshold: 1, max_cooldown: std::time::Duration::from_secs(60), max_probe_interval: std::time::Duration::from_secs(10) };
    /// let _a = DeploymentHealth::new(&registry, "a".into(), &endpoint, None, policy);
    /// let now = SystemTime::now();
    /// let until = now + Duration::from_secs(30);
    /// let ejected = HealthEvent::Ejected { id: "a".into(), at: now, until, retry_after: true, ejections: 1 };
    /// assert!(registry.apply(&ejected));
    /// assert_eq!(registry.get("a").unwrap().status, Status::Ejected);
    /// let restored = HealthEvent::Restored { id: "a".into(), at: now + Duration::from_millis(5) };
    /// assert!(registry.apply(&restored));
    /// assert_eq!(registry.get("a").unwrap().status, Status::HalfOpen);
    /// assert!(!registry.apply(&HealthEvent::Restored { id: "unknown".into(), at: now }));
    /// # }
    /// ```
    pub fn apply(&self, event: &HealthEvent) -> bool {
        let Some(cell) = self.existing(event.id()) else {
            return false;
        };
        let clocks = Clocks::now();
        let now = clocks.instant;
        let changed = match event {
            HealthEvent::Ejected {
                at,
                until,
                retry_after,
                ejections,
                ..
            } => {
                let Ok(remaining) = until.duration_since(clocks.wall) else {
                    return false;
                };
                let remaining = remaining.min(self.max_cooldown());
                let cooldown = Cooldown {
                    until: now + remaining,
                    retry_after: *retry_after,
                    ejections: *ejections,
                    since: clocks.instant(*at).min(now),
                    remote: true,
                };
                cell.apply_remote_ejection(cooldown, now)
            }
            HealthEvent::Restored { at, .. } => {
                cell.apply_remote_restore(clocks.instant(*at).min(now), *at, now)
            }
            HealthEvent::RateLimits { at, limits, .. } => {
                if event.remaining(clocks.wall) == Some(Duration::ZERO) {
                    return false;
                }
                // Skipped at most as long as a cooldown may last, as for a local reading.
                let limits = limits.capped(self.max_cooldown());
                let read = clocks.instant(*at).min(now);
                // No checker probes a deployment for its headroom: none to wake.
                return cell.headroom.apply_remote(&limits, *at, read, now);
            }
        };
        if changed {
            // A new deadline (or one that is over) for the checker that probes it.
            self.wake_checkers();
        }
        changed
    }

    /// The cooldowns in force that this replica found itself (not those another replica's
    /// event set), as events: what it tells the others when it (re)connects to them.
    ///
    /// ```
    /// use llm_tower_health::HealthRegistry;
    ///
    /// assert!(HealthRegistry::new().ejections().is_empty());
    /// ```
    pub fn ejections(&self) -> Vec<HealthEvent> {
        let now = Instant::now();
        self.cells()
            .into_iter()
            .filter(|(_, cell)| cell.cooldown(now).is_some_and(|c| !c.remote))
            .filter_map(|(id, cell)| events::ejection(&id, &cell))
            .collect()
    }

    /// What every deployment's provider last said of its rate limits, while a window has
    /// not reset, as events: what a replica tells the others when it (re)connects to them
    /// (an older word than theirs changes nothing there).
    ///
    /// ```
    /// use llm_tower_health::HealthRegistry;
    ///
    /// assert!(HealthRegistry::new().rate_limits().is_empty());
    /// ```
    pub fn rate_limits(&self) -> Vec<HealthEvent> {
        self.cells()
            .into_iter()
            .filter_map(|(id, cell)| events::rate_limits(&id, &cell))
            .collect()
    }
}
