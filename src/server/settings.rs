//! [`ServerSettings`]: the front door's timeouts and limits (`server:` in the file).

use std::time::Duration;

use llm_tower::ConfigError;
use serde::{Deserialize, Serialize};

/// How the gateway treats its clients' connections: what Envoy calls
/// `request_headers_timeout` and nginx `client_header_timeout`, `client_body_timeout` and
/// `keepalive_timeout`, plus size and connection caps and the shutdown drain.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_gateway::ServerSettings;
///
/// let settings = ServerSettings { max_connections: 512, ..ServerSettings::default() };
/// settings.validate().unwrap();
/// assert_eq!(settings.header_read_timeout, Some(Duration::from_secs(10)));
/// let bad = ServerSettings { max_header_bytes: 1024, ..settings };
/// assert!(bad.validate().unwrap_err().to_string().starts_with("server.max_header_bytes"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// From the first byte of a request to the end of its header block (default 10 s); a
    /// client that dawdles longer is disconnected. `null` for none.
    #[serde(with = "llm_tower::llm_tower_core::duration::option")]
    pub header_read_timeout: Option<Duration>,
    /// From the request head to the end of its body (default 30 s); a stalled or dripped
    /// upload gets 408 and nothing is sent upstream. `null` for none.
    #[serde(with = "llm_tower::llm_tower_core::duration::option")]
    pub body_read_timeout: Option<Duration>,
    /// A keep-alive connection with no request in flight is closed after this long (default
    /// 60 s). `null` for none.
    #[serde(with = "llm_tower::llm_tower_core::duration::option")]
    pub idle_timeout: Option<Duration>,
    /// A response write that waits this long for the client to read closes the connection
    /// (default 60 s): a client that stops reading would otherwise hold its connection, and
    /// the upstream's generation, forever. `null` for none.
    #[serde(with = "llm_tower::llm_tower_core::duration::option")]
    pub send_timeout: Option<Duration>,
    /// Largest request header block (default 64 KiB, at least 8 KiB); larger gets 431. The
    /// HTTP/2 header list limit is the same.
    pub max_header_bytes: usize,
    /// Connections served at once (default 10 000). At the cap, a newcomer makes the
    /// keep-alive connection idle longest close, or waits (in the kernel's backlog) until one
    /// does. The gateway raises its limit of open files to the hard limit at start, and
    /// serves fewer connections, saying so, when that limit cannot hold this many with an
    /// upstream connection each.
    pub max_connections: usize,
    /// Request body bytes the whole process holds at once (default 512 MiB; at least
    /// `max_body_bytes`). Each body is buffered for replay up to `max_body_bytes`; this
    /// bounds their sum. A request whose body does not fit is refused with 503 and
    /// `Retry-After`, before its body is read when it declares its length, at the first
    /// byte past the budget otherwise. Size it to the memory the gateway may use.
    pub max_buffered_bytes: usize,
    /// Requests one HTTP/2 connection may have in flight at once (default 100).
    pub http2_max_concurrent_streams: u32,
    /// On SIGTERM or Ctrl-C, how long in-flight requests and streams may finish before the
    /// rest are cut (default 30 s).
    #[serde(with = "llm_tower::llm_tower_core::duration")]
    pub shutdown_grace: Duration,
    /// HTTP/2 keep-alive ping interval (default 20 s).
    #[serde(with = "llm_tower::llm_tower_core::duration")]
    pub http2_keep_alive_interval: Duration,
    /// An HTTP/2 ping unanswered for this long closes the connection (default 20 s).
    #[serde(with = "llm_tower::llm_tower_core::duration")]
    pub http2_keep_alive_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Some(Duration::from_secs(10)),
            body_read_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(60)),
            send_timeout: Some(Duration::from_secs(60)),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            http2_max_concurrent_streams: 100,
            shutdown_grace: Duration::from_secs(30),
            http2_keep_alive_interval: Duration::from_secs(20),
            http2_keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// Default budget for buffered request bodies: 512 MiB, sixteen bodies of the default
/// 32 MiB cap, or thousands of ordinary prompts.
pub(crate) const DEFAULT_MAX_BUFFERED_BYTES: usize = 512 * 1024 * 1024;

/// hyper reads at least this much at a time; a smaller header cap cannot be enforced.
const MIN_HEADER_BYTES: usize = 8 * 1024;
/// A header block larger than this is no request a provider would take.
const MAX_HEADER_BYTES: usize = 1024 * 1024;

impl ServerSettings {
    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("server.header_read_timeout", self.header_read_timeout),
            ("server.body_read_timeout", self.body_read_timeout),
            ("server.idle_timeout", self.idle_timeout),
            ("server.send_timeout", self.send_timeout),
            ("server.shutdown_grace", Some(self.shutdown_grace)),
            (
                "server.http2_keep_alive_interval",
                Some(self.http2_keep_alive_interval),
            ),
            (
                "server.http2_keep_alive_timeout",
                Some(self.http2_keep_alive_timeout),
            ),
        ] {
            ConfigError::check_timeout(field, value)?;
        }
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            return Err(ConfigError::invalid(
                "server.max_header_bytes",
                format!("must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES}"),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "server.max_connections",
                "must be at least 1",
            ));
        }
        if self.http2_max_concurrent_streams == 0 {
            return Err(ConfigError::invalid(
                "server.http2_max_concurrent_streams",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
