//! Limits shared through a `redis-server` of the test's own: replicas (each its own
//! [`LimitsStore`] and [`Limiter`]) admit no more than the limit between them, true up what
//! they reserved, and decide at once, as configured, when Redis is gone or stalled. Skipped,
//! saying why, without a `redis-server` binary (`.ci/run` installs one).
#![cfg(feature = "redis")]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_tower_core::{BoxError, Caller, Error, ErrorKind, Usage, UsageRecord};
use llm_tower_limits::store::{LimitsStore, LimitsStoreSettings, OnStoreDown};
use llm_tower_limits::{Budget, Limiter, Limits, LimitsLayer, LimitsTable, Period, RequestBody};
use llm_tower_mock::RedisServer;
use llm_tower_usage::{Price, Prices};
use tower::{Layer, ServiceExt, service_fn};

const CONNECT: Duration = Duration::from_secs(10);

/// What every answer reports having used.
const USED: Usage = Usage {
    input: 10,
    output: 20,
    cached_input: 0,
    reasoning: 0,
    estimated: false,
};

/// One replica: its own store and limiter, a stack answering with [`USED`].
struct Replica {
    store: LimitsStore,
    limiter: Arc<Limiter>,
    limits: Limits,
}

impl Replica {
    async fn start(redis: &str, prefix: &str, on_store_down: OnStoreDown, limits: Limits) -> Self {
        let settings = LimitsStoreSettings {
            prefix: prefix.to_owned(),
            on_store_down,
            ..LimitsStoreSettings::new(redis)
        };
        Self::start_with(settings, limits).await
    }

    /// With a patient `timeout`: hundreds of requests at once on two cores, in a debug build,
    /// may wait longer than the 50 ms default for Redis's answer.
    async fn start_patient(redis: &str, prefix: &str, limits: Limits) -> Self {
        let settings = LimitsStoreSettings {
            prefix: prefix.to_owned(),
            on_store_down: OnStoreDown::Deny,
            timeout: Duration::from_secs(1),
            ..LimitsStoreSettings::new(redis)
        };
        Self::start_with(settings, limits).await
    }

    async fn start_with(settings: LimitsStoreSettings, limits: Limits) -> Self {
        let redis = settings.redis.expose().to_owned();
        let store = LimitsStore::start(&settings).unwrap();
        assert!(store.connected(CONNECT).await, "connects to {redis}");
        Self {
            limiter: Arc::new(Limiter::shared(store.clone())),
            store,
            limits,
        }
    }

    /// Sends one request of `team`, reads its answer whole: its status, or its error's kind.
    async fn send(&self, body: &'static str) -> Result<Response<Bytes>, ErrorKind> {
        let prices = Prices::new([(
            "m".into(),
            Price {
                input: 1_000_000.0,
                output: 1_000_000.0,
                cached_input: None,
            },
        )]);
        let table = LimitsTable::new([("team".into(), self.limits.clone())], None);
        let service = LimitsLayer::new(table)
            .limiter(self.limiter.clone())
            .prices(Arc::new(prices))
            .layer(service_fn(
                |request: Request<RequestBody<Full<Bytes>>>| async move {
                    if let Some(record) = request.extensions().get::<UsageRecord>() {
                        record.set_model("m".into());
                        record.add(USED);
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                },
            ));
        let mut request = Request::post("/v1/chat/completions")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        request.extensions_mut().insert(Caller::new("team"));
        request.extensions_mut().insert(UsageRecord::default());
        match service.oneshot(request).await {
            Ok(response) => {
                let (head, body) = response.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                Ok(Response::from_parts(head, body))
            }
            Err(err) => Err(kind(&err)),
        }
    }
}

fn kind(err: &BoxError) -> ErrorKind {
    Error::find_in(&**err).map_or(ErrorKind::Unrecognized, |e| e.kind())
}

fn redis() -> Option<RedisServer> {
    match RedisServer::start() {
        Ok(redis) => Some(redis),
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_admit_no_more_than_the_limit_between_them() {
    let Some(redis) = redis() else { return };
    // Each request reserves 8 tokens and uses 30: settled, 100 take 3 000 of the minute's
    // 60 000 (which refills 1 000 a second).
    let limits = Limits {
        rpm: Some(100),
        tpm: Some(60_000),
        ..Limits::default()
    };
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Arc::new(
            Replica::start_patient(&redis.url(), "three", limits.clone()).await,
        ));
    }
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..300 {
        let replica = replicas[i % 3].clone();
        sent.spawn(async move { replica.send(r#"{"model":"m","max_tokens":5}"#).await });
    }
    let (mut admitted, mut refused) = (0, 0);
    while let Some(result) = sent.join_next().await {
        match result.unwrap() {
            Ok(_) => admitted += 1,
            Err(ErrorKind::RateLimited) => refused += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    // The minute refills 100/60 a second: a run that takes long may admit a few more.
    assert!((100..=103).contains(&admitted), "{admitted} admitted");
    assert_eq!(admitted + refused, 300);
    // Every replica reads the same standing.
    let standings = [
        replicas[0].limiter.standing("team", &limits).await,
        replicas[2].limiter.standing("team", &limits).await,
    ];
    let [first, last] = standings
        .clone()
        .map(|s| (s.requests.unwrap().remaining, s.tokens.unwrap().remaining));
    assert!(
        first.0 <= 3 && first.0.abs_diff(last.0) <= 1,
        "{standings:?}"
    );
    // Trued up from 8 to 30 each (within a second's refill); reservations alone would
    // have left 59 200.
    assert!((56_000..=58_000).contains(&first.1), "{standings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_are_trued_up_and_budgets_hold_across_replicas() {
    let Some(mut redis) = redis() else { return };
    // Priced at 1 USD a token: each request reserves its estimate (its body's size / 4, and
    // its 40 tokens of output) and uses 30.
    let limits = Limits {
        tpm: Some(1000),
        budget: Some(Budget {
            usd: 130.0,
            per: Period::Day,
        }),
        ..Limits::default()
    };
    let a = Replica::start(&redis.url(), "trued", OnStoreDown::Deny, limits.clone()).await;
    let b = Replica::start(&redis.url(), "trued", OnStoreDown::Deny, limits.clone()).await;
    let body = r#"{"model":"m","max_tokens":40}"#;
    let answer = a.send(body).await.unwrap();
    let reserved = body.len() as u64 / 4 + 40;
    let used = 30;
    let remaining: u64 = answer.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1000 - reserved..1000 - reserved + 2).contains(&remaining),
        "the reservation was taken: {remaining}"
    );
    // Settled in Redis: replica B sees what A's request used, not what it reserved. (A's
    // settlement is on A's connection before anything A asks next: once A has read its
    // standing, B's read comes after the settlement.)
    let on_a = a.limiter.standing("team", &limits).await;
    let standing = b.limiter.standing("team", &limits).await;
    assert_eq!(on_a.budget, standing.budget);
    let budget = standing.budget.unwrap();
    assert!((budget.spent - used as f64).abs() < 1e-6, "{standing:?}");
    let tokens = standing.tokens.unwrap().remaining;
    assert!(
        (1000 - used..1000 - used + 2).contains(&tokens),
        "{standing:?}"
    );

    // Two more spend 60 USD: 90 spent and 47 to reserve is more than 130, so the next is
    // refused, whichever replica it goes to.
    for replica in [&b, &a] {
        replica.send(body).await.unwrap();
    }
    assert_eq!(b.send(body).await.unwrap_err(), ErrorKind::QuotaExceeded);
    assert_eq!(a.send(body).await.unwrap_err(), ErrorKind::QuotaExceeded);
    let spent = |replica: &Replica| {
        let limits = limits.clone();
        let limiter = replica.limiter.clone();
        async move {
            limiter
                .standing("team", &limits)
                .await
                .budget
                .unwrap()
                .spent
        }
    };
    let on_a = spent(&a).await;
    assert!((on_a - 90.0).abs() < 1e-6, "{on_a}");

    // Redis goes: a replica that admits on its own counts (`allow`) starts from the spend
    // Redis last told it, not from a fresh budget.
    let c = Replica::start(&redis.url(), "trued", OnStoreDown::Allow, limits.clone()).await;
    assert_eq!(c.send(body).await.unwrap_err(), ErrorKind::QuotaExceeded);
    redis.stop();
    assert_eq!(c.send(body).await.unwrap_err(), ErrorKind::QuotaExceeded);
    let on_c = spent(&c).await;
    assert!((on_c - 90.0).abs() < 1e-6, "its own count: {on_c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_or_stalled_is_decided_at_once_as_configured() {
    let Some(mut redis) = redis() else { return };
    let limits = Limits {
        rpm: Some(10),
        ..Limits::default()
    };
    let allow = Replica::start(&redis.url(), "down", OnStoreDown::Allow, limits.clone()).await;
    let deny = Replica::start(&redis.url(), "down", OnStoreDown::Deny, limits.clone()).await;
    let body = r#"{"model":"m"}"#;
    allow.send(body).await.unwrap();
    deny.send(body).await.unwrap();
    let left = |standing: llm_tower_limits::ClientStanding| standing.requests.unwrap().remaining;
    assert_eq!(
        left(deny.limiter.standing("team", &limits).await),
        8,
        "shared"
    );

    // Stalled: Redis answers no client for 3 s. Nothing answers within 50 ms.
    let pause = Duration::from_secs(3);
    let mut control = connect(&redis.url());
    let pause_ms = pause.as_millis().to_string();
    assert!(command(&mut control, &["CLIENT", "PAUSE", &pause_ms, "ALL"]).starts_with("+OK"));
    let started = Instant::now();
    assert_eq!(
        deny.send(body).await.unwrap_err(),
        ErrorKind::LimitsUnavailable
    );
    // `allow` admits on its own counts: its own minute of 10.
    for _ in 0..10 {
        allow.send(body).await.unwrap();
    }
    assert_eq!(allow.send(body).await.unwrap_err(), ErrorKind::RateLimited);
    let took = started.elapsed();
    assert!(
        took < pause,
        "decided before Redis answered again: {took:?}"
    );
    // Until the pause ends, which the control connection's next command waits for.
    assert!(command(&mut control, &["PING"]).starts_with("+PONG"));
    // Redis then made the 12 admissions nobody waited for (8 of them fit): each is given
    // back when its answer comes, and the key is where it was.
    let given_back = Instant::now();
    while left(deny.limiter.standing("team", &limits).await) < 8 {
        assert!(
            given_back.elapsed() < Duration::from_secs(5),
            "admissions made late are given back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Gone: decided at once, with no connection to wait on.
    redis.stop();
    let started = Instant::now();
    assert_eq!(
        deny.send(body).await.unwrap_err(),
        ErrorKind::LimitsUnavailable
    );
    assert!(!deny.store.status().connected);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no connection waited on"
    );
    // `allow` on its own counts, whose minute the stall used up.
    assert_eq!(allow.send(body).await.unwrap_err(), ErrorKind::RateLimited);
    assert!(!allow.store.status().connected);
    // Back (empty): counted there again.
    redis.restart().unwrap();
    assert!(deny.store.connected(CONNECT).await);
    assert!(allow.store.connected(CONNECT).await);
    deny.send(body).await.unwrap();
    allow.send(body).await.unwrap();
    // In Redis (empty after its restart), not on `allow`'s own spent minute.
    assert_eq!(left(deny.limiter.standing("team", &limits).await), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_per_admission_and_one_per_settlement() {
    let Some(redis) = redis() else { return };
    let rpm = Limits {
        rpm: Some(1000),
        ..Limits::default()
    };
    let tokens = Limits {
        tpm: Some(1_000_000),
        ..Limits::default()
    };
    let only_rpm = Replica::start(&redis.url(), "trips", OnStoreDown::Deny, rpm).await;
    let with_tpm = Replica::start(&redis.url(), "trips", OnStoreDown::Deny, tokens).await;
    let mut control = connect(&redis.url());
    assert!(command(&mut control, &["CONFIG", "RESETSTAT"]).starts_with("+OK"));
    for _ in 0..10 {
        only_rpm.send(r#"{"model":"m"}"#).await.unwrap();
    }
    // Requests per minute need no settling: one script each.
    assert_eq!(scripts_run(&mut control), 10);
    for _ in 0..10 {
        with_tpm.send(r#"{"model":"m"}"#).await.unwrap();
    }
    // Read through the same connection: after its settlements.
    with_tpm.limiter.standing("team", &with_tpm.limits).await;
    assert_eq!(scripts_run(&mut control), 10 + 10 * 2 + 1);
}

/// How many scripts Redis has run since its statistics were reset (`INFO commandstats`).
fn scripts_run(control: &mut std::net::TcpStream) -> u64 {
    use std::io::Read as _;
    let header = command(control, &["INFO", "commandstats"]);
    let len: usize = header.trim_start_matches('$').trim().parse().unwrap();
    let mut text = vec![0; len + 2];
    control.read_exact(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    ["cmdstat_evalsha:", "cmdstat_eval:"]
        .iter()
        .filter_map(|name| {
            let line = text.lines().find(|line| line.starts_with(name))?;
            let calls = line.split("calls=").nth(1)?.split(',').next()?;
            calls.parse::<u64>().ok()
        })
        .sum()
}

fn connect(url: &str) -> std::net::TcpStream {
    std::net::TcpStream::connect(url.strip_prefix("redis://").unwrap()).unwrap()
}

fn send(stream: &mut std::net::TcpStream, args: &[&str]) {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let mut text = format!("*{}\r\n", args.len());
    for arg in args {
        let _ = write!(text, "${}\r\n{arg}\r\n", arg.len());
    }
    stream.write_all(text.as_bytes()).unwrap();
}

/// Sends a command and reads its one-line reply.
fn command(stream: &mut std::net::TcpStream, args: &[&str]) -> String {
    use std::io::Read as _;
    send(stream, args);
    let mut reply = Vec::new();
    let mut byte = [0];
    while !reply.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).unwrap();
        reply.push(byte[0]);
    }
    String::from_utf8(reply).unwrap()
}
