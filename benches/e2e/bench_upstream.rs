//! Mock LLM providers for the end-to-end benchmark (`benches/e2e.sh`): no recording, no
//! logging, a fixed OpenAI-style reply. Runs until Ctrl-C or SIGTERM.
//!
//! ```text
//! cargo run --release --example bench_upstream -- 127.0.0.1:18081 127.0.0.1:18082
//! ```
//!
//! With `--slow-streams` first, every answer is a stream whose first chunk comes at once and
//! whose second comes an hour later (`benches/memory.sh`: streams held in flight). With
//! `--stream-chunks N` first, every answer is a stream of N chunks a millisecond apart, each
//! its own frame (`FRAMES=N bash benches/instructions.sh`: the cost of each event).

use std::net::SocketAddr;
use std::time::Duration;

use llm_tower_mock::{Behavior, MockProvider};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut providers = Vec::new();
    let mut args = std::env::args().skip(1).peekable();
    let slow = args.next_if(|arg| arg == "--slow-streams").is_some();
    let chunks = match args.next_if(|arg| arg == "--stream-chunks") {
        Some(_) => {
            let n = args.next().ok_or("--stream-chunks takes a number")?;
            Some(
                n.parse::<usize>()
                    .map_err(|_| format!("`{n}` is not a number of chunks"))?,
            )
        }
        None => None,
    };
    for arg in args {
        let addr: SocketAddr = arg.parse().map_err(|_| format!("`{arg}` is not IP:PORT"))?;
        let mut builder = MockProvider::builder().record(false).bind(addr);
        if slow {
            builder = builder.default_behavior(Behavior::Stream {
                chunks: 2,
                interval: Duration::from_secs(3600),
            });
        } else if let Some(chunks) = chunks {
            builder = builder.default_behavior(Behavior::Stream {
                chunks,
                interval: Duration::from_millis(1),
            });
        }
        let provider = builder.start().await?;
        println!("mock provider on {}", provider.base_url());
        providers.push(provider);
    }
    if providers.is_empty() {
        return Err(
            "usage: bench_upstream [--slow-streams | --stream-chunks N] IP:PORT [IP:PORT ...]"
                .into(),
        );
    }
    llm_tower_gateway::shutdown_signal().await;
    Ok(())
}
