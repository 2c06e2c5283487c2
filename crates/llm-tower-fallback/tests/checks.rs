//! Active health checks (long because each of the checker's behaviours is one scenario on
//! paused time, sharing the helpers that read its calls): the checker restores and re-ejects
//! endpoints without user requests, ejects dead ones before users reach them, never overlaps
//! itself, and ends with the stack.
#![allow(clippy::float_cmp)] // paused time makes cooldowns exact

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{Request, Response};
use llm_tower_core::{Attempts, BufferedBody, Endpoint, EndpointBuilder, HealthCheck};
use llm_tower_fallback::{FallbackLayer, HealthRegistry};
use llm_tower_health::{HealthEvent, Status};
use llm_tower_mock::scripted::{Call, ScriptedUpstream, Step};
use llm_tower_retry::RetryLayer;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep};
use tower::{Layer, ServiceExt, service_fn};

use common::{Stack, with};

const SECOND: Duration = Duration::from_secs(1);

/// `primary` (checked by `check`, base cooldown 5 s) and `backup` (priority 1, unchecked).
fn pair(check: HealthCheck) -> Vec<Endpoint> {
    vec![
        checked("primary", check, |b| b),
        with("backup", |b| b.priority(1)),
    ]
}

fn checked(
    id: &str,
    check: HealthCheck,
    f: impl FnOnce(EndpointBuilder) -> EndpointBuilder,
) -> Endpoint {
    with(id, |b| {
        f(b.health_check(check).health_check_interval(5 * SECOND))
    })
}

fn every(interval: Duration) -> HealthCheck {
    HealthCheck {
        interval: Some(interval),
        ..HealthCheck::default()
    }
}

fn is_check(call: &Call) -> bool {
    call.uri.path().ends_with("/models")
}

/// The calls `endpoint` received that were requests (not checks).
fn requests_to(upstream: &ScriptedUpstream, endpoint: &str) -> usize {
    upstream
        .calls()
        .iter()
        .filter(|c| c.endpoint == endpoint && !is_check(c))
        .count()
}

fn check_times(upstream: &ScriptedUpstream, endpoint: &str) -> Vec<Instant> {
    upstream
        .calls()
        .iter()
        .filter(|c| c.endpoint == endpoint && is_check(c))
        .map(|c| c.at)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_ejected_endpoint_is_restored_by_a_check_without_any_request() {
    let stack = Stack::checked(pair(HealthCheck::default()), |b| b);
    stack.upstream.script("primary", [Step::Status(503)]);
    let ejected_at = Instant::now();
    assert_eq!(stack.ok().await.body(), "backup:200");
    assert_eq!(stack.status("primary"), Status::Ejected);

    sleep(5 * SECOND + Duration::from_millis(1)).await;
    assert_eq!(stack.status("primary"), Status::Healthy);
    // One check, when the cooldown ended, sent as the check says, with the endpoint selected
    // (so that auth below would set its key); and no request at all meanwhile.
    assert_eq!(
        check_times(&stack.upstream, "primary"),
        [ejected_at + 5 * SECOND]
    );
    let check = &stack.upstream.calls()[2];
    assert_eq!(check.uri, "https://primary.example/v1/models");
    assert!(check.body.is_empty());
    assert_eq!(requests_to(&stack.upstream, "primary"), 1);
    let snapshot = stack.registry.get("primary").unwrap();
    assert_eq!((snapshot.checks_passed, snapshot.checks_failed), (1, 0));
    let last = snapshot.last_check.unwrap();
    assert!(last.passed);
    assert_eq!(last.outcome, "200");
    // Without `interval`, a healthy endpoint is not checked.
    sleep(120 * SECOND).await;
    assert_eq!(check_times(&stack.upstream, "primary").len(), 1);
    // The next request goes to the restored endpoint, as an ordinary request.
    assert_eq!(stack.ok().await.body(), "primary:200");
}

#[tokio::test(start_paused = true)]
async fn a_failing_check_ejects_again_with_a_doubled_cooldown() {
    // No early probes: the checks come at the ends of the cooldowns.
    let stack = Stack::checked(pair(HealthCheck::default()), |b| {
        b.max_probe_interval(Duration::from_secs(3600))
    });
    stack.upstream.set_default("primary", Step::Status(503));
    let t0 = Instant::now();
    stack.ok().await;
    sleep(5 * SECOND + Duration::from_millis(1)).await;
    let snapshot = stack.registry.get("primary").unwrap();
    assert_eq!(snapshot.status, Status::Ejected);
    assert_eq!(snapshot.ejections, 2);
    assert_eq!(snapshot.seconds_until_return, 10.0 - 0.001);
    assert_eq!(snapshot.last_check.unwrap().outcome, "503");
    // 5 s, then 10, then 20: each failed check doubles the cooldown.
    sleep(30 * SECOND).await;
    assert_eq!(
        check_times(&stack.upstream, "primary"),
        [t0 + 5 * SECOND, t0 + 15 * SECOND, t0 + 35 * SECOND]
    );
    assert_eq!(stack.registry.get("primary").unwrap().ejections, 4);
    assert_eq!(requests_to(&stack.upstream, "primary"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_checks_retry_after_is_honoured() {
    let stack = Stack::checked(pair(HealthCheck::default()), |b| b);
    stack.upstream.script("primary", [Step::Status(503)]);
    stack.ok().await;
    stack
        .upstream
        .script("primary", [Step::header(503, RETRY_AFTER, "30")]);
    let t0 = Instant::now();
    sleep(5 * SECOND + Duration::from_millis(1)).await;
    let snapshot = stack.registry.get("primary").unwrap();
    assert_eq!(snapshot.status, Status::Ejected);
    assert_eq!(snapshot.seconds_until_return, 30.0 - 0.001);
    sleep(31 * SECOND).await;
    assert_eq!(
        check_times(&stack.upstream, "primary"),
        [t0 + 5 * SECOND, t0 + 35 * SECOND]
    );
    assert_eq!(stack.status("primary"), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn no_request_is_a_probe_during_a_recovery_when_checks_run() {
    let stack = Stack::checked(pair(HealthCheck::default()), |b| b);
    stack.upstream.set_default("primary", Step::Status(503));
    let mut restored_at = None;
    let mut to_primary = 0;
    for i in 0..200 {
        if i == 100 {
            // The outage ends; only a check may find out.
            stack.upstream.set_default("primary", Step::Status(200));
        }
        let before = stack.status("primary");
        let response = stack.ok().await;
        let attempts = Attempts::of(response.extensions()).unwrap().to_vec();
        let primary: Vec<_> = attempts
            .iter()
            .filter(|a| a.endpoint.as_str() == "primary")
            .collect();
        if i > 0 && !primary.is_empty() {
            // After the first request, primary only ever gets requests while it is healthy:
            // none of them is its half-open probe.
            assert_eq!(before, Status::Healthy, "request {i}: {attempts:?}");
            assert_eq!(primary[0].outcome.to_string(), "200", "request {i}");
            to_primary += 1;
        }
        if i > 0 && before == Status::Healthy {
            restored_at.get_or_insert(i);
        }
        sleep(Duration::from_millis(250)).await;
    }
    assert!(restored_at.is_some_and(|i| i >= 100), "{restored_at:?}");
    assert!(
        to_primary > 50,
        "primary served {to_primary} after it was restored"
    );
    let snapshot = stack.registry.get("primary").unwrap();
    assert!(snapshot.checks_failed >= 2, "{snapshot:?}");
    assert_eq!(snapshot.checks_passed, 1);
}

#[tokio::test(start_paused = true)]
async fn periodic_checks_eject_a_dead_endpoint_before_any_request_reaches_it() {
    let stack = Stack::checked(pair(every(2 * SECOND)), |b| b.unhealthy_threshold(2));
    stack
        .upstream
        .set_default("primary", Step::Fail(std::io::ErrorKind::ConnectionRefused));
    // The first check comes within a tenth of the interval, the next within 1.8–2.2 s.
    sleep(3 * SECOND).await;
    let snapshot = stack.registry.get("primary").unwrap();
    assert_eq!(snapshot.status, Status::Ejected);
    assert_eq!(snapshot.checks_failed, 2);
    assert_eq!(
        snapshot.last_check.unwrap().outcome,
        "upstream_connect_failed"
    );
    for _ in 0..10 {
        let response = stack.ok().await;
        let attempts = Attempts::of(response.extensions()).unwrap().to_vec();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].endpoint.as_str(), "backup");
    }
    assert_eq!(requests_to(&stack.upstream, "primary"), 0);
}

#[tokio::test(start_paused = true)]
async fn periodic_checks_of_a_healthy_endpoint_are_jittered_and_keep_it_in() {
    let stack = Stack::checked(pair(every(10 * SECOND)), |b| b);
    let start = Instant::now();
    sleep(100 * SECOND).await;
    let times = check_times(&stack.upstream, "primary");
    assert!(times[0] - start <= SECOND, "{:?}", times[0] - start);
    assert!((9..=12).contains(&times.len()), "{}", times.len());
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= 9 * SECOND && gap <= 11 * SECOND, "{gap:?}");
    }
    assert!(
        times.windows(3).any(|w| w[2] - w[1] != w[1] - w[0]),
        "jittered"
    );
    assert_eq!(stack.status("primary"), Status::Healthy);
    assert_eq!(check_times(&stack.upstream, "backup"), [], "unchecked");
}

#[tokio::test(start_paused = true)]
async fn a_check_never_overlaps_itself_when_its_timeout_exceeds_the_interval() {
    let check = HealthCheck {
        interval: Some(SECOND),
        timeout: 3 * SECOND,
        ..HealthCheck::default()
    };
    let stack = Stack::checked(pair(check), |b| b.unhealthy_threshold(1000));
    stack
        .upstream
        .set_default("primary", Step::delay(10 * SECOND, Step::Status(200)));
    sleep(30 * SECOND).await;
    let times = check_times(&stack.upstream, "primary");
    assert!(times.len() >= 7, "{}", times.len());
    for pair in times.windows(2) {
        // The next check starts an interval (±10 %) after the previous one timed out.
        let gap = pair[1] - pair[0];
        assert!(gap >= 3 * SECOND + SECOND * 9 / 10, "{gap:?}");
        assert!(gap <= 3 * SECOND + SECOND * 11 / 10, "{gap:?}");
    }
    let snapshot = stack.registry.get("primary").unwrap();
    assert_eq!(snapshot.last_check.unwrap().outcome, "upstream_timeout");
    let running = usize::from(Instant::now() < *times.last().unwrap() + 3 * SECOND);
    assert_eq!(snapshot.checks_failed as usize, times.len() - running);
}

#[tokio::test(start_paused = true)]
async fn one_check_decides_for_every_deployment_of_its_endpoint() {
    let azure = checked("azure", HealthCheck::default(), |b| {
        b.models(["gpt-4o", "gpt-4o-mini"])
    });
    let backup = with("backup", |b| b.priority(1));
    let stack = Stack::checked(vec![azure, backup], |b| b);
    stack
        .upstream
        .script("azure", [Step::Status(503), Step::Status(503)]);
    for model in ["gpt-4o", "gpt-4o-mini"] {
        let body = format!(r#"{{"model":"{model}"}}"#);
        let request = Request::post("/chat/completions").body(body).unwrap();
        stack.send_request(request).await.unwrap();
    }
    assert_eq!(stack.status("azure/gpt-4o"), Status::Ejected);
    assert_eq!(stack.status("azure/gpt-4o-mini"), Status::Ejected);
    sleep(5 * SECOND + Duration::from_millis(1)).await;
    assert_eq!(check_times(&stack.upstream, "azure").len(), 1);
    assert_eq!(stack.status("azure/gpt-4o"), Status::Healthy);
    assert_eq!(stack.status("azure/gpt-4o-mini"), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn without_a_running_checker_the_next_request_is_the_probe() {
    // Checks configured, but the layer is used alone and nobody started them.
    let stack = Stack::with(pair(HealthCheck::default()), |b| b);
    stack.upstream.script("primary", [Step::Status(503)]);
    stack.ok().await;
    sleep(5 * SECOND).await;
    assert_eq!(
        stack
            .upstream
            .calls()
            .iter()
            .filter(|c| is_check(c))
            .count(),
        0
    );
    assert_eq!(stack.ok().await.body(), "primary:200");
    assert_eq!(stack.status("primary"), Status::Healthy);
}

/// Fires when the last clone of what holds it is dropped.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(signal) = self.0.take() {
            let _ = signal.send(());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_checker_ends_when_the_last_clone_of_the_stack_is_dropped() {
    let registry = HealthRegistry::new();
    let layer = FallbackLayer::builder(pair(every(SECOND)))
        .build(registry.clone())
        .unwrap();
    let upstream = ScriptedUpstream::new();
    let (dropped, probe_gone) = oneshot::channel();
    let guard = Arc::new(DropSignal(Some(dropped)));
    let checks = Arc::new(Mutex::new(0));
    let probe = {
        let checks = checks.clone();
        service_fn(move |_: Request<BufferedBody>| {
            let _guard = guard.clone();
            *checks.lock().unwrap() += 1;
            async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }
        })
    };
    assert!(layer.start_health_checks(probe).unwrap());
    let service = layer.layer(upstream.clone());
    let clone = service.clone();
    sleep(5 * SECOND).await;
    let before = *checks.lock().unwrap();
    assert!(before >= 4, "{before}");

    drop((layer, service));
    sleep(5 * SECOND).await;
    assert!(*checks.lock().unwrap() > before, "a clone still runs it");
    let mut probe_gone = probe_gone;
    assert!(probe_gone.try_recv().is_err());

    drop(clone);
    tokio::time::timeout(60 * SECOND, probe_gone)
        .await
        .expect("the checker task ended and dropped its probe service")
        .unwrap();
    let after = *checks.lock().unwrap();
    sleep(60 * SECOND).await;
    assert_eq!(
        *checks.lock().unwrap(),
        after,
        "no check after the stack is gone"
    );
    // Its deployments are the requests' to probe again.
    assert_eq!(registry.get("primary").unwrap().status, Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_check_uses_the_configured_method_path_and_expectation() {
    let check = HealthCheck {
        path: "/health?deep=1".into(),
        method: http::Method::HEAD,
        expect: "204".parse().unwrap(),
        interval: Some(SECOND),
        ..HealthCheck::default()
    };
    let stack = Stack::checked(pair(check), |b| b);
    // 200 is not the 204 this check expects.
    sleep(2 * SECOND).await;
    let calls = stack.upstream.calls();
    assert_eq!(calls[0].uri, "https://primary.example/v1/health?deep=1");
    let snapshot = stack.registry.get("primary").unwrap();
    assert_eq!(snapshot.status, Status::Ejected);
    assert!(!snapshot.last_check.unwrap().passed);
}

#[tokio::test(start_paused = true)]
async fn after_a_check_restores_an_endpoint_its_first_failure_ejects_it_again_escalating() {
    // `/models` answers, completions do not: the check is wrong about the endpoint.
    let registry = HealthRegistry::new();
    let primary = checked("primary", HealthCheck::default(), |b| {
        b.retry_policy(llm_tower_core::RetryPolicy::CountBased(
            llm_tower_core::CountBased { times: 3 },
        ))
    });
    let layer = FallbackLayer::builder([primary, with("backup", |b| b.priority(1))])
        .build(registry.clone())
        .unwrap();
    let upstream = ScriptedUpstream::new();
    assert!(layer.start_health_checks(upstream.clone()).unwrap());
    let service = layer.layer(RetryLayer::new().layer(upstream.clone()));
    let send = || async {
        let request = Request::post("/chat/completions")
            .body(String::from("{}"))
            .unwrap();
        service.clone().oneshot(request).await.unwrap()
    };
    upstream.script("primary", std::iter::repeat_n(Step::Status(503), 4));
    send().await;
    assert_eq!(
        requests_to(&upstream, "primary"),
        4,
        "first try and three retries"
    );
    sleep(5 * SECOND + Duration::from_millis(1)).await;
    let snapshot = registry.get("primary").unwrap();
    assert_eq!(snapshot.status, Status::Healthy);
    assert!(snapshot.on_probation, "vouched for by a check only");

    upstream.script("primary", [Step::Status(503)]);
    let response = send().await;
    // A single try (no retries on a deployment a check just vouched for), then the backup.
    assert_eq!(requests_to(&upstream, "primary"), 5);
    let attempts = Attempts::of(response.extensions()).unwrap().to_vec();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let snapshot = registry.get("primary").unwrap();
    assert_eq!(snapshot.status, Status::Ejected);
    assert_eq!(snapshot.ejections, 2);
    assert_eq!(snapshot.seconds_until_return, 10.0);
    assert!(!snapshot.on_probation);

    // Restored again; a request that succeeds ends the probation and the escalation.
    sleep(10 * SECOND + Duration::from_millis(1)).await;
    assert!(registry.get("primary").unwrap().on_probation);
    // Another replica ejects it meanwhile: it is out, not on probation.
    let now = std::time::SystemTime::now();
    assert!(registry.apply(&HealthEvent::Ejected {
        id: "primary".into(),
        at: now,
        until: now + SECOND,
        retry_after: true,
        ejections: 1,
    }));
    let snapshot = registry.get("primary").unwrap();
    assert_eq!(snapshot.status, Status::Ejected);
    assert!(!snapshot.on_probation, "{snapshot:?}");
    sleep(SECOND + Duration::from_millis(1)).await;
    send().await;
    send().await;
    assert_eq!(requests_to(&upstream, "primary"), 7);
    let snapshot = registry.get("primary").unwrap();
    assert_eq!(snapshot.ejections, 0);
    assert!(!snapshot.on_probation, "a request answered");
}

#[tokio::test(start_paused = true)]
async fn a_checker_learns_of_ejections_by_another_stack_on_its_registry() {
    let registry = HealthRegistry::new();
    let upstream = ScriptedUpstream::new();
    let checked_layer = FallbackLayer::builder(pair(HealthCheck::default()))
        .build(registry.clone())
        .unwrap();
    assert!(checked_layer.start_health_checks(upstream.clone()).unwrap());
    let checked_stack = checked_layer.layer(upstream.clone());
    drop(checked_layer);
    // Another stack on the same registry, with no checker of its own.
    let other = FallbackLayer::builder(pair(HealthCheck::default()))
        .build(registry.clone())
        .unwrap()
        .layer(upstream.clone());
    let send = || async {
        let request = Request::post("/chat/completions")
            .body(String::from("{}"))
            .unwrap();
        other.clone().oneshot(request).await.unwrap()
    };
    upstream.script("primary", [Step::Status(503)]);
    send().await;
    assert_eq!(registry.get("primary").unwrap().status, Status::Ejected);
    sleep(5 * SECOND + Duration::from_millis(1)).await;
    assert_eq!(check_times(&upstream, "primary").len(), 1);
    assert_eq!(registry.get("primary").unwrap().status, Status::Healthy);

    // Once the checker's stack is gone, requests probe again.
    drop(checked_stack);
    tokio::task::yield_now().await;
    upstream.script("primary", [Step::Status(503)]);
    send().await;
    sleep(60 * SECOND).await;
    assert_eq!(
        check_times(&upstream, "primary").len(),
        1,
        "no checker any more"
    );
    assert_eq!(registry.get("primary").unwrap().status, Status::HalfOpen);
    send().await;
    assert_eq!(registry.get("primary").unwrap().status, Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn an_inconclusive_check_blames_nobody_and_is_tried_again() {
    let stack = Stack::checked(pair(HealthCheck::default()), |b| b);
    stack
        .upstream
        .script("primary", [Step::Status(503), Step::Unrecognized]);
    let t0 = Instant::now();
    stack.ok().await;
    sleep(5 * SECOND + Duration::from_millis(1)).await;
    let snapshot = stack.registry.get("primary").unwrap();
    assert_eq!((snapshot.status, snapshot.ejections), (Status::HalfOpen, 1));
    assert!(!snapshot.probe_in_flight, "the slot is free again");
    assert!(snapshot.last_check.is_none(), "nothing learnt");
    sleep(2 * SECOND).await;
    assert_eq!(
        check_times(&stack.upstream, "primary"),
        [t0 + 5 * SECOND, t0 + 6 * SECOND]
    );
    assert_eq!(stack.status("primary"), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_passing_periodic_check_leaves_the_failures_of_requests_alone() {
    let stack = Stack::checked(pair(every(10 * SECOND)), |b| b.unhealthy_threshold(3));
    sleep(SECOND).await;
    assert_eq!(check_times(&stack.upstream, "primary").len(), 1);
    stack
        .upstream
        .script("primary", [Step::Status(500), Step::Status(500)]);
    stack.ok().await;
    stack.ok().await;
    assert_eq!(
        stack.registry.get("primary").unwrap().consecutive_failures,
        2
    );
    sleep(11 * SECOND).await;
    assert_eq!(
        check_times(&stack.upstream, "primary").len(),
        2,
        "a check passed"
    );
    assert_eq!(
        stack.registry.get("primary").unwrap().consecutive_failures,
        2
    );
    stack.upstream.script("primary", [Step::Status(500)]);
    stack.ok().await;
    assert_eq!(stack.status("primary"), Status::Ejected);
}

#[tokio::test(start_paused = true)]
async fn a_deployment_put_out_while_on_probation_is_not_checked_until_its_cooldown_ends() {
    let stack = Stack::checked(pair(every(SECOND)), |b| b);
    stack.upstream.script("primary", [Step::Status(503)]);
    stack.ok().await;
    sleep(5 * SECOND + Duration::from_millis(1)).await;
    assert!(stack.registry.get("primary").unwrap().on_probation);

    // Another replica ejects it for 30 s: it is out, and periodic checks stop until then.
    let now = std::time::SystemTime::now();
    assert!(stack.registry.apply(&HealthEvent::Ejected {
        id: "primary".into(),
        at: now,
        until: now + 30 * SECOND,
        retry_after: true,
        ejections: 1,
    }));
    let checked = check_times(&stack.upstream, "primary").len();
    sleep(29 * SECOND).await;
    assert_eq!(check_times(&stack.upstream, "primary").len(), checked);
    // At the deadline the checker probes it.
    sleep(SECOND + SECOND / 2).await;
    assert!(check_times(&stack.upstream, "primary").len() > checked);
    assert_eq!(stack.status("primary"), Status::Healthy);
}
