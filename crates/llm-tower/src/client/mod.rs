//! The pooled HTTP client at the bottom of the stack, and what its errors mean.

mod classify;
mod settings;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use llm_tower_core::{BufferedBody, ConfigError, Error};
use pin_project_lite::pin_project;
use tower::Service;

pub use settings::ClientSettings;

#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

/// hyper-util's pooled client, HTTP/1.1 and HTTP/2 (by ALPN over TLS), as a tower
/// [`Service`] whose errors are llm-tower [`Error`]s classified from hyper's typed errors
/// (connect failure, connection closed before the head, timeout, malformed head). It never
/// follows redirects.
///
/// TLS uses rustls with the ring provider and the roots chosen by a feature:
/// `rustls-webpki-roots` (the default: Mozilla's roots compiled in) or `rustls-native-roots`
/// (the system's). Without either, only `http://` endpoints can be reached and
/// [`Upstream::build`](crate::Upstream::build) refuses `https://` ones.
///
/// ```
/// use llm_tower::{ClientSettings, HttpClient};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let client = HttpClient::new(&ClientSettings::default()).unwrap();
/// # let _ = client;
/// # }
/// ```
#[derive(Clone)]
pub struct HttpClient {
    max_head_bytes: usize,
    // Shared: the stack clones its inner service for every request, and hyper-util's client
    // is a large value of many `Arc`s.
    inner: Arc<Client<Connector, BufferedBody>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the client: TCP_NODELAY, the configured connect timeout, pool idle timeout and
    /// pool size. Plain `http://` endpoints (local models, tests) are allowed too.
    ///
    /// # Errors
    ///
    /// An invalid setting, or (with `rustls-native-roots`) no usable system root
    /// certificate.
    pub fn new(settings: &ClientSettings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let connector = tls_connector(http)?;
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            // The read buffer must hold the whole head: a larger one is a parse error.
            .http1_max_buf_size(settings.max_response_head_bytes)
            .http2_only(settings.http2_only)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            max_head_bytes: settings.max_response_head_bytes,
            inner: Arc::new(inner),
        })
    }

    /// Whether this build of llm-tower can reach `https://` endpoints.
    pub const SUPPORTS_HTTPS: bool = cfg!(feature = "tls");

    /// Sends one request.
    pub fn request(&self, request: Request<BufferedBody>) -> HttpClientFuture {
        HttpClientFuture {
            max_head_bytes: self.max_head_bytes,
            inner: self.inner.request(request),
        }
    }
}

#[cfg(feature = "tls")]
fn tls_connector(http: HttpConnector) -> Result<Connector, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    #[cfg(feature = "rustls-native-roots")]
    let builder = builder
        .with_provider_and_native_roots(provider)
        .map_err(|err| {
            ConfigError::invalid(
                "client",
                format!("no usable system root certificate: {err}"),
            )
        })?;
    #[cfg(not(feature = "rustls-native-roots"))]
    let builder = builder
        .with_provider_and_webpki_roots(provider)
        .map_err(|err| ConfigError::invalid("client", format!("TLS setup failed: {err}")))?;
    Ok(builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

#[cfg(not(feature = "tls"))]
#[allow(clippy::unnecessary_wraps)]
fn tls_connector(http: HttpConnector) -> Result<Connector, ConfigError> {
    Ok(http)
}

impl Service<Request<BufferedBody>> for HttpClient {
    type Response = Response<HttpClientBody>;
    type Error = Error;
    type Future = HttpClientFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The pool opens connections on demand: always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<BufferedBody>) -> HttpClientFuture {
        self.request(request)
    }
}

pin_project! {
    /// Future of [`HttpClient`].
    ///
    /// ```
    /// use llm_tower::{BufferedBody, ClientSettings, HttpClient, HttpClientFuture};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let client = HttpClient::new(&ClientSettings::default()).unwrap();
    /// let request = http::Request::get("http://127.0.0.1:9/").body(BufferedBody::default()).unwrap();
    /// let future: HttpClientFuture = client.request(request);
    /// # drop(future);
    /// # }
    /// ```
    pub struct HttpClientFuture {
        max_head_bytes: usize,
        #[pin]
        inner: legacy::ResponseFuture,
    }
}

impl fmt::Debug for HttpClientFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientFuture").finish_non_exhaustive()
    }
}

impl Future for HttpClientFuture {
    type Output = Result<Response<HttpClientBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx)).map_err(classify::transport_error)?;
        // hyper's buffer limit is approximate (a head that arrives in one read may exceed
        // it): the head is measured here.
        let head_bytes: usize = result
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if head_bytes > *this.max_head_bytes {
            return Poll::Ready(Err(Error::new(
                llm_tower_core::ErrorKind::Protocol,
                format!(
                    "the upstream's response head is larger than {} bytes",
                    this.max_head_bytes
                ),
            )));
        }
        Poll::Ready(Ok(result.map(|inner| HttpClientBody { inner })))
    }
}

pin_project! {
    /// The body of an [`HttpClient`] response: hyper's body, streamed as it comes, with its
    /// errors (a reset or a broken chunk mid-stream) turned into classified llm-tower
    /// [`Error`]s.
    ///
    /// ```
    /// use http_body::Body;
    /// use llm_tower::HttpClientBody;
    ///
    /// fn is_a_body<B: Body<Data = bytes::Bytes, Error = llm_tower::Error>>() {}
    /// is_a_body::<HttpClientBody>();
    /// ```
    pub struct HttpClientBody {
        #[pin]
        inner: Incoming,
    }
}

impl fmt::Debug for HttpClientBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientBody").finish_non_exhaustive()
    }
}

impl http_body::Body for HttpClientBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        self.project()
            .inner
            .poll_frame(cx)
            .map_err(classify::body_error)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
