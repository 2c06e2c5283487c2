//! What the per-layer benches (translate, usage, limits) share: an inner service that answers every
//! attempt with the same reply, and the call that reads an answer whole.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt, service_fn};

/// An inner service answering `reply` (an event stream when `event_stream`) to requests of
/// any body.
pub(crate) fn replying<T>(
    reply: Bytes,
    event_stream: bool,
) -> impl Service<
    Request<T>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(move |request: Request<T>| {
        black_box(request);
        let mut response = Response::new(Full::new(reply.clone()));
        if event_stream {
            response
                .headers_mut()
                .insert("content-type", "text/event-stream".parse().expect("valid"));
        }
        async move { Ok::<_, Infallible>(response) }
    })
}

/// Sends `request` through `service` and reads the whole answer.
pub(crate) async fn answer<S, T, B>(mut service: S, request: Request<T>) -> Bytes
where
    S: Service<Request<T>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let ready = service.ready().await.expect("ready");
    let response = ready.call(request).await.expect("a response");
    response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes()
}
