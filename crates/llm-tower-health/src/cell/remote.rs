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
//! - Events carry when they happened, and a stale one changes nothing: an ejection from
//!   before the deployment was last seen answering (here or elsewhere), or a restore from
//!   before the newest word of the local cooldown (when it began, or when a later failure
//!   pushed its deadline out). Events can come late: kept over an outage, or read
//!   back from a key after a reconnect.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::time::Instant;

use super::EndpointHealth;

/// A deployment's current cooldown, as published to other replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cooldown {
    pub(crate) until: Instant,
    /// The deadline is the upstream's `Retry-After`.
    pub(crate) retry_after: bool,
    /// Ejections since the last success.
    pub(crate) ejections: u32,
    /// The newest word that it is out: when the cooldown began, or when a later failure
    /// pushed its deadline out.
    pub(crate) since: Instant,
    /// The deadline was set by another replica's event.
    pub(crate) remote: bool,
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
            since: state.since.unwrap_or(now),
            remote: state.remote,
        })
    }

    /// Another replica ejected this deployment at `cooldown.since` until `cooldown.until`.
    /// Returns whether the local deadline moved.
    pub(crate) fn apply_remote_ejection(&self, cooldown: Cooldown, now: Instant) -> bool {
        if cooldown.until <= now {
            return false;
        }
        let mut state = self.lock();
        if state.restored_at.is_some_and(|at| at >= cooldown.since) {
            // It answered after that ejection.
            return false;
        }
        // Said when that replica ejected it, not when this one heard.
        if !state.push_deadline(cooldown.since.min(now), now, cooldown.until, true) {
            return false;
        }
        state.retry_after = cooldown.retry_after;
        state.ejections = state.ejections.max(cooldown.ejections);
        self.unhealthy.store(true, Ordering::Release);
        true
    }

    /// Another replica saw this deployment answer at `at` (`told` by its clock): a local
    /// cooldown whose newest word is from before then ends now. The restore with the
    /// latest stamp told so far, told again, changes nothing: read back from Redis, its
    /// `at` would no longer be clamped to when it was first heard. (Only that one: stamps
    /// of different replicas' clocks do not order their restores.) Returns whether it ended
    /// a cooldown.
    pub(crate) fn apply_remote_restore(&self, at: Instant, told: SystemTime, now: Instant) -> bool {
        let mut state = self.lock();
        if state.restore_told == Some(told) {
            return false;
        }
        state.restore_told = state.restore_told.max(Some(told));
        state.restored_at = Some(state.restored_at.map_or(at, |known| known.max(at)));
        match state.until {
            Some(until) if until > now && state.since.is_none_or(|since| since < at) => {
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
    use crate::cell::{Admission, HealthPolicy};

    const POLICY: HealthPolicy = HealthPolicy {
        unhealthy_threshold: 1,
        max_cooldown: Duration::from_secs(60),
        max_probe_interval: Duration::from_secs(10),
    };

    /// A restore's time by its replica's clock, never told before (each call is later).
    fn told() -> SystemTime {
        static TOLD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(TOLD.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn remote(until: Instant) -> Cooldown {
        Cooldown {
            until,
            retry_after: true,
            ejections: 3,
            since: Instant::now(),
            remote: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_ejection_never_shortens_the_local_deadline() {
        let now = Instant::now();
        let cell = Arc::new(EndpointHealth::default());
        cell.record_failure(now, Duration::from_secs(20), None, None, POLICY);
        assert!(!cell.apply_remote_ejection(remote(now + Duration::from_secs(5)), now));
        assert_eq!(cell.probe_due(), Some(now + Duration::from_secs(20)));

        assert!(cell.apply_remote_ejection(remote(now + Duration::from_secs(30)), now));
        let cooldown = cell.cooldown(now).unwrap();
        assert_eq!(cooldown.until, now + Duration::from_secs(30));
        assert!(cooldown.remote && cooldown.retry_after);
        assert_eq!(
            cooldown.since, now,
            "the cooldown began with the local ejection"
        );
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
        assert!(
            !cell.apply_remote_restore(now, told(), now),
            "healthy: nothing to do"
        );
        cell.record_failure(now, Duration::from_secs(20), None, None, POLICY);
        assert!(
            !cell.apply_remote_restore(now, told(), now),
            "not after the cooldown began"
        );
        let later = now + Duration::from_millis(1);
        assert!(cell.apply_remote_restore(later, told(), later));
        assert!(matches!(cell.admit(later), Admission::Probe(_)));
        assert!(cell.cooldown(later).is_none());
        // Not restored until something answers here.
        assert!(!cell.is_healthy());
    }

    /// Two replicas' probes of the same half-open round both fail: the second hears the
    /// first's ejection (count 2) while its probe is in flight. Its failure is the same
    /// round's verdict, not one more: it must not escalate past the fleet again.
    #[tokio::test(start_paused = true)]
    async fn probes_of_the_same_round_escalate_once() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let (a, b) = (
            Arc::new(EndpointHealth::default()),
            Arc::new(EndpointHealth::default()),
        );
        for cell in [&a, &b] {
            cell.record_failure(t0, second, None, None, POLICY);
        }
        let open = t0 + second;
        let (Admission::Probe(pa), Admission::Probe(pb)) = (a.admit(open), b.admit(open)) else {
            panic!("both half-open");
        };
        let first = a.record_failure(open, second, None, Some(pa), POLICY);
        assert_eq!(first, Some(second * 2));
        let told = a.cooldown(open).unwrap();
        assert!(b.apply_remote_ejection(
            Cooldown {
                remote: true,
                ..told
            },
            open
        ));
        let later = open + Duration::from_millis(10);
        let second_probe = b.record_failure(later, second, None, Some(pb), POLICY);
        assert_eq!(
            b.cooldown(later).unwrap().ejections,
            2,
            "one round, one escalation"
        );
        assert_eq!(second_probe, Some(second * 2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejection_after_a_cooldown_ended_is_a_new_cooldown() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let cell = Arc::new(EndpointHealth::default());
        cell.record_failure(t0, second * 20, None, None, POLICY);
        // Another replica saw it answer at t0 + 1 s: half-open here.
        assert!(cell.apply_remote_restore(t0 + second, told(), t0 + second));
        // A third saw it fail again at t0 + 3 s.
        let again = Cooldown {
            since: t0 + second * 3,
            ..remote(t0 + second * 30)
        };
        assert!(cell.apply_remote_ejection(again, t0 + second * 3));
        // A restore from t0 + 2 s comes late: it is older than this cooldown.
        assert!(!cell.apply_remote_restore(t0 + second * 2, told(), t0 + second * 4));
        assert!(matches!(cell.admit(t0 + second * 4), Admission::Closed(_)));

        // The same for a local failure (a late one, with a Retry-After) after a 1 s
        // cooldown ended.
        let cell = Arc::new(EndpointHealth::default());
        cell.record_failure(t0, second, None, None, POLICY);
        let late = t0 + second * 3;
        cell.record_failure(late, second * 20, Some(second * 10), None, POLICY);
        assert!(!cell.apply_remote_restore(t0 + second * 2, told(), late));
        assert!(matches!(cell.admit(late), Admission::Closed(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_that_pushes_a_cooldown_out_makes_older_restores_stale() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        // Ejected at t0; at t0 + 2 s a request sent before then comes back `Retry-After: 50`.
        let cell = Arc::new(EndpointHealth::default());
        cell.record_failure(t0, second * 20, None, None, POLICY);
        let pushed = t0 + second * 2;
        assert!(
            cell.record_failure(pushed, second * 20, Some(second * 50), None, POLICY)
                .is_some()
        );
        assert_eq!(
            cell.cooldown(pushed).unwrap().since,
            pushed,
            "what it tells"
        );
        // Another replica saw it answer at t0 + 1 s, before the Retry-After.
        assert!(!cell.apply_remote_restore(t0 + second, told(), t0 + second * 3));
        assert!(matches!(cell.admit(t0 + second * 3), Admission::Closed(_)));

        // The same when another replica's later ejection pushed it out.
        let cell = Arc::new(EndpointHealth::default());
        cell.record_failure(t0, second * 10, None, None, POLICY);
        let later = Cooldown {
            since: pushed,
            ..remote(t0 + second * 40)
        };
        assert!(cell.apply_remote_ejection(later, pushed));
        assert!(!cell.apply_remote_restore(t0 + second, told(), t0 + second * 3));
        // A restore from after both still ends it.
        let after = t0 + second * 3;
        assert!(cell.apply_remote_restore(after, told(), after));
    }

    #[tokio::test(start_paused = true)]
    async fn word_that_does_not_move_the_deadline_leaves_it_open_to_restores() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        // A late failure whose Retry-After (1 s) is shorter than the 20 s in force.
        let cell = Arc::new(EndpointHealth::default());
        cell.record_failure(t0, second * 20, None, None, POLICY);
        assert!(
            cell.record_failure(t0 + second * 2, second * 20, Some(second), None, POLICY)
                .is_none(),
            "not moved, not told"
        );
        assert_eq!(cell.cooldown(t0 + second * 2).unwrap().since, t0);

        // Another replica's shorter ejection: a restore from between the two still ends
        // the deadline in force.
        let cell = Arc::new(EndpointHealth::default());
        cell.record_failure(t0, second * 30, None, None, POLICY);
        let shorter = Cooldown {
            since: t0 + second * 2,
            ..remote(t0 + second * 7)
        };
        assert!(!cell.apply_remote_ejection(shorter, t0 + second * 2));
        assert!(cell.apply_remote_restore(t0 + second, told(), t0 + second * 8));
        assert!(matches!(cell.admit(t0 + second * 8), Admission::Probe(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_restore_stamped_by_a_slower_clock_still_counts() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let wall = SystemTime::now();
        let cell = Arc::new(EndpointHealth::default());
        cell.record_failure(t0, second * 2, None, None, POLICY);
        // B, whose clock is 5 s ahead, restores it; the probe here fails.
        assert!(cell.apply_remote_restore(t0 + second, wall + second * 6, t0 + second));
        let Admission::Probe(probe) = cell.admit(t0 + second) else {
            panic!("half-open");
        };
        cell.record_failure(t0 + second, second * 2, None, Some(probe), POLICY);
        // C, whose clock is right, sees it answer at t0 + 3 s.
        assert!(cell.apply_remote_restore(t0 + second * 3, wall + second * 3, t0 + second * 3));
        // B's restore read back from Redis: the latest stamp, told again.
        assert!(!cell.apply_remote_restore(t0 + second, wall + second * 6, t0 + second * 3));
    }

    #[tokio::test(start_paused = true)]
    async fn stale_events_change_nothing() {
        let t0 = Instant::now();
        let cell = Arc::new(EndpointHealth::default());
        let second = Duration::from_secs(1);
        // Ejected here at t0 + 1 s, and restored at t0 + 2 s by a probe that answered.
        let at = t0 + second;
        cell.record_failure(at, second, None, None, POLICY);
        let Admission::Probe(probe) = cell.admit(at + second) else {
            panic!("half-open");
        };
        assert!(cell.record_success(Some(probe), at + second));
        // Another replica's ejection from t0 arrives late (kept over an outage): stale.
        let old = Cooldown {
            since: t0,
            ..remote(t0 + Duration::from_secs(30))
        };
        assert!(!cell.apply_remote_ejection(old, at + second));
        assert!(cell.is_healthy());
        // One from after the restore is applied.
        let new = Cooldown {
            since: at + second * 2,
            ..remote(t0 + Duration::from_secs(30))
        };
        assert!(cell.apply_remote_ejection(new, at + second * 2));

        // A restore from before a local re-ejection leaves the new cooldown alone.
        let cell = Arc::new(EndpointHealth::default());
        cell.record_failure(at, second * 10, None, None, POLICY);
        assert!(!cell.apply_remote_restore(t0, told(), at));
        assert!(matches!(cell.admit(at), Admission::Closed(_)));
    }
}
