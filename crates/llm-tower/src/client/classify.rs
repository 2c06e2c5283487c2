//! Transport errors of the hyper client, as llm-tower [`Error`]s: their kind is what
//! [`ErrorKind::of`] reads from hyper's and hyper-util's types (core's `transport.rs`, the
//! one place that knows them, so that a client of one's own is classified alike).

use hyper_util::client::legacy;
use llm_tower_core::{Error, ErrorKind};

/// An llm-tower [`Error`] of the right kind for a failed request of the hyper-util client.
pub(crate) fn transport_error(err: legacy::Error) -> Error {
    Error::classified(transport_kind(&err), err)
}

fn transport_kind(err: &legacy::Error) -> ErrorKind {
    ErrorKind::of(err)
}

/// An llm-tower [`Error`] of the right kind for a response body that failed mid-stream.
pub(crate) fn body_error(err: hyper::Error) -> Error {
    let kind = match ErrorKind::of(&err) {
        // A body that broke off without a cause of its own is a framing fault.
        ErrorKind::Upstream | ErrorKind::Unrecognized => ErrorKind::Protocol,
        kind => kind,
    };
    Error::classified(kind, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::TokioExecutor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn kind_of_reply(reply: &'static [u8]) -> ErrorKind {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            socket.write_all(reply).await.unwrap();
        });
        let client = legacy::Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let err = client
            .get(format!("http://{addr}/").parse().unwrap())
            .await
            .unwrap_err();
        transport_kind(&err)
    }

    #[tokio::test]
    async fn refused_closed_and_malformed() {
        let refused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let client = legacy::Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let err = client
            .get(format!("http://{refused}/").parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(transport_kind(&err), ErrorKind::Connect);
        assert_eq!(kind_of_reply(b"").await, ErrorKind::Closed);
        assert_eq!(
            kind_of_reply(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r").await,
            ErrorKind::Closed
        );
        assert_eq!(
            kind_of_reply(b"NOT HTTP AT ALL\r\n\r\n").await,
            ErrorKind::Protocol
        );
    }
}

#[cfg(all(test, unix))]
mod local {
    use std::future::Future;
    use std::pin::Pin;

    use super::*;
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::net::TcpStream;
    use tower::service_fn;

    /// `EMFILE` ("too many open files") on Linux and the BSDs.
    const EMFILE: i32 = 24;

    type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<TcpStream>>> + Send>>;

    #[tokio::test]
    async fn running_out_of_file_descriptors_is_local() {
        // A connector that fails the way `socket(2)` does with no descriptor left.
        let connector = service_fn(|_: http::Uri| -> Connecting {
            Box::pin(async { Err(std::io::Error::from_raw_os_error(EMFILE)) })
        });
        let client =
            legacy::Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
        let err = client
            .get("http://127.0.0.1:9/".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.is_connect());
        assert_eq!(transport_kind(&err), ErrorKind::Local);
    }
}
