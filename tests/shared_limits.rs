//! Limits shared through Redis, black-box: `llm-tower-gateway` processes with one
//! `limits_store`, as replicas behind a load balancer would run, and a `redis-server` of the
//! test's own. Three replicas admit no more than a key's limit between them under 300
//! concurrent requests; Redis killed mid-run is decided as `on_store_down` says, at once.
//! Skipped, saying why, without a `redis-server` binary (`.ci/run` installs one).

mod binary;

use std::time::{Duration, Instant};

use binary::{Running, client, launch, post, temp_file};
use http_body_util::BodyExt;
use llm_tower_mock::{MockProvider, RedisServer};
use serde_json::Value;

const KEY: &str = "Bearer gw-team-a-0123456789abcdef";
const CHAT: &str = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#;
/// How long a replica may take to (re)connect: the binary starting, or a backoff of at most
/// 5 s after Redis returns.
const CONNECT: Duration = Duration::from_secs(15);

struct Replica {
    _running: Running,
    url: String,
    log: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
}

impl Replica {
    /// A gateway in front of `mock` whose key `team-a` is held to `limits` (YAML), counted in
    /// `redis` with the `store` settings (YAML) besides its URL and prefix.
    fn start(name: &str, redis: &str, store: &str, mock: &MockProvider, limits: &str) -> Self {
        let config = temp_file(
            &format!("shared-limits-{name}.yaml"),
            &format!(
                "listen: 127.0.0.1:0\n\
                 limits_store: {{ redis: '{redis}', prefix: shared-test, {store} }}\n\
                 client_auth:\n\
                 \x20 keys:\n\
                 \x20   - {{ name: team-a, key: gw-team-a-0123456789abcdef, limits: {limits} }}\n\
                 endpoints:\n\
                 \x20 - {{ id: mock, base_url: '{}' }}\n",
                mock.base_url()
            ),
        );
        let mut command = std::process::Command::new(binary::BIN);
        command.args(["--config", config.to_str().unwrap()]);
        let (running, url, lines) = launch(command);
        let (log, logged) = std::sync::mpsc::channel();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| drop(log.send(l))));
        Self {
            _running: running,
            url,
            log: std::sync::Mutex::new(logged),
        }
    }

    /// One chat request of team A: its status, and the body's `error.code` when refused.
    async fn chat(&self) -> (u16, Option<String>, Option<String>) {
        let mut request = post(&self.url, CHAT);
        request
            .headers_mut()
            .insert("authorization", KEY.parse().unwrap());
        let response = client().request(request).await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|error| error["error"]["code"].as_str().map(str::to_owned));
        (status, code, retry_after)
    }

    async fn get(&self, path: &str) -> String {
        let url = format!("{}{path}", self.url.trim_end_matches("/v1"));
        let mut request = http::Request::get(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", KEY.parse().unwrap());
        let response = client().request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Looks at `/limits` until the store is (or is not) connected.
    async fn connected(&self, connected: bool) {
        let started = Instant::now();
        loop {
            let limits: Value = serde_json::from_str(&self.get("/limits").await).unwrap();
            if limits["store"]["connected"] == connected {
                return;
            }
            assert!(started.elapsed() < CONNECT, "{limits}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn logged(&self, text: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.try_iter().filter(|line| line.contains(text)).count()
    }
}

fn redis() -> Option<RedisServer> {
    RedisServer::start()
        .map_err(|reason| eprintln!("skipped: {reason}"))
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_admit_no_more_than_the_limit_between_them() {
    let Some(redis) = redis() else { return };
    let mock = MockProvider::start().await.unwrap();
    // 100 a minute, and tokens too: every request reserves about 4 100 of 1 000 000.
    let limits = "{ rpm: 100, tpm: 1000000 }";
    // 300 requests at once on two cores, through debug builds of three gateways: an answer
    // from Redis may take longer than the 50 ms default, which would refuse (`deny`).
    let store = "on_store_down: deny, timeout: 1s";
    let replicas: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| std::sync::Arc::new(Replica::start(name, &redis.url(), store, &mock, limits)))
        .collect();
    for replica in &replicas {
        replica.connected(true).await;
    }
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..300 {
        let replica = replicas[i % 3].clone();
        sent.spawn(async move { replica.chat().await });
    }
    let (mut admitted, mut refused) = (0, 0);
    while let Some(answer) = sent.join_next().await {
        match answer.unwrap() {
            (200, ..) => admitted += 1,
            (429, Some(code), Some(_)) if code == "rate_limit_exceeded" => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    eprintln!("{admitted} admitted, {refused} refused");
    // The limit, and what the minute refilled while they ran (100 a minute: one in 0.6 s).
    assert!((100..=103).contains(&admitted), "{admitted} admitted");
    assert_eq!(
        mock.requests().len(),
        admitted,
        "only the admitted were sent"
    );
    // Every replica tells the same standing from Redis.
    let limits: Value = serde_json::from_str(&replicas[1].get("/limits").await).unwrap();
    let remaining = limits["limits"][0]["requests"]["remaining"]
        .as_u64()
        .unwrap();
    assert!(remaining <= 3, "{limits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_is_decided_as_on_store_down_says() {
    let Some(mut redis) = redis() else { return };
    let mock = MockProvider::start().await.unwrap();
    let limits = "{ rpm: 10000 }";
    let allow = std::sync::Arc::new(Replica::start(
        "allow",
        &redis.url(),
        "on_store_down: allow",
        &mock,
        limits,
    ));
    let deny = std::sync::Arc::new(Replica::start(
        "deny",
        &redis.url(),
        "on_store_down: deny",
        &mock,
        limits,
    ));
    allow.connected(true).await;
    deny.connected(true).await;

    // Requests under way on both while Redis is killed: every one is answered, and only as
    // the setting says (`allow`: served; `deny`: served before, 503 after).
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..60 {
        let replica = if i % 2 == 0 {
            allow.clone()
        } else {
            deny.clone()
        };
        sent.spawn(async move { (i % 2 == 0, replica.chat().await) });
    }
    let mut answered = 0;
    while let Some(answer) = sent.join_next().await {
        answered += 1;
        if answered == 20 {
            redis.stop();
        }
        match answer.unwrap() {
            (_, (200, ..)) => {}
            (false, (503, Some(code), Some(_))) if code == "limits_unavailable" => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(answered, 60);

    // Down: `allow` serves on its own counts, `deny` refuses at once with a Retry-After.
    for _ in 0..3 {
        assert_eq!(allow.chat().await.0, 200);
        let (status, code, retry_after) = deny.chat().await;
        assert_eq!(status, 503);
        assert_eq!(code.as_deref(), Some("limits_unavailable"));
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    allow.connected(false).await;
    for (replica, decision) in [(&allow, "allowed"), (&deny, "denied")] {
        let metrics = replica.get("/metrics").await;
        let series = format!("llm_tower_limits_store_unreachable_total{{decision=\"{decision}\"}}");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&series) && !l.ends_with(" 0")),
            "{metrics}"
        );
    }

    // Back: counted in Redis again.
    redis.restart().unwrap();
    allow.connected(true).await;
    deny.connected(true).await;
    assert_eq!(deny.chat().await.0, 200);
    assert_eq!(allow.chat().await.0, 200);
    assert!(
        allow.logged("limits store unreachable") >= 1,
        "warned of the outage"
    );
    assert!(deny.logged("limits store unreachable") >= 1);
}
