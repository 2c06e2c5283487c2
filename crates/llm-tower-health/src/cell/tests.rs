//! The health state machine's tests: named transitions, and a property test over random
//! sequences of them.
#![allow(clippy::float_cmp)] // paused time makes these exact

use super::*;

const POLICY: HealthPolicy = HealthPolicy {
    unhealthy_threshold: 1,
    max_cooldown: Duration::from_secs(60),
    max_probe_interval: Duration::from_secs(10),
};
const FIVE: Duration = Duration::from_secs(5);

fn probe(cell: &Arc<EndpointHealth>, now: Instant) -> ProbeGuard {
    match cell.admit(now) {
        Admission::Probe(p) => p,
        other => panic!("expected a probe, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn eject_probe_and_recover() {
    let cell = Arc::new(EndpointHealth::default());
    let t0 = Instant::now();
    assert!(matches!(cell.admit(t0), Admission::Open));
    assert_eq!(
        cell.record_failure(t0, FIVE, None, None, POLICY),
        Some(FIVE)
    );
    assert!(
        matches!(cell.admit(t0 + Duration::from_secs(4)), Admission::Closed(u) if u == t0 + FIVE)
    );
    let later = t0 + FIVE;
    let p = probe(&cell, later);
    // Only one probe.
    assert!(matches!(cell.admit(later), Admission::Closed(_)));
    cell.record_success(Some(p), later);
    assert!(cell.is_healthy());
    assert!(matches!(cell.admit(later), Admission::Open));
}

#[tokio::test(start_paused = true)]
async fn probe_failure_doubles_and_caps() {
    let cell = Arc::new(EndpointHealth::default());
    let policy = HealthPolicy {
        max_cooldown: Duration::from_secs(18),
        ..POLICY
    };
    let mut now = Instant::now();
    assert_eq!(
        cell.record_failure(now, FIVE, None, None, policy),
        Some(FIVE)
    );
    for expected in [10, 18, 18] {
        now += Duration::from_secs(60);
        let p = probe(&cell, now);
        let cooldown = cell.record_failure(now, FIVE, None, Some(p), policy);
        assert_eq!(cooldown, Some(Duration::from_secs(expected)));
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_frees_the_slot() {
    let cell = Arc::new(EndpointHealth::default());
    let now = Instant::now();
    cell.record_failure(now, FIVE, None, None, POLICY);
    let p = probe(&cell, now + FIVE);
    drop(p);
    let _again = probe(&cell, now + FIVE);
}

#[tokio::test(start_paused = true)]
async fn a_later_deadline_never_shortens_an_existing_one() {
    let cell = Arc::new(EndpointHealth::default());
    let now = Instant::now();
    let ten = Duration::from_secs(10);
    assert_eq!(
        cell.record_failure(now, FIVE, Some(ten), None, POLICY),
        Some(ten)
    );
    let until = |cell: &EndpointHealth| {
        cell.snapshot(EndpointId::from("x"), now)
            .seconds_until_return
    };
    // A late failure with a shorter Retry-After leaves the deadline alone.
    assert_eq!(
        cell.record_failure(now, FIVE, Some(Duration::from_secs(2)), None, POLICY),
        None
    );
    assert_eq!(until(&cell), 10.0);
    // A longer one pushes it out (and says so, for other replicas), without counting as
    // another ejection.
    let twenty = Duration::from_secs(20);
    assert_eq!(
        cell.record_failure(now, FIVE, Some(twenty), None, POLICY),
        Some(twenty)
    );
    assert!(cell.cooldown(now).unwrap().retry_after);
    assert_eq!(until(&cell), 20.0);
    assert_eq!(cell.snapshot(EndpointId::from("x"), now).ejections, 1);
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Advance(u64),
        Admit,
        ProbeSucceeds,
        ProbeFails(Option<u64>),
        ProbeCancelled,
        LateFailure(Option<u64>),
        /// A request that is not the probe succeeds; it was sent this many ms ago.
        LateSuccess(u64),
        /// A health checker starts (true) or stops (false) probing this cell.
        Checker(bool),
        /// The checker takes the probe slot.
        CheckAdmit,
        /// The check that holds the slot passes (or fails, with a `Retry-After`).
        CheckPasses,
        CheckFails(Option<u64>),
        /// A periodic check (no slot) passes or fails.
        PeriodicPasses,
        PeriodicFails(Option<u64>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let hint = proptest::option::of(0u64..120_000);
        prop_oneof![
            (0u64..20_000).prop_map(Op::Advance),
            Just(Op::Admit),
            Just(Op::ProbeSucceeds),
            hint.clone().prop_map(Op::ProbeFails),
            Just(Op::ProbeCancelled),
            hint.clone().prop_map(Op::LateFailure),
            (0u64..30_000).prop_map(Op::LateSuccess),
            any::<bool>().prop_map(Op::Checker),
            Just(Op::CheckAdmit),
            Just(Op::CheckPasses),
            hint.clone().prop_map(Op::CheckFails),
            Just(Op::PeriodicPasses),
            hint.prop_map(Op::PeriodicFails),
        ]
    }

    proptest! {
        /// Whatever happens, at most one probe is out, a request is never the probe while
        /// a checker runs, a deadline only moves later while the endpoint stays unhealthy,
        /// cooldowns stay within [interval, max_cooldown], a success makes the endpoint
        /// healthy, a passing probe check puts it on probation, and the first failure on
        /// probation ejects it again, escalating.
        #[test]
        fn health_state_machine_invariants(
            ops in proptest::collection::vec(op(), 1..200),
            threshold in 1u32..4,
            interval_ms in 1u64..10_000,
        ) {
            let policy = HealthPolicy { unhealthy_threshold: threshold, max_cooldown: Duration::from_secs(60), max_probe_interval: Duration::from_secs(10) };
            let interval = Duration::from_millis(interval_ms);
            let cell = Arc::new(EndpointHealth::default());
            let start = Instant::now();
            let mut now = start;
            let mut probe: Option<ProbeGuard> = None;
            let mut last_until: Option<Instant> = None;
            let mut checkers = 0u32;
            for op in ops {
                let was_on_probation = cell.lock().probation;
                let ejections_before = cell.lock().ejections;
                match op {
                    Op::Advance(ms) => now += Duration::from_millis(ms),
                    Op::Admit => match cell.admit(now) {
                        Admission::Open => prop_assert!(cell.is_healthy()),
                        Admission::Probation => prop_assert!(was_on_probation),
                        Admission::Probe(guard) => {
                            prop_assert!(probe.is_none(), "a second probe while one is out");
                            prop_assert_eq!(checkers, 0, "a request probed while a checker runs");
                            probe = Some(guard);
                        }
                        Admission::Closed(until) => {
                            prop_assert!(until > now || probe.is_some() || checkers > 0, "closed without reason");
                        }
                    },
                    Op::ProbeSucceeds => {
                        if let Some(guard) = probe.take() {
                            cell.record_success(Some(guard), now);
                            prop_assert!(cell.is_healthy());
                        }
                    }
                    Op::ProbeFails(hint) => {
                        if let Some(guard) = probe.take() {
                            let cooldown = cell.record_failure(now, interval, hint.map(Duration::from_millis), Some(guard), policy);
                            let cooldown = cooldown.expect("a failed probe always ejects again");
                            prop_assert!(cooldown >= interval.min(policy.max_cooldown));
                            prop_assert!(cooldown <= policy.max_cooldown);
                        }
                    }
                    Op::ProbeCancelled => drop(probe.take()),
                    Op::LateFailure(hint) => {
                        let hint = hint.map(Duration::from_millis);
                        let cooldown = cell.record_failure(now, interval, hint, None, policy);
                        if was_on_probation {
                            prop_assert!(cooldown.is_some(), "a failure on probation ejects");
                            prop_assert_eq!(cell.lock().ejections, ejections_before + 1);
                        }
                        if let Some(cooldown) = cooldown {
                            let from_hint = hint.is_some_and(|h| cooldown == h.min(policy.max_cooldown));
                            prop_assert!(from_hint || cooldown >= interval.min(policy.max_cooldown));
                            prop_assert!(cooldown <= policy.max_cooldown);
                        }
                    }
                    Op::Checker(true) => {
                        cell.checker_started();
                        checkers += 1;
                    }
                    Op::Checker(false) => {
                        if checkers > 0 {
                            cell.checker_stopped();
                            checkers -= 1;
                        }
                    }
                    Op::CheckAdmit => {
                        if let Some(guard) = cell.admit_check(now) {
                            prop_assert!(probe.is_none(), "a second probe while one is out");
                            probe = Some(guard);
                        }
                    }
                    Op::CheckPasses => {
                        if let Some(guard) = probe.take() {
                            let until = cell.lock().until;
                            cell.check_passed(Some(guard), now);
                            if until.is_some_and(|u| u <= now) {
                                prop_assert!(cell.is_on_probation());
                                // Probation keeps the ejections: the next failure escalates.
                                prop_assert_eq!(cell.lock().ejections, ejections_before);
                            }
                        }
                    }
                    Op::CheckFails(hint) => {
                        if let Some(guard) = probe.take() {
                            let cooldown = cell.check_failed(Some(guard), now, interval, hint.map(Duration::from_millis), policy);
                            let cooldown = cooldown.expect("a failed probe check always ejects again");
                            prop_assert!(cooldown >= interval.min(policy.max_cooldown));
                        }
                    }
                    Op::PeriodicPasses => {
                        let failures = cell.consecutive_failures.load(Ordering::Relaxed);
                        cell.check_passed(None, now);
                        prop_assert_eq!(cell.is_healthy(), !was_on_probation && cell.lock().until.is_none());
                        // Requests' failures are theirs to clear.
                        prop_assert_eq!(cell.consecutive_failures.load(Ordering::Relaxed), failures);
                    }
                    Op::PeriodicFails(hint) => {
                        let hint = hint.map(Duration::from_millis);
                        if let Some(cooldown) = cell.check_failed(None, now, interval, hint, policy) {
                            prop_assert!(cooldown <= policy.max_cooldown);
                        }
                    }
                    Op::LateSuccess(ago) => {
                        let sent = now - Duration::from_millis(ago);
                        let (until, since, restored_at) = {
                            let state = cell.lock();
                            (state.until, state.since, state.restored_at)
                        };
                        let stale = match until {
                            Some(_) => since.is_some_and(|since| sent < since),
                            None => was_on_probation && restored_at.is_some_and(|at| sent < at),
                        };
                        cell.record_success(None, sent);
                        if stale {
                            // Sent before the deployment was put out: it changes nothing.
                            prop_assert_eq!(cell.lock().until, until);
                            prop_assert_eq!(cell.lock().probation, was_on_probation);
                        } else {
                            prop_assert!(cell.is_healthy());
                            // A success clears the probe slot with everything else.
                            if let Some(guard) = probe.take() {
                                guard.resolved();
                            }
                        }
                    }
                }
                let state = cell.lock();
                prop_assert_eq!(state.until.is_some() || state.probation, !cell.is_healthy());
                prop_assert_eq!(state.probe.is_some(), probe.is_some());
                match (last_until, state.until) {
                    (Some(before), Some(after)) => prop_assert!(after >= before, "deadline moved earlier"),
                    (_, until) => last_until = until,
                }
                if let Some(until) = state.until {
                    last_until = Some(until);
                    prop_assert!(until <= now + policy.max_cooldown);
                }
            }
        }
    }
}

/// While ejected, a deployment is probed at least every `max_probe_interval`, however far its
/// cooldown escalated; a failed probe still escalates the cooldown. A `Retry-After` is
/// waited out in full.
#[tokio::test(start_paused = true)]
async fn probes_come_every_max_probe_interval_within_a_long_cooldown() {
    let ten = Duration::from_secs(10);
    let placement = || Placement {
        endpoint: "a".into(),
        model: None,
        priority: 0,
    };
    let cell = Arc::new(EndpointHealth::default());
    cell.place(placement(), ten);
    let t0 = Instant::now();
    let long = Duration::from_secs(40);
    assert_eq!(
        cell.record_failure(t0, long, None, None, POLICY),
        Some(long)
    );
    assert!(matches!(
        cell.admit(t0 + Duration::from_secs(9)),
        Admission::Closed(_)
    ));
    assert_eq!(cell.probe_due(), Some(t0 + ten));
    let Admission::Probe(probe) = cell.admit(t0 + ten) else {
        panic!("a probe after max_probe_interval, 30 s before the cooldown ends");
    };
    // One probe at a time.
    assert!(matches!(cell.admit(t0 + ten), Admission::Closed(_)));
    let cooldown = cell.record_failure(t0 + ten, long, None, Some(probe), POLICY);
    assert_eq!(
        cooldown,
        Some(POLICY.max_cooldown.min(long * 2)),
        "the failed probe escalates"
    );
    assert!(matches!(
        cell.admit(t0 + ten * 2 - Duration::from_millis(1)),
        Admission::Closed(_)
    ));
    let Admission::Probe(probe) = cell.admit(t0 + ten * 2) else {
        panic!("the next probe another max_probe_interval later");
    };
    assert!(cell.record_success(Some(probe), t0 + ten * 2));
    assert!(matches!(cell.admit(t0 + ten * 2), Admission::Open));

    // The upstream asked for a pause: no early probe.
    let cell = Arc::new(EndpointHealth::default());
    cell.place(placement(), ten);
    let t1 = Instant::now();
    cell.record_failure(t1, FIVE, Some(Duration::from_secs(30)), None, POLICY);
    assert!(matches!(
        cell.admit(t1 + Duration::from_secs(29)),
        Admission::Closed(_)
    ));
    assert!(matches!(
        cell.admit(t1 + Duration::from_secs(30)),
        Admission::Probe(_)
    ));
}
