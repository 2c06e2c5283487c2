//! The `llm-tower-gateway` binary as an operator runs it (long because each test drives a
//! real process through one scenario, sharing the helpers that start and watch it):
//! `--check`, `--version`, signals, descriptor limits, reloads, and the built-in demo.

mod binary;

use std::process::Command;

use binary::*;

#[test]
fn check_accepts_a_good_file_and_names_the_field_of_a_bad_one() {
    let good = temp_file(
        "good.yaml",
        "listen: 127.0.0.1:0\nendpoints:\n  - id: a\n    base_url: http://127.0.0.1:9/v1\n",
    );
    let output = Command::new(BIN)
        .args(["--config", good.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    let bad = temp_file(
        "bad.toml",
        "[[endpoints]]\nid = \"a\"\nbase_url = \"http://h\"\nweight = 0\n",
    );
    let output = Command::new(BIN)
        .args(["--check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("endpoint `a`: weight"), "{stderr}");

    // The `--listen` that serving would use is checked too.
    let output = Command::new(BIN)
        .args([
            "--check",
            "--config",
            good.to_str().unwrap(),
            "--listen",
            "0.0.0.0:8080",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("client_auth"));

    // Every v1 file keeps working.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway.yaml");
    let output = Command::new(BIN)
        .args(["--check", "--config", example])
        .env("OPENAI_API_KEY", "sk-check")
        .env("AZURE_OPENAI_API_KEY", "check")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    // So does the multi-model example.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/models.yaml");
    let output = Command::new(BIN)
        .args(["--check", "--config", example])
        .env("OPENAI_API_KEY", "sk-check")
        .env("AZURE_EAST_KEY", "check")
        .env("AZURE_WEST_KEY", "check")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn version_help_and_bad_arguments() {
    let output = Command::new(BIN).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("llm-tower-gateway {}", env!("CARGO_PKG_VERSION"))
    );
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("--check"));
    let output = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn without_a_config_it_serves_the_demo() {
    let mut command = Command::new(BIN);
    command.args(["--listen", "127.0.0.1:0"]);
    let (_running, url, mut lines) = launch(command);
    let printed: Vec<String> = lines.by_ref().take(6).map(Result::unwrap).collect();
    assert!(
        printed.iter().any(|l| l.contains("curl -s http://")),
        "{printed:?}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use http_body_util::BodyExt;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let request = http::Request::post(format!("{url}/chat/completions"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#,
            )))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-llm-tower-endpoint"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["object"], "chat.completion");
    });
}

fn gateway_config(upstream: &str, grace: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nserver: {{ shutdown_grace: {grace} }}\nendpoints:\n  - id: mock\n    base_url: {upstream}\n"
    )
}

/// The binary with `shutdown_grace: grace` in front of a mock streaming without end, and a
/// stream through it that has delivered its first frame.
async fn mid_stream(
    grace: &str,
) -> (
    llm_tower_mock::MockProvider,
    Running,
    String,
    hyper::body::Incoming,
) {
    use http_body_util::BodyExt;
    let mock = llm_tower_mock::MockProvider::start().await.unwrap();
    mock.set_default(llm_tower_mock::Behavior::Stream {
        chunks: 100_000,
        interval: std::time::Duration::from_millis(50),
    });
    let (running, url) = start_binary(&gateway_config(&mock.base_url(), grace));
    let response = client()
        .request(post(&url, r#"{"stream":true}"#))
        .await
        .unwrap();
    let mut stream = response.into_body();
    assert!(stream.frame().await.unwrap().unwrap().is_data());
    (mock, running, url, stream)
}

/// Whether the gateway at `url` comes to refuse new connections while it is still running
/// (draining), not only once it exited. It is given a few seconds: on a loaded machine (CI
/// building and testing in parallel) a debug binary can take a while to act on a signal.
async fn refuses_connections(url: &str, running: &mut Running) -> bool {
    let addr = url.trim_start_matches("http://").trim_end_matches("/v1");
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return running.0.try_wait().is_ok_and(|exited| exited.is_none());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_an_endless_stream_after_the_grace() {
    let (_mock, mut running, url, _stream) = mid_stream("1s").await;
    let asked = std::time::Instant::now();
    terminate(&running);
    // Draining: new clients are refused at once, so they can go elsewhere.
    assert!(
        refuses_connections(&url, &mut running).await,
        "the listener stayed open during the drain"
    );
    let code = tokio::task::spawn_blocking(move || {
        let code = wait_exit(&mut running, std::time::Duration::from_secs(10));
        (code, running)
    })
    .await
    .unwrap()
    .0;
    let took = asked.elapsed();
    assert_eq!(
        code,
        Some(0),
        "a drain that ran out of time still exits cleanly"
    );
    assert!(
        // The stream is endless: only the grace ends it. The upper bound leaves room for a
        // loaded machine.
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(5),
        "exited {took:?} after SIGTERM with a grace of 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_short_request_finish_first() {
    use http_body_util::BodyExt;
    let mock = llm_tower_mock::MockProvider::start().await.unwrap();
    mock.set_default(llm_tower_mock::Behavior::delay(
        std::time::Duration::from_millis(500),
        llm_tower_mock::Behavior::Reply,
    ));
    let (running, url) = start_binary(&gateway_config(&mock.base_url(), "30s"));
    let in_flight = tokio::spawn(async move {
        client()
            .request(post(&url, r#"{"model":"m","messages":[]}"#))
            .await
    });
    // Wait until the request reached the upstream, then ask the gateway to stop.
    while mock.request_count() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    terminate(&running);
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("chat.completion"));
    let mut running = running;
    let code = tokio::task::spawn_blocking(move || {
        wait_exit(&mut running, std::time::Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once() {
    let (_mock, mut running, url, _stream) = mid_stream("60s").await;
    terminate(&running);
    // The first signal is being handled (draining) before the second is sent.
    assert!(refuses_connections(&url, &mut running).await);
    let asked = std::time::Instant::now();
    terminate(&running);
    let code = tokio::task::spawn_blocking(move || {
        wait_exit(&mut running, std::time::Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(130));
    assert!(asked.elapsed() < std::time::Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_few_descriptors_the_gateway_caps_its_connections_and_recovers() {
    let path = temp_file(
        "fd-limit.yaml",
        "listen: 127.0.0.1:0\nendpoints:\n  - id: a\n    base_url: http://127.0.0.1:9/v1\n",
    );
    // A descriptor limit (soft and hard) that a few dozen clients would exhaust.
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!("ulimit -n 48 && exec {BIN} --config {}", path.display()),
    ]);
    let (mut running, url, lines) = launch(command);
    // The log goes to stdout.
    let log =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_owned();

    // Hold far more connections than the gateway can have descriptors.
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(stream) = tokio::net::TcpStream::connect(&addr).await {
            held.push(stream);
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        running.0.try_wait().unwrap().is_none(),
        "the gateway exited"
    );
    drop(held);

    // Once the clients are gone, it serves again.
    let mut served = false;
    for _ in 0..50 {
        let health = client()
            .get(format!("http://{addr}/healthz").parse().unwrap())
            .await;
        if health.is_ok_and(|r| r.status() == 200) {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(served, "the gateway did not recover");
    terminate(&running);
    let _ = tokio::task::spawn_blocking(move || {
        wait_exit(&mut running, std::time::Duration::from_secs(10))
    })
    .await;
    // The cap kept the descriptors from running out: accept never failed for want of one.
    let log = log.join().unwrap();
    assert!(log.contains("serving at most 1 connections"), "{log}");
    assert!(!log.contains("cannot accept connections"), "{log}");
}

/// The configuration generation `/upstreams` reports, once it satisfies `done` (a bounded
/// number of looks: a reload happens when the binary gets to it).
async fn generation_once(url: &str, done: impl Fn(u64, &[String]) -> bool) -> (u64, Vec<String>) {
    use http_body_util::BodyExt;
    let upstreams = format!("{}/upstreams", url.trim_end_matches("/v1"));
    let client = client();
    for _ in 0..500 {
        let response = client.get(upstreams.parse().unwrap()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let generation = json["config"]["generation"].as_u64().unwrap();
        let ids: Vec<String> = json["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect();
        if done(generation, &ids) {
            return (generation, ids);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{upstreams} never got there");
}

fn reload_config(upstream: &str, ids: &[&str]) -> String {
    use std::fmt::Write as _;
    let mut file = String::from("listen: 127.0.0.1:0\nendpoints:\n");
    for id in ids {
        let _ = writeln!(file, "  - {{ id: {id}, base_url: '{upstream}' }}");
    }
    file
}

/// The binary on a file serving endpoints `a` in front of a mock, started with `args`.
async fn reloading_binary(
    name: &str,
    args: &[&str],
) -> (
    llm_tower_mock::MockProvider,
    std::path::PathBuf,
    Running,
    String,
    Log,
) {
    let mock = llm_tower_mock::MockProvider::start().await.unwrap();
    let path = temp_file(name, &reload_config(&mock.base_url(), &["a"]));
    let mut command = Command::new(BIN);
    command
        .args(["--config", path.to_str().unwrap()])
        .args(args);
    let (running, url, lines) = launch(command);
    (mock, path, running, url, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_and_a_bad_one_changes_nothing() {
    let (mock, path, running, url, lines) = reloading_binary("sighup.yaml", &[]).await;
    let (log, logged) = std::sync::mpsc::channel();
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| drop(log.send(l))));
    let hangup = || {
        let pid = running.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };

    std::fs::write(&path, reload_config(&mock.base_url(), &["a", "b"])).unwrap();
    hangup();
    let (generation, ids) = generation_once(&url, |g, _| g == 2).await;
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(generation, 2);
    let response = client().request(post(&url, "{}")).await.unwrap();
    assert_eq!(response.status(), 200);

    std::fs::write(
        &path,
        "endpoints: [{ id: a, base_url: 'http://h', weight: 0 }]\n",
    )
    .unwrap();
    hangup();
    let line = tokio::task::spawn_blocking(move || {
        (0..100).find_map(|_| {
            let line = logged
                .recv_timeout(std::time::Duration::from_millis(100))
                .ok()?;
            line.contains("configuration not reloaded").then_some(line)
        })
    })
    .await
    .unwrap()
    .expect("the refusal is logged");
    assert!(line.contains("endpoint `a`: weight"), "{line}");
    let (generation, ids) = generation_once(&url, |_, _| true).await;
    assert_eq!(
        (generation, ids.len()),
        (2, 2),
        "the running configuration stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_when_the_file_changes() {
    let (mock, path, _running, url, lines) = reloading_binary("watch.yaml", &["--watch"]).await;
    std::thread::spawn(move || lines.for_each(drop));
    std::fs::write(&path, reload_config(&mock.base_url(), &["a", "c"])).unwrap();
    // The new deployments join the registry a moment before the generation moves on: the
    // reload is done when the generation says so.
    let (generation, ids) = generation_once(&url, |generation, _| generation >= 2).await;
    assert_eq!(generation, 2, "one reload for one change");
    assert_eq!(ids, ["a", "c"]);
}

/// The soft limit of open files is raised to the hard one at start, and a limit too low for
/// `max_connections` lowers the connection cap, saying so.
#[test]
fn the_limit_of_open_files_is_raised_and_bounds_the_connection_cap() {
    let config = temp_file(
        "descriptors.yaml",
        "listen: 127.0.0.1:0\nendpoints:\n  - { id: a, base_url: \"http://127.0.0.1:9/v1\" }\n",
    );
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!(
            "ulimit -Sn 256 && ulimit -Hn 512 && exec {BIN} --config {}",
            config.display()
        ),
    ]);
    let (running, _url, mut lines) = launch(command);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", running.0.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["512", "512"], "{open_files}");
    let warning = lines
        .find_map(|line| line.ok().filter(|l| l.contains("max_connections")))
        .unwrap();
    assert!(
        warning.contains("serving at most 224 connections"),
        "{warning}"
    );
}

/// HTTP/2 multiplexes requests, each with an upstream connection of its own while its answer
/// streams: requests in flight are bounded by the descriptors too, so that a few HTTP/2
/// connections cannot exhaust them, and the gateway keeps accepting clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_cannot_exhaust_the_descriptors() {
    let mock = llm_tower_mock::MockProvider::start().await.unwrap();
    // A first chunk at once, the next an hour later: each answer holds its connections.
    mock.set_default(llm_tower_mock::Behavior::Stream {
        chunks: 2,
        interval: std::time::Duration::from_secs(3600),
    });
    let path = temp_file(
        "h2-streams.yaml",
        &format!(
            "listen: 127.0.0.1:0\nendpoints:\n  - {{ id: slow, base_url: \"{}\", retry_policy: {{ name: NoRetry }} }}\n",
            mock.base_url()
        ),
    );
    // 128 descriptors: at most 32 requests in flight.
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!("ulimit -n 128 && exec {BIN} --config {}", path.display()),
    ]);
    let (running, url, lines) = launch(command);
    let log =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    // Three HTTP/2 connections of 100 streams each, all answered slowly.
    let mut answers = Vec::new();
    for _ in 0..3 {
        let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        for _ in 0..100 {
            answers.push(tokio::spawn(
                h2.request(post(&url, "{\"model\":\"m\",\"messages\":[]}")),
            ));
        }
    }
    let mut held = Vec::new();
    for answer in answers {
        held.push(answer.await.unwrap().unwrap());
    }
    let refused = held.iter().filter(|a| a.status() == 503).count();
    assert!(refused >= 300 - 32, "{refused} refused");
    // A new client is still accepted and served while the streams are held.
    let health = client()
        .get(
            format!("{}/healthz", url.trim_end_matches("/v1"))
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    drop(held);
    drop(running);
    let log = log.join().unwrap();
    assert!(!log.contains("cannot accept connections"), "{log}");
}
