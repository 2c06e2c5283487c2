//! A decomposition arm of the end-to-end benchmark (`benches/e2e.sh`): the library's stack
//! (`Upstream::build`: error responses, balancer, retry, auth, client) served by the same
//! hyper server as the bare proxy, without the gateway's router, middleware or front door.
//! Between the bare proxy and the gateway, it tells what the layers cost and what the
//! product around them costs.
//!
//! ```text
//! cargo run --release --example stack_proxy -- 127.0.0.1:18092 http://127.0.0.1:18081/v1 http://127.0.0.1:18082/v1
//! ```

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use llm_tower::{ApiKey, Endpoint, ExponentialBackoff, RetryPolicy, Upstream};

// The same allocator as the gateway and the bare proxy.
#[global_allocator]
static ALLOCATOR: llm_tower_alloc::MiMalloc = llm_tower_alloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(first), Some(second)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: stack_proxy LISTEN_ADDR UPSTREAM_BASE_URL UPSTREAM_BASE_URL".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let endpoint = |id: &str, url: &str| {
        Endpoint::builder(id, url)
            .api_key(ApiKey::new(&format!("sk-bench-{id}")).expect("a valid key"))
            .retry_policy(RetryPolicy::ExponentialBackoff(
                ExponentialBackoff::default(),
            ))
            .build()
    };
    let stack = Upstream::new(vec![
        endpoint("first", &first)?,
        endpoint("second", &second)?,
    ])
    .response_headers(true)
    .build()?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("stack proxy on http://{listen} -> {first}, {second}");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = llm_tower_gateway::shutdown_signal() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(stack.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
