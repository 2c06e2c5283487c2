//! Mock LLM providers for the end-to-end benchmark (`benches/e2e.sh`): no recording, no
//! logging, a fixed OpenAI-style reply. Runs until Ctrl-C or SIGTERM.
//!
//! ```text
//! cargo run --release --example bench_upstream -- 127.0.0.1:18081 127.0.0.1:18082
//! ```

use std::net::SocketAddr;

use llm_tower_mock::MockProvider;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut providers = Vec::new();
    for arg in std::env::args().skip(1) {
        let addr: SocketAddr = arg.parse().map_err(|_| format!("`{arg}` is not IP:PORT"))?;
        let provider = MockProvider::builder()
            .record(false)
            .bind(addr)
            .start()
            .await?;
        println!("mock provider on {}", provider.base_url());
        providers.push(provider);
    }
    if providers.is_empty() {
        return Err("usage: bench_upstream IP:PORT [IP:PORT ...]".into());
    }
    llm_tower_gateway::shutdown_signal().await;
    Ok(())
}
