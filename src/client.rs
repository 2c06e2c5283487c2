//! The pooled HTTPS client at the bottom of the stack.

use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use llm_tower_core::{BufferedBody, ClientConfig};

/// hyper-util's pooled client over rustls (ring, webpki roots), HTTP/1.1 and HTTP/2 by ALPN.
/// It never follows redirects.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, BufferedBody>;

/// Builds the client: TCP_NODELAY, the configured connect timeout, pool idle timeout and
/// pool size. Plain `http://` endpoints (local models, tests) are allowed too.
///
/// # Panics
///
/// Never in practice: only when rustls rejects its own bundled ring provider.
pub fn http_client(config: &ClientConfig) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .expect("the ring provider supports the default TLS versions")
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .build(https)
}
