//! What other replicas' events do to a deployment (see `events.rs`), and what this one
//! tells them about its own ejections.
//!
//! - A remote ejection only ever pushes the local deadline out: it never shortens one, never
//!   restores, and never counts as a local ejection (`total_ejections` counts what this
//!   replica saw). It carries the remote escalation, so that a probe failing here doubles
//!   from where the fleet is.
//! - A remote restore ends the local cooldown now instead of at its deadline: the half-open
//!   probe (a request's, or this replica's checker's) decides, as it would have later. It
//!   does not restore: this replica has not seen the deployment answer.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::{EndpointHealth, extend};

/// A deployment's current cooldown, as published to other replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cooldown {
    pub(crate) until: Instant,
    /// The deadline is the upstream's `Retry-After`.
    pub(crate) retry_after: bool,
    /// Ejections since the last success.
    pub(crate) ejections: u32,
}

impl EndpointHealth {
    /// The cooldown in force, if it ends after `now`.
    pub(crate) fn cooldown(&self, now: Instant) -> Option<Cooldown> {
        if self.is_healthy() {
            return None;
        }
        let state = self.lock();
        let until = state.until.filter(|until| *until > now)?;
        Some(Cooldown {
            until,
            retry_after: state.retry_after,
            ejections: state.ejections,
        })
    }

    /// Another replica ejected this deployment until `cooldown.until`. Returns whether the
    /// local deadline moved.
    pub(crate) fn apply_remote_ejection(&self, cooldown: Cooldown, now: Instant) -> bool {
        if cooldown.until <= now {
            return false;
        }
        let mut state = self.lock();
        if state.until.is_some_and(|until| until >= cooldown.until) {
            return false;
        }
        extend(&mut state.until, cooldown.until);
        state.retry_after = cooldown.retry_after;
        state.ejections = state.ejections.max(cooldown.ejections);
        self.unhealthy.store(true, Ordering::Release);
        true
    }

    /// Another replica saw this deployment answer again: the local cooldown ends now. Returns
    /// whether it was cooling down.
    pub(crate) fn apply_remote_restore(&self, now: Instant) -> bool {
        if self.is_healthy() {
            return false;
        }
        let mut state = self.lock();
        match state.until {
            Some(until) if until > now => {
                state.until = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::health::{Admission, HealthPolicy};

    const POLICY: HealthPolicy = HealthPolicy {
        unhealthy_threshold: 1,
        max_cooldown: Duration::from_secs(60),
    };

    fn remote(until: Instant) -> Cooldown {
        Cooldown {
            until,
            retry_after: true,
            ejections: 3,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_ejection_never_shortens_the_local_deadline() {
        let now = Instant::now();
        let cell = Arc::new(EndpointHealth::default());
        cell.record_failure(now, Duration::from_secs(20), None, None, POLICY);
        assert!(!cell.apply_remote_ejection(remote(now + Duration::from_secs(5)), now));
        assert_eq!(cell.cooldown_end(), Some(now + Duration::from_secs(20)));

        assert!(cell.apply_remote_ejection(remote(now + Duration::from_secs(30)), now));
        let cooldown = cell.cooldown(now).unwrap();
        assert_eq!(cooldown, remote(now + Duration::from_secs(30)));
        // Not an ejection this replica saw.
        assert_eq!(cell.snapshot("a".into(), now).total_ejections, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_ejection_of_a_healthy_deployment_closes_it_until_its_deadline() {
        let now = Instant::now();
        let cell = Arc::new(EndpointHealth::default());
        assert!(
            !cell.apply_remote_ejection(remote(now), now),
            "already over"
        );
        assert!(cell.apply_remote_ejection(remote(now + Duration::from_secs(30)), now));
        assert!(matches!(cell.admit(now), Admission::Closed(_)));
        let later = now + Duration::from_secs(30);
        let Admission::Probe(probe) = cell.admit(later) else {
            panic!("half-open at the deadline");
        };
        // The probe fails: the cooldown doubles from the fleet's escalation (3 → 4: 8 × 1 s).
        let cooldown =
            cell.record_failure(later, Duration::from_secs(1), None, Some(probe), POLICY);
        assert_eq!(cooldown, Some(Duration::from_secs(8)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_restore_lets_the_probe_through_now() {
        let now = Instant::now();
        let cell = Arc::new(EndpointHealth::default());
        assert!(!cell.apply_remote_restore(now), "healthy: nothing to do");
        cell.record_failure(now, Duration::from_secs(20), None, None, POLICY);
        assert!(cell.apply_remote_restore(now));
        assert!(matches!(cell.admit(now), Admission::Probe(_)));
        assert!(cell.cooldown(now).is_none());
        // Not restored until something answers here.
        assert!(!cell.is_healthy());
    }
}
