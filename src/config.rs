//! The gateway's configuration file: the library's [`Config`] plus the gateway's own keys
//! (`listen`, `mount`, `admin_listen`, `server`, `client_auth`, `limits_store`, `otel`,
//! `websocket`, `allow_unauthenticated`, `allowed_hosts`, `cors`), all at the top level of one YAML, TOML
//! or JSON file.

use std::net::SocketAddr;
use std::path::Path;

use llm_tower::config::Document;
use llm_tower::limits::store::LimitsStoreSettings;
use llm_tower::otel::OtelSettings;
use llm_tower::{Config, ConfigError};
use serde::Deserialize;

use crate::browser::validate_hosts;
use crate::{ClientAuth, CorsSettings, ServerSettings, WebSocketSettings};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default mount path.
pub const DEFAULT_MOUNT: &str = "/v1";

/// The gateway's configuration: the upstream [`Config`] plus the front door's settings.
///
/// ```
/// use llm_tower::{Config, EndpointConfig};
/// use llm_tower_gateway::GatewayConfig;
///
/// let mut config = GatewayConfig::new(Config::with_endpoints(vec![EndpointConfig::new(
///     "local",
///     "http://127.0.0.1:11434/v1",
/// )]));
/// config.set_listen("127.0.0.1:9000").unwrap();
/// assert!(config.set_listen("localhost").is_err());
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    /// Where to listen (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Path prefix that is forwarded (default `/v1`); replaced by each endpoint's `base_url`.
    pub mount: String,
    /// Where to serve `/upstreams` and `/metrics` instead of the main listener (no client
    /// authentication there: bind it to loopback or a private interface).
    pub admin_listen: Option<SocketAddr>,
    /// Timeouts and limits of client connections.
    pub server: ServerSettings,
    /// The keys clients must present; `None` lets anyone in (refused on a non-loopback
    /// `listen` unless `allow_unauthenticated`).
    pub client_auth: Option<ClientAuth>,
    /// Where replicas share the client keys' limits (default none: each process counts its
    /// own).
    pub limits_store: Option<LimitsStoreSettings>,
    /// Where spans and the GenAI metrics go over OTLP (default none: no tracing work at
    /// all). Changing it takes a restart.
    pub otel: Option<OtelSettings>,
    /// The routes under the mount where a WebSocket upgrade is relayed to a deployment
    /// (default none: upgrades are never forwarded).
    pub websocket: Option<WebSocketSettings>,
    /// Serve a non-loopback `listen` without `client_auth` anyway.
    pub allow_unauthenticated: bool,
    /// Host names (or addresses) clients reach the gateway by, besides `localhost`,
    /// `127.0.0.1`, `[::1]` and the listen address: a listener without client keys on
    /// loopback, and every listener when this is not empty, refuses any other `Host` (403),
    /// so that a web page cannot reach it through a name rebound to this machine.
    pub allowed_hosts: Vec<String>,
    /// The web origins whose pages may call the gateway from a browser (default none:
    /// requests that name another origin are refused with 403).
    pub cors: Option<CorsSettings>,
    /// The upstream configuration.
    pub upstream: Config,
}

/// The keys the gateway owns in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayKeys {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    mount: Option<String>,
    #[serde(default)]
    admin_listen: Option<String>,
    #[serde(default)]
    server: ServerSettings,
    #[serde(default)]
    client_auth: Option<ClientAuth>,
    #[serde(default)]
    limits_store: Option<LimitsStoreSettings>,
    #[serde(default)]
    otel: Option<OtelSettings>,
    #[serde(default)]
    websocket: Option<WebSocketSettings>,
    #[serde(default)]
    allow_unauthenticated: bool,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    cors: Option<CorsSettings>,
}

impl GatewayConfig {
    /// Defaults for `listen` and `mount` around an upstream configuration.
    pub fn new(upstream: Config) -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            mount: DEFAULT_MOUNT.to_owned(),
            admin_listen: None,
            server: ServerSettings::default(),
            client_auth: None,
            limits_store: None,
            otel: None,
            websocket: None,
            allow_unauthenticated: false,
            allowed_hosts: Vec::new(),
            cors: None,
            upstream,
        }
    }

    /// Reads a YAML, TOML or JSON file (the library's schema plus `listen` and `mount`).
    ///
    /// # Errors
    ///
    /// Any [`ConfigError`], naming the field.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let mut document = Document::read(path.as_ref())?;
        let upstream = Config::from_document(&mut document)?;
        let keys: GatewayKeys = document.take()?;
        document.finish()?;
        let mut config = Self {
            server: keys.server,
            client_auth: keys.client_auth,
            limits_store: keys.limits_store,
            otel: keys.otel,
            websocket: keys.websocket,
            allow_unauthenticated: keys.allow_unauthenticated,
            allowed_hosts: keys.allowed_hosts,
            cors: keys.cors,
            ..Self::new(upstream)
        };
        if let Some(listen) = keys.listen {
            config.set_listen(&listen)?;
        }
        if let Some(admin) = keys.admin_listen {
            config.admin_listen = Some(parse_addr("admin_listen", &admin)?);
        }
        if let Some(mount) = keys.mount {
            config.mount = mount;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets `listen` from text such as `127.0.0.1:8080`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for `listen` when it is not `IP:PORT`.
    pub fn set_listen(&mut self, listen: &str) -> Result<(), ConfigError> {
        self.listen = parse_addr("listen", listen)?;
        Ok(())
    }

    /// Checks `mount` and the upstream configuration.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.mount.starts_with('/') || self.mount.contains(['?', '#', '{', '}', '*']) {
            return Err(ConfigError::invalid(
                "mount",
                format!("`{}` must be a plain path starting with `/`", self.mount),
            ));
        }
        self.server.validate()?;
        if let Some(store) = &self.limits_store {
            store.validate()?;
        }
        if let Some(otel) = &self.otel {
            otel.validate()?;
        }
        if let Some(websocket) = &self.websocket {
            websocket.validate()?;
        }
        validate_hosts(&self.allowed_hosts)?;
        if let Some(cors) = &self.cors {
            cors.validate()?;
        }
        let max_body_bytes = self.upstream.fallback.max_body_bytes;
        if self.server.max_buffered_bytes < max_body_bytes {
            return Err(ConfigError::invalid(
                "server.max_buffered_bytes",
                format!(
                    "must be at least max_body_bytes ({max_body_bytes}): a body that large \
                     could never be taken"
                ),
            ));
        }
        if let Some(admin) = self.admin_listen
            && !is_loopback(admin)
            && !self.allow_unauthenticated
        {
            return Err(ConfigError::invalid(
                "admin_listen",
                format!(
                    "{admin} is not a loopback address, and the admin routes have no client \
                         authentication: bind it to loopback, or set allow_unauthenticated: true \
                         if the network in front of it is private"
                ),
            ));
        }
        if let Some(auth) = &self.client_auth {
            auth.validate()?;
            if !self.upstream.usage && auth.limits_tokens_or_spend() {
                return Err(ConfigError::invalid(
                    "usage",
                    "is false, but client_auth limits tokens or spend, which are counted from \
                     each answer's usage: set usage: true",
                ));
            }
        } else if !is_loopback(self.listen) && !self.allow_unauthenticated {
            return Err(ConfigError::invalid(
                "client_auth",
                format!(
                    "the gateway would listen on {}, which is not a loopback address, without \
                     client_auth: anyone who reaches it could spend your provider keys. Add \
                     client_auth keys, or set allow_unauthenticated: true if something in \
                     front of it authenticates clients",
                    self.listen
                ),
            ));
        }
        self.upstream.validate()
    }
}

/// Loopback, IPv4-mapped IPv6 (`::ffff:127.0.0.1`) included.
fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

fn parse_addr(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            field,
            format!("`{text}` is not an address such as 127.0.0.1:8080"),
        )
    })
}
