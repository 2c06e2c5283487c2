//! The baseline of the end-to-end benchmark (`benches/e2e.sh`): a bare pass-through proxy
//! with the same hyper server stack as the gateway and the same pooled hyper-util client as
//! llm-tower, but none of its layers. It buffers the request body (as the balancer does, for
//! replay), rewrites the URI to the upstream and streams the response back.
//!
//! ```text
//! cargo run --release --example bare_proxy -- 127.0.0.1:18090 http://127.0.0.1:18081/v1 [h2c]
//! ```
//!
//! With `h2c`, it speaks HTTP/2 to the upstream (the client's `http2_only`).

use std::net::SocketAddr;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use llm_tower::{BaseUrl, BoxError, BufferedBody, ClientSettings, HttpClient, HttpClientBody};

async fn forward(
    client: HttpClient,
    upstream: BaseUrl,
    request: Request<Incoming>,
) -> Result<Response<HttpClientBody>, BoxError> {
    let (mut parts, body) = request.into_parts();
    let bytes = body.collect().await?.to_bytes();
    parts.uri = upstream.join(&parts.uri)?;
    parts.headers.remove(http::header::HOST);
    let request = Request::from_parts(parts, BufferedBody::from(bytes));
    Ok(client.request(request).await?)
}

// A faster allocator than glibc's for many small, short-lived allocations per request.
#[global_allocator]
static ALLOCATOR: llm_tower_alloc::MiMalloc = llm_tower_alloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: bare_proxy LISTEN_ADDR UPSTREAM_BASE_URL [h2c]".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream = BaseUrl::parse(&upstream)?;
    let settings = ClientSettings {
        http2_only: args.next().as_deref() == Some("h2c"),
        ..ClientSettings::default()
    };
    let client = HttpClient::new(&settings)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("bare proxy on http://{listen} -> {upstream}");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = llm_tower_gateway::shutdown_signal() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                forward(client.clone(), upstream.clone(), request)
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
