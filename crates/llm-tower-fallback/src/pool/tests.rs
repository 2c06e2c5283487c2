//! Selection's unit tests: the weighted schedule, and `least_latency`'s costs.

use super::*;

#[tokio::test(start_paused = true)]
#[allow(clippy::float_cmp)] // the same inputs give the same cost, exactly
async fn a_deployment_without_a_score_starts_at_its_tiers_median() {
    let endpoints =
        ["a", "b", "c", "d"].map(|id| Endpoint::builder(id, "http://127.0.0.1:1").build().unwrap());
    let settings = FallbackSettings {
        strategy: Strategy::LeastLatency,
        ..FallbackSettings::default()
    };
    let pool = Pool::new(endpoints.into(), &[], &HealthRegistry::new(), &settings);
    let group = pool.only_any().unwrap();
    let tier = &group.tiers[0];
    let now = Instant::now();
    let cost = |slot| pool.latency_cost(group, tier, slot, now);
    // Nothing known: all the same, but for their load.
    assert_eq!(cost(0), cost(3));
    let busy = pool.members[0].health.start_attempt();
    assert!(cost(0) > cost(3));
    drop(busy);
    for (member, ms) in [(0, 10), (1, 30), (2, 90)] {
        pool.observe_latency(member, Duration::from_millis(ms));
    }
    let close = |a: f64, b: f64| (a - b).abs() < 1e-5;
    assert!(close(cost(3), 0.030), "{}", cost(3));
    // Seeded once: it now has an estimate of its own, and in-flight attempts weigh on it.
    let health = &pool.members[3].health;
    assert!(
        health
            .latency_estimate(now, settings.latency_decay)
            .is_some()
    );
    let _attempt = health.start_attempt();
    assert!(close(cost(3), 0.060));
    // A busy deployment's estimate does not decay while it has nothing to show.
    let later = now + Duration::from_secs(60);
    assert!(close(pool.latency_cost(group, tier, 3, later), 0.060));
    assert!(
        pool.latency_cost(group, tier, 2, later) < 0.001,
        "an idle one does"
    );
    // Restored after an ejection: it starts again from the median, not from its past.
    let bad_gateway = llm_tower_core::Outcome::Status(http::StatusCode::BAD_GATEWAY);
    for _ in 0..settings.unhealthy_threshold {
        health.failed(now, bad_gateway, None, None);
    }
    pool.observe_latency(3, Duration::from_secs(5));
    assert!(health.succeeded(now, None, false, None), "restored");
    assert!(close(cost(3), 0.060), "{}", cost(3));
}

#[test]
fn smooth_schedule_is_proportional_and_spread() {
    assert_eq!(smooth_weighted_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(smooth_weighted_schedule(&[2, 2]), [0, 1]);
    let big = smooth_weighted_schedule(&[1_000_000, 1]);
    assert!(big.len() as u64 <= MAX_SCHEDULE + 1);
    assert!(big.contains(&1));
}
