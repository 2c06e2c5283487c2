//! The balancer's healthy path, `N` requests in a row, for callgrind: instructions per request
//! are deterministic where wall-clock time on a shared VM moves by ±20 %.
//!
//! ```text
//! cargo build --release --example balancer_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/balancer_instructions least_latency 1024 20000
//! ```
//!
//! Run it twice with different `N` and divide the difference in instructions by the
//! difference in `N`: set-up cancels out. `benches/balancer/instructions.sh` does that for
//! every strategy at 2, 64 and 1024 endpoints.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use llm_tower_core::{BufferedBody, Endpoint};
use llm_tower_fallback::{FallbackLayer, HealthRegistry, Strategy};
use llm_tower_mock::scripted::SingleFrame;
use tower::{Layer, Service, ServiceExt, service_fn};

const BODY: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [strategy, endpoints, requests] = args.as_slice() else {
        eprintln!("usage: balancer_instructions STRATEGY ENDPOINTS REQUESTS");
        std::process::exit(2);
    };
    let strategy: Strategy = serde_json::from_value(serde_json::Value::String(strategy.clone()))
        .expect("round_robin | weighted | least_in_flight | least_latency");
    let endpoints: usize = endpoints.parse().expect("a number of endpoints");
    let requests: usize = requests.parse().expect("a number of requests");
    let endpoints = (0..endpoints).map(|i| {
        Endpoint::builder(format!("ep-{i}"), format!("https://ep-{i}.example/v1"))
            .build()
            .expect("valid endpoint")
    });
    let ok = service_fn(|request: Request<BufferedBody>| async move {
        drop(request);
        Ok::<_, Infallible>(Response::new(SingleFrame::empty()))
    });
    let service = FallbackLayer::builder(endpoints)
        .strategy(strategy)
        .build(HealthRegistry::new())
        .expect("valid layer")
        .layer(ok);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        for _ in 0..requests {
            let request = Request::post("/chat/completions")
                .header("content-type", "application/json")
                .body(SingleFrame::new(Bytes::from_static(BODY)))
                .expect("valid request");
            let mut service = service.clone();
            let ready = ServiceExt::<Request<SingleFrame>>::ready(&mut service)
                .await
                .expect("ready");
            let response = ready.call(request).await.expect("response");
            assert!(response.status().is_success());
        }
    });
}
