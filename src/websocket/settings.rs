//! [`WebSocketSettings`]: which routes under the mount may upgrade to a WebSocket, and the
//! limits of the sockets relayed (`websocket:` in the gateway's file).

use std::time::Duration;

use llm_tower::ConfigError;
use serde::Deserialize;

/// The default most bytes of one message, either way: 4 MiB (a Realtime session sends audio
/// in messages of a few hundred KiB). A socket may hold one message being read and one being
/// written each way: about four times this, at most, per socket.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// The default longest quiet spell, both ways, before a socket is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The WebSocket routes: `websocket: [/realtime]`, or with its limits
/// `websocket: { paths: [/realtime], idle_timeout: 5m, max_message_bytes: 4194304 }`. Off
/// when absent: an upgrade is never forwarded.
///
/// ```
/// use llm_tower_gateway::WebSocketSettings;
///
/// let short: WebSocketSettings = serde_json::from_str(r#"["/realtime"]"#).unwrap();
/// assert_eq!(short.paths, ["/realtime"]);
/// assert!(short.validate().is_ok());
/// let long: WebSocketSettings =
///     serde_json::from_str(r#"{ "paths": ["/realtime"], "idle_timeout": "30s" }"#).unwrap();
/// assert_eq!(long.idle_timeout, std::time::Duration::from_secs(30));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "Written")]
pub struct WebSocketSettings {
    /// Paths under the mount (`/realtime` is `{mount}/realtime`) where a WebSocket upgrade is
    /// relayed to a deployment.
    pub paths: Vec<String>,
    /// A socket quiet this long both ways is closed (code 1001).
    pub idle_timeout: Duration,
    /// A message larger than this, either way, closes the socket (code 1009).
    pub max_message_bytes: usize,
}

/// The two ways the file may say it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Paths(Vec<String>),
    Full {
        paths: Vec<String>,
        #[serde(default, with = "llm_tower::llm_tower_core::duration::option")]
        idle_timeout: Option<Duration>,
        #[serde(default)]
        max_message_bytes: Option<usize>,
    },
}

impl From<Written> for WebSocketSettings {
    fn from(written: Written) -> Self {
        let (paths, idle_timeout, max_message_bytes) = match written {
            Written::Paths(paths) => (paths, None, None),
            Written::Full {
                paths,
                idle_timeout,
                max_message_bytes,
            } => (paths, idle_timeout, max_message_bytes),
        };
        Self {
            paths,
            idle_timeout: idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
            max_message_bytes: max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
        }
    }
}

impl WebSocketSettings {
    /// Checks the paths and the limits.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `websocket.paths`, `websocket.idle_timeout` or
    /// `websocket.max_message_bytes`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.paths.is_empty() {
            return Err(ConfigError::invalid(
                "websocket.paths",
                "names no path (for example [/realtime])",
            ));
        }
        for path in &self.paths {
            if !path.starts_with('/') || path.contains(['?', '#', '*', '{', '}']) {
                return Err(ConfigError::invalid(
                    "websocket.paths",
                    format!("`{path}` must be a plain path under the mount, starting with `/`"),
                ));
            }
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "websocket.idle_timeout",
                "must not be 0",
            ));
        }
        if self.max_message_bytes == 0 {
            return Err(ConfigError::invalid(
                "websocket.max_message_bytes",
                "must not be 0",
            ));
        }
        Ok(())
    }

    /// Whether a request to `path` (as the client sent it) under `mount` may upgrade.
    pub(crate) fn allows(&self, mount: &str, path: &str) -> bool {
        let Some(under) = path.strip_prefix(mount.trim_end_matches('/')) else {
            return false;
        };
        self.paths
            .iter()
            .any(|allowed| allowed.trim_end_matches('/') == under.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_paths_under_the_mount_may_upgrade() {
        let settings: WebSocketSettings = serde_json::from_str(r#"["/realtime"]"#).unwrap();
        assert!(settings.allows("/v1", "/v1/realtime"));
        assert!(settings.allows("/v1/", "/v1/realtime/"));
        assert!(!settings.allows("/v1", "/realtime"));
        assert!(!settings.allows("/v1", "/v1/chat/completions"));
        assert!(!settings.allows("/v1", "/v1/realtime/x"));
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (json, field) in [
            ("[]", "websocket.paths"),
            (r#"["realtime"]"#, "websocket.paths"),
            (r#"["/realtime?x"]"#, "websocket.paths"),
            (
                r#"{"paths": ["/r"], "idle_timeout": "0s"}"#,
                "websocket.idle_timeout",
            ),
            (
                r#"{"paths": ["/r"], "max_message_bytes": 0}"#,
                "websocket.max_message_bytes",
            ),
        ] {
            let settings: WebSocketSettings = serde_json::from_str(json).unwrap();
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
    }
}
