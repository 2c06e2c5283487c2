//! [`CheckService`]: what health checks can be sent through, written once.

use http::{Request, Response};
use http_body::Body;
use llm_tower_core::{BoxError, BufferedBody};
use tower::Service;

/// A service that health checks can be sent through: the part of a stack below retry
/// (typically the auth layer over the HTTP client). Implemented for every service that
/// takes buffered requests, can be cloned and sent to the checker's task, and answers with
/// an HTTP response; it is a name for those bounds, not something to implement.
///
/// ```
/// use http::{Request, Response};
/// use llm_tower_core::BufferedBody;
/// use llm_tower_health::CheckService;
/// use tower::service_fn;
///
/// fn takes_checks(_: impl CheckService) {}
///
/// takes_checks(service_fn(|_: Request<BufferedBody>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
/// }));
/// ```
pub trait CheckService:
    Service<
        Request<BufferedBody>,
        Response = Response<Self::ResponseBody>,
        Error: Into<BoxError>,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
    /// The body of its responses.
    type ResponseBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, RB> CheckService for S
where
    S: Service<Request<BufferedBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    type ResponseBody = RB;
}
