//! `least_latency`: the faster deployment gets most of the traffic, and a slow one that
//! gets none is tried again, so that its score can recover.

mod common;

use std::time::Duration;

use llm_tower_fallback::Strategy;
use llm_tower_mock::scripted::{ScriptedUpstream, Step};

use common::{Stack, ep};

const MS: Duration = Duration::from_millis(1);

fn answer_in(upstream: &ScriptedUpstream, endpoint: &str, latency: Duration) {
    upstream.set_default(endpoint, Step::delay(latency, Step::Status(200)));
}

/// Sends `n` requests one after another, 50 ms apart, and returns how many went to `id`.
async fn send(stack: &Stack, n: usize, id: &str) -> usize {
    let before = stack.upstream.count(id);
    for _ in 0..n {
        stack.ok().await;
        tokio::time::sleep(50 * MS).await;
    }
    stack.upstream.count(id) - before
}

#[tokio::test(start_paused = true)]
async fn the_fast_deployment_gets_most_requests_and_the_slow_one_recovers() {
    // A decay of 2 s instead of 10, so that a recovery fits in 200 requests 50 ms apart.
    let stack = Stack::with(vec![ep("fast"), ep("slow")], |b| {
        b.strategy(Strategy::LeastLatency)
            .latency_decay(Duration::from_secs(2))
    });
    answer_in(&stack.upstream, "fast", 5 * MS);
    answer_in(&stack.upstream, "slow", 50 * MS);

    let fast = send(&stack, 200, "fast").await;
    let order = stack.upstream.order();
    let slow_later = order[20..].iter().filter(|id| *id == "slow").count();
    println!(
        "fast {fast} of 200, slow {} (after the 20th: {slow_later})",
        200 - fast
    );
    assert!(fast >= 160, "fast got {fast} of 200");
    // Not only while both were new: an idle score decays, and the slow one is tried again.
    assert!(slow_later >= 1, "{order:?}");
    let estimate = |id: &str| stack.registry.get(id).unwrap().latency_ms.unwrap();
    assert!(estimate("fast") < 6.0 && estimate("slow") >= 50.0);

    // The roles swap: the scores follow, and traffic with them.
    answer_in(&stack.upstream, "fast", 50 * MS);
    answer_in(&stack.upstream, "slow", 5 * MS);
    let now_fast = send(&stack, 200, "slow").await;
    println!("after the swap: {now_fast} of 200 to the now fast one");
    assert!(now_fast >= 150, "{now_fast} of 200");
}

#[tokio::test(start_paused = true)]
async fn other_strategies_keep_no_latency_score() {
    let stack = Stack::new(vec![ep("a"), ep("b")]);
    stack.ok().await;
    assert_eq!(stack.registry.get("a").unwrap().latency_ms, None);
}

#[tokio::test(start_paused = true)]
async fn before_anything_is_known_requests_spread_by_load() {
    use std::sync::Arc;

    use http::Request;
    use tower::ServiceExt;

    let stack = Stack::with(vec![ep("a"), ep("b")], |b| {
        b.strategy(Strategy::LeastLatency)
    });
    let gate = Arc::new(tokio::sync::Notify::new());
    stack.upstream.set_default("a", Step::Gate(gate.clone()));
    stack.upstream.set_default("b", Step::Gate(gate.clone()));
    let send = || {
        let service = stack.service.clone();
        tokio::spawn(async move { service.oneshot(Request::new(String::new())).await })
    };
    let first = send();
    tokio::task::yield_now().await;
    let second = send();
    tokio::task::yield_now().await;
    // Neither has answered yet: the second goes where nothing is in flight.
    let order = stack.upstream.order();
    assert_eq!(order.len(), 2);
    assert_ne!(order[0], order[1]);
    gate.notify_waiters();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
}
