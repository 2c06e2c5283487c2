//! [`ExportClient`]: how the OTLP exporter sends its batches — through this crate's own
//! [`HttpClient`] (its TLS, its refusal of `https://` without TLS), on the runtime the
//! telemetry was started on. The OpenTelemetry SDK exports from threads of its own and waits
//! there; each export is a task on that runtime, so no request's task ever waits for one.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use opentelemetry_http::{HttpClient as OtlpHttpClient, HttpError, Request, Response};
use tokio::runtime::Handle;

use crate::HttpClient;

/// The largest answer read from a receiver (it says little more than "accepted").
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct ExportClient {
    client: HttpClient,
    runtime: Handle,
    timeout: Duration,
}

impl ExportClient {
    pub(crate) fn new(client: HttpClient, runtime: Handle, timeout: Duration) -> Self {
        Self {
            client,
            runtime,
            timeout,
        }
    }
}

#[async_trait::async_trait]
impl OtlpHttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (client, timeout) = (self.client.clone(), self.timeout);
        let sent = self.runtime.spawn(async move {
            let exchange = async {
                let response = client.request(request.map(Into::into)).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {timeout:?}").into()),
            }
        });
        sent.await?
    }
}
