//! The built-in demo: two mock providers on loopback and a configuration in front of them.

/// Writes a line to stdout, ignoring a closed stdout (no panic, unlike `println!`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use std::net::SocketAddr;
use std::time::Duration;

use llm_tower::{Config, EndpointConfig, ExponentialBackoff, HealthCheck, RetryPolicy, Secret};
use llm_tower_mock::{Behavior, MockProvider};

use crate::GatewayConfig;

/// The self-contained demo: two mock providers on loopback and a configuration in front of
/// them. Keep the returned providers alive while the gateway runs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let demo = llm_tower_gateway::demo("127.0.0.1:0".parse().unwrap()).await.unwrap();
/// assert_eq!(demo.config.upstream.endpoints.len(), 2);
/// assert!(demo.primary.base_url().starts_with("http://127.0.0.1:"));
/// // The primary is health-checked: it comes back after an ejection without user traffic.
/// assert!(demo.config.upstream.endpoints[0].health_check.is_some());
/// # }
/// ```
#[derive(Debug)]
pub struct Demo {
    /// Fails now and then: 503 (retried) and 429 with `Retry-After: 3` (cooled down); its
    /// `GET /v1/models` health check passes, so it comes back without user traffic.
    pub primary: MockProvider,
    /// Always healthy, lower priority.
    pub backup: MockProvider,
    /// The gateway configuration pointing at them.
    pub config: GatewayConfig,
}

impl Demo {
    /// Prints what the demo is and `curl` lines to try against a gateway at `addr` and
    /// `mount`.
    pub fn print_try_it(&self, addr: SocketAddr, mount: &str) {
        say!(
            "demo: `primary` ({}) fails now and then, `backup` ({}) is healthy",
            self.primary.base_url(),
            self.backup.base_url()
        );
        say!("\ntry it:");
        say!(
            "  curl -s http://{addr}{mount}/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"mock-model\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}' -i"
        );
        say!(
            "  curl -sN http://{addr}{mount}/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"mock-model\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
        );
        say!(
            "  for i in $(seq 20); do curl -s -o /dev/null -w '%{{http_code}} ' http://{addr}{mount}/chat/completions -d '{{}}'; done; echo"
        );
        say!("  curl -s http://{addr}/upstreams    # health of each endpoint");
        say!("  curl -s http://{addr}/metrics      # Prometheus metrics");
        say!("\nthe live health page, in a browser: http://{addr}/ui");
        say!(
            "\n`primary` is health-checked (GET /v1/models every 10 s, and when a cooldown ends):\n\
             after the loop above ejects it, watch it come back with no traffic at all:"
        );
        say!(
            "  for i in $(seq 8); do curl -s http://{addr}/upstreams | grep -o '\"id\":\"primary\",\"status\":\"[a-z_]*\"'; sleep 1; done\n"
        );
    }
}

/// Starts the demo providers and returns the configuration for a gateway on `listen`.
///
/// # Errors
///
/// When a mock provider cannot bind a loopback port.
pub async fn demo(listen: SocketAddr) -> std::io::Result<Demo> {
    let primary = MockProvider::start().await?;
    let backup = MockProvider::start().await?;
    let mut cycle = vec![Behavior::Reply; 10];
    cycle[2] = Behavior::status(503);
    cycle[6] = Behavior::retry_after(429, "3");
    primary.set_cycle(cycle);

    let endpoint = |id: &str, base_url: String, priority: u32| EndpointConfig {
        priority,
        health_check_interval: Duration::from_secs(2),
        api_key: Some(Secret::new(format!("sk-demo-{id}"))),
        retry_policy: RetryPolicy::ExponentialBackoff(ExponentialBackoff {
            times: 1,
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(500),
            multiplier: 2.0,
        }),
        ..EndpointConfig::new(id, base_url)
    };
    let checked = EndpointConfig {
        health_check: Some(HealthCheck {
            interval: Some(Duration::from_secs(10)),
            ..HealthCheck::default()
        }),
        ..endpoint("primary", primary.base_url(), 0)
    };
    let upstream = Config::with_endpoints(vec![checked, endpoint("backup", backup.base_url(), 1)]);
    let mut config = GatewayConfig::new(upstream);
    config.listen = listen;
    Ok(Demo {
        primary,
        backup,
        config,
    })
}
