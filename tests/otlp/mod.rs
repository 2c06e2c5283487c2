//! An OTLP/HTTP receiver of the tests' own, on loopback: it takes what an exporter sends to
//! `/v1/traces` and `/v1/metrics` (protobuf), decodes it with `opentelemetry-proto` (the
//! published protocol's own types), and hands each export to the test as it comes.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::sync::mpsc;

/// One export, decoded.
#[derive(Debug)]
pub(crate) enum Export {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    pub(crate) exports: mpsc::UnboundedReceiver<Export>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (sender, exports) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let sender = sender.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let sender = sender.clone();
                        async move { Ok::<_, Infallible>(receive(request, &sender).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            exports,
            task,
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn receive(
    request: Request<Incoming>,
    sender: &mpsc::UnboundedSender<Export>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let protobuf = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/x-protobuf");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let export = match path.as_str() {
        "/v1/traces" if protobuf => ExportTraceServiceRequest::decode(body).map(Export::Traces),
        "/v1/metrics" if protobuf => ExportMetricsServiceRequest::decode(body).map(Export::Metrics),
        _ => {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::default())
                .unwrap();
        }
    };
    let Ok(export) = export else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::default())
            .unwrap();
    };
    let _ = sender.send(export);
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::default())
        .unwrap()
}
