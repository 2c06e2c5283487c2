//! Two `llm-tower-gateway` processes sharing health through a `redis-server` of the test's
//! own, as replicas behind a load balancer would. Skipped, saying why, without a
//! `redis-server` binary (`.ci/run` installs one).

mod binary;

use std::time::{Duration, Instant};

use binary::{Running, client, launch, post, temp_file};
use http_body_util::BodyExt;
use llm_tower_mock::{Behavior, MockProvider, RedisServer};
use serde_json::Value;

/// How soon a replica must skip a deployment another replica ejected.
const WITHIN: Duration = Duration::from_secs(1);
/// How long a replica may take to (re)connect: the binary starting, or a backoff of at most
/// 5 s after Redis returns.
const CONNECT: Duration = Duration::from_secs(15);

/// One gateway process with providers of its own behind the ids every replica shares.
struct Replica {
    primary: MockProvider,
    backup: MockProvider,
    config: std::path::PathBuf,
    running: Running,
    url: String,
    log: std::sync::mpsc::Receiver<String>,
    /// `health_store.secret`, given through the environment as operators do.
    secret: Option<&'static str>,
}

impl Replica {
    async fn start(name: &str, redis: &str) -> Self {
        Self::start_with(name, redis, None).await
    }

    async fn start_with(name: &str, redis: &str, secret: Option<&'static str>) -> Self {
        let primary = MockProvider::start().await.unwrap();
        let backup = MockProvider::start().await.unwrap();
        let signed = if secret.is_some() {
            ", secret: '${LLM_TOWER_TEST_HEALTH_SECRET}'"
        } else {
            ""
        };
        let config = temp_file(
            &format!("replica-{name}.yaml"),
            &format!(
                "listen: 127.0.0.1:0\n\
                 health_store: {{ redis: '{redis}', prefix: replicas-test{signed} }}\n\
                 endpoints:\n\
                 \x20 - {{ id: primary, base_url: '{}', priority: 0 }}\n\
                 \x20 - {{ id: backup, base_url: '{}', priority: 1 }}\n",
                primary.base_url(),
                backup.base_url()
            ),
        );
        let (running, url, log) = spawn(&config, secret);
        Self {
            primary,
            backup,
            config,
            running,
            url,
            log,
            secret,
        }
    }

    /// Kills the process and starts it again on the same file.
    fn restart(&mut self) {
        let _ = self.running.0.kill();
        let _ = self.running.0.wait();
        (self.running, self.url, self.log) = spawn(&self.config, self.secret);
    }

    async fn chat(&self) -> u16 {
        let response = client().request(post(&self.url, "{}")).await.unwrap();
        response.status().as_u16()
    }

    async fn upstreams(&self) -> Value {
        serde_json::from_str(&self.get("/upstreams").await).unwrap()
    }

    async fn get(&self, path: &str) -> String {
        let url = format!("{}{path}", self.url.trim_end_matches("/v1"));
        let response = client().get(url.parse().unwrap()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Looks at `/upstreams` until `done` holds, at most `within`; how long that took.
    async fn until(&self, within: Duration, done: impl Fn(&Value) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            let upstreams = self.upstreams().await;
            if done(&upstreams) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "not within {within:?}: {upstreams}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn connected(&self, connected: bool) {
        self.until(CONNECT, |u| u["health_store"]["connected"] == connected)
            .await;
    }

    /// Log lines so far that contain `text`.
    fn logged(&self, text: &str) -> usize {
        self.log
            .try_iter()
            .filter(|line| line.contains(text))
            .count()
    }
}

fn deployment<'a>(upstreams: &'a Value, id: &str) -> &'a Value {
    let all = upstreams["upstreams"].as_array().unwrap();
    all.iter().find(|u| u["id"] == id).unwrap()
}

fn status<'a>(upstreams: &'a Value, id: &str) -> &'a str {
    deployment(upstreams, id)["status"].as_str().unwrap()
}

/// The binary on `config`, its URL, and its log as it comes.
fn spawn(
    config: &std::path::Path,
    secret: Option<&str>,
) -> (Running, String, std::sync::mpsc::Receiver<String>) {
    let mut command = std::process::Command::new(binary::BIN);
    command.args(["--config", config.to_str().unwrap()]);
    if let Some(secret) = secret {
        command.env("LLM_TOWER_TEST_HEALTH_SECRET", secret);
    }
    let (running, url, lines) = launch(command);
    let (log, logged) = std::sync::mpsc::channel();
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| drop(log.send(l))));
    (running, url, logged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_ejections_through_redis_and_outlive_it() {
    let mut redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let a = Replica::start("a", &redis.url()).await;
    let mut b = Replica::start("b", &redis.url()).await;
    a.connected(true).await;
    b.connected(true).await;
    assert_eq!(
        a.logged("events replicas share are not authenticated"),
        1,
        "without a secret, a warning at start"
    );

    // A's primary asks for 30 s: A falls back to its backup and ejects the primary.
    a.primary.push(Behavior::retry_after(429, "30"));
    assert_eq!(a.chat().await, 200);
    assert_eq!(status(&a.upstreams().await, "primary"), "ejected");
    let took = b.until(WITHIN, |u| status(u, "primary") == "ejected").await;
    eprintln!("B skipped the primary {took:?} after A ejected it");
    assert_eq!(b.chat().await, 200);
    assert_eq!(b.primary.request_count(), 0, "B's primary received nothing");
    assert_eq!(b.backup.request_count(), 1);

    // B restarts: it reads the ejection in force when it starts.
    b.restart();
    b.connected(true).await;
    let upstreams = b.upstreams().await;
    assert_eq!(status(&upstreams, "primary"), "ejected", "{upstreams}");
    let left = deployment(&upstreams, "primary")["seconds_until_return"]
        .as_f64()
        .unwrap();
    assert!(
        left > 20.0,
        "A's deadline, not a fresh cooldown: {upstreams}"
    );
    assert_eq!(b.chat().await, 200);
    assert_eq!(b.primary.request_count(), 0);

    // Redis dies: both go on serving, on their own health.
    redis.stop();
    a.connected(false).await;
    b.connected(false).await;
    assert_eq!(a.chat().await, 200);
    assert_eq!(b.chat().await, 200);
    assert_eq!(b.primary.request_count(), 0, "B keeps what it knew");

    // It comes back, empty: they share again.
    redis.restart().unwrap();
    a.connected(true).await;
    b.connected(true).await;
    b.backup.push(Behavior::retry_after(503, "30"));
    b.chat().await;
    assert_eq!(status(&b.upstreams().await, "backup"), "ejected");
    a.until(WITHIN, |u| status(u, "backup") == "ejected").await;
    assert_eq!(
        a.logged("health store unreachable"),
        1,
        "one warning per outage"
    );
    assert_eq!(a.backup.request_count(), 2, "A's two requests before");
}

/// A's primary answers saying its requests window is spent for 30 s: B, which never sent
/// it a request, skips it too, and shows in `/upstreams` what A's provider told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_window_one_gateway_sees_spent_is_skipped_by_the_other() {
    let redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let a = Replica::start("headroom-a", &redis.url()).await;
    let b = Replica::start("headroom-b", &redis.url()).await;
    a.connected(true).await;
    b.connected(true).await;

    let spent = [
        ("x-ratelimit-limit-requests", "100"),
        ("x-ratelimit-remaining-requests", "2"),
        ("x-ratelimit-reset-requests", "30s"),
    ];
    a.primary.push(Behavior::Status {
        status: 200,
        retry_after: None,
        headers: spent.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
        body: None,
    });
    assert_eq!(a.chat().await, 200);
    let told = |u: &Value| deployment(u, "primary")["rate_limits"]["requests"]["remaining"] == 2;
    let took = b.until(WITHIN, told).await;
    eprintln!("B heard of the spent window {took:?} after A read it");
    let upstreams = b.upstreams().await;
    let requests = &deployment(&upstreams, "primary")["rate_limits"]["requests"];
    assert_eq!(requests["limit"], 100, "{upstreams}");
    assert!(
        requests["reset_seconds"].as_f64().unwrap() > 25.0,
        "{upstreams}"
    );
    assert_eq!(
        status(&upstreams, "primary"),
        "healthy",
        "skipped, not ejected"
    );

    for _ in 0..3 {
        assert_eq!(b.chat().await, 200);
    }
    assert_eq!(b.primary.request_count(), 0, "B skipped its primary");
    assert_eq!(b.backup.request_count(), 3);
}

/// With `health_store.secret` (from the environment): an ejection one gateway makes reaches
/// the other, and an unsigned one PUBLISHed by someone else is rejected, counted in
/// `/upstreams` and `/metrics`, and logged without its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_with_a_secret_share_ejections_and_reject_forged_ones() {
    const SECRET: &str = "replicas-test-secret-0123456789abcdef-01";
    let redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let a = Replica::start_with("signed-a", &redis.url(), Some(SECRET)).await;
    let b = Replica::start_with("signed-b", &redis.url(), Some(SECRET)).await;
    a.connected(true).await;
    b.connected(true).await;

    let forged = r#"{"event":"ejected","origin":"forger","id":"backup","at_ms":1,"until_ms":99999999999999,"retry_after":true,"ejections":1}"#;
    publish(&redis.url(), "replicas-test:events", forged);
    b.until(WITHIN, |u| u["health_store"]["rejected"] == 1)
        .await;
    assert_eq!(status(&b.upstreams().await, "backup"), "healthy");
    let metrics = b.get("/metrics").await;
    assert!(
        metrics.contains("llm_tower_health_store_rejected_total 1"),
        "{metrics}"
    );

    a.primary.push(Behavior::retry_after(429, "30"));
    assert_eq!(a.chat().await, 200);
    b.until(WITHIN, |u| status(u, "primary") == "ejected").await;

    let log: Vec<String> = b.log.try_iter().collect();
    let rejected: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("health store ignored"))
        .collect();
    assert_eq!(rejected.len(), 1, "{log:#?}");
    assert!(!rejected[0].contains("forger"), "{}", rejected[0]);
    assert!(
        !log.iter()
            .any(|l| l.contains("not authenticated") || l.contains(SECRET)),
        "{log:#?}"
    );
}

/// PUBLISHes `message` through a plain connection, as anyone who can reach Redis could.
fn publish(redis: &str, channel: &str, message: &str) {
    use std::fmt::Write as _;
    use std::io::{Read, Write as _};
    let mut stream = std::net::TcpStream::connect(redis.strip_prefix("redis://").unwrap()).unwrap();
    let mut command = String::from("*3\r\n");
    for part in ["PUBLISH", channel, message] {
        let _ = write!(command, "${}\r\n{part}\r\n", part.len());
    }
    stream.write_all(command.as_bytes()).unwrap();
    let mut reply = [0; 64];
    let read = stream.read(&mut reply).unwrap();
    assert!(
        reply[..read].starts_with(b":"),
        "{:?}",
        String::from_utf8_lossy(&reply[..read])
    );
}
