//! The pooled HTTP client at the bottom of the stack, and what its errors mean.

mod classify;
mod settings;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use llm_tower_core::{AttemptFacts, BufferedBody, ConfigError, Error, WebSocketUpgrade};
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
/// (the system's). Without either, only `http://` endpoints can be reached: an `https://`
/// request fails at once with nothing sent, and [`Upstream::build`](crate::Upstream::build)
/// and [`Upstream::layer`](crate::Upstream::layer) refuse `https://` endpoints.
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
    /// WebSocket upgrades' own: HTTP/1.1 only, since an upgrade is an HTTP/1.1 exchange (an
    /// `https://` upstream offering HTTP/2 would otherwise get a plain `GET`).
    upgrades: Arc<Client<Connector, BufferedBody>>,
    /// `http://` requests go out over HTTP/1.1 (no `http2_only`): they are given their
    /// endpoint's `host` header, made once (see [`request`](Self::request)).
    plain_http1: bool,
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
        // Without TLS, the connector itself refuses `https://` too: no path of this client
        // sends a key in clear text.
        http.enforce_http(!Self::SUPPORTS_HTTPS);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let client = |connector, http2_only| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(settings.pool_idle_timeout)
                .pool_max_idle_per_host(settings.pool_max_idle_per_host)
                // The read buffer must hold the whole head: a larger one is a parse error.
                .http1_max_buf_size(settings.max_response_head_bytes)
                .http2_only(http2_only)
                .pool_timer(TokioTimer::new())
                .build(connector)
        };
        let inner = client(tls_connector(http.clone(), true)?, settings.http2_only);
        let upgrades = client(tls_connector(http, false)?, false);
        Ok(Self {
            max_head_bytes: settings.max_response_head_bytes,
            inner: Arc::new(inner),
            upgrades: Arc::new(upgrades),
            plain_http1: !settings.http2_only,
        })
    }

    /// Whether this build of llm-tower can reach `https://` endpoints.
    pub const SUPPORTS_HTTPS: bool = cfg!(feature = "tls");

    /// Sends one request. Two requests fail at once, with nothing sent: an `https://` one in
    /// a build without TLS (its key would go out in clear text), and one the balancer chose
    /// an endpoint for ([`Selected`](llm_tower_core::Selected)) that no
    /// [`AuthLayer`](crate::AuthLayer) set the credentials of
    /// ([`CredentialsSet`](llm_tower_core::CredentialsSet): the client's own would go out).
    pub fn request(&self, mut request: Request<BufferedBody>) -> HttpClientFuture {
        let facts = AttemptFacts::of(request.extensions());
        // hyper-util writes an HTTP/1.1 request's `host` with a `format!` per request. A
        // request to its endpoint's `http://` URL goes out over HTTP/1.1 (nothing negotiates
        // HTTP/2 over plain TCP unless `http2_only`), and its endpoint made the value once.
        let host = facts
            .selected()
            .map(|selected| selected.base_url())
            .filter(|base| {
                let uri = request.uri();
                self.plain_http1
                    && uri.scheme() == Some(&http::uri::Scheme::HTTP)
                    && *base.scheme() == http::uri::Scheme::HTTP
                    // As written, not up to case: the header is the URI's host.
                    && uri.authority().map(Authority::as_str) == Some(base.authority().as_str())
            })
            .map(|base| base.host().clone());
        let refusal =
            if !Self::SUPPORTS_HTTPS && request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
                Some(Refusal::NoTls)
            } else if !facts.credentials_set() && facts.selected().is_some() {
                Some(Refusal::NoAuth)
            } else {
                None
            };
        if let Some(refusal) = refusal {
            return HttpClientFuture {
                max_head_bytes: self.max_head_bytes,
                inner: None,
                refusal: Some(refusal),
            };
        }
        if let Some(host) = host {
            request
                .headers_mut()
                .entry(http::header::HOST)
                .or_insert(host);
        }
        // Only a `GET` may be an upgrade: nothing else looks further.
        let upgrade = request.method() == http::Method::GET
            && request.extensions().get::<WebSocketUpgrade>().is_some();
        let client = if upgrade { &self.upgrades } else { &self.inner };
        HttpClientFuture {
            max_head_bytes: self.max_head_bytes,
            inner: Some(client.request(request)),
            refusal: None,
        }
    }
}

impl HttpClient {
    /// Sends a request whose body is of any type, read whole first: what a handler that is
    /// the transport under the stack does (an axum handler under `route_layer`, which the
    /// stack calls once per attempt, with the endpoint's absolute URI and credential already
    /// in place). Its error answers with the status of its kind
    /// ([`Error::to_response`]), which the stack around the handler retries and falls back
    /// on as it would on the error itself.
    ///
    /// ```no_run
    /// use axum::{body::Body, extract::{Request, State}, response::Response};
    /// use llm_tower::HttpClient;
    ///
    /// /// The handler of a route under `route_layer(upstream.layer()?)`.
    /// async fn chat(State(client): State<HttpClient>, request: Request) -> Response {
    ///     match client.forward(request).await {
    ///         Ok(answer) => answer.map(Body::new),
    ///         Err(err) => err.to_response(),
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// The body could not be read, or the request failed (as [`request`](Self::request)).
    pub async fn forward<B>(&self, request: Request<B>) -> Result<Response<HttpClientBody>, Error>
    where
        B: http_body::Body,
        B::Error: Into<llm_tower_core::BoxError>,
    {
        // The stack around the handler already capped the body.
        let request = llm_tower_core::buffer_request(request, usize::MAX).await?;
        self.request(request).await
    }
}

/// Why a request was not sent.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// An `https://` request, and this build has no TLS.
    NoTls,
    /// The balancer chose its endpoint, but no auth layer set its credentials.
    NoAuth,
}

impl Refusal {
    fn error(self) -> Error {
        let message = match self {
            Self::NoTls => format!("{NO_TLS}; nothing was sent"),
            Self::NoAuth => "a request the FallbackLayer sent reached the HTTP client without \
                             passing an AuthLayer, so it still carries the client's own \
                             credentials and not the endpoint's key; nothing was sent. Put \
                             AuthLayer between RetryLayer and the client, or build the stack \
                             with Upstream"
                .to_owned(),
        };
        Error::new(llm_tower_core::ErrorKind::Internal, message)
    }
}

/// What a build without TLS says of an `https://` endpoint, wherever it is found.
pub(crate) const NO_TLS: &str = "https needs llm-tower's `rustls-webpki-roots` or \
     `rustls-native-roots` feature (this build has no TLS, and a key must never go out in \
     clear text)";

/// The connector over `http`: TLS for `https://` (offering HTTP/2 by ALPN when `http2`).
#[cfg(feature = "tls")]
fn tls_connector(http: HttpConnector, http2: bool) -> Result<Connector, ConfigError> {
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
    let builder = builder.https_or_http().enable_http1();
    Ok(if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    })
}

#[cfg(not(feature = "tls"))]
#[allow(clippy::unnecessary_wraps)]
fn tls_connector(http: HttpConnector, _http2: bool) -> Result<Connector, ConfigError> {
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
        // `None`: refused before sending, for `refusal`.
        #[pin]
        inner: Option<legacy::ResponseFuture>,
        refusal: Option<Refusal>,
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
        let Some(inner) = this.inner.as_pin_mut() else {
            let refusal = this
                .refusal
                .take()
                .expect("HttpClientFuture polled after completion");
            return Poll::Ready(Err(refusal.error()));
        };
        let result = ready!(inner.poll(cx)).map_err(classify::transport_error)?;
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
