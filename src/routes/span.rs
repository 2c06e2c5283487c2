//! The span a request's events are logged in, made once per request before anything else
//! handles it, so that every line a request causes can be told apart from another's.

/// The span every request's events are logged in: method and path only, since a query string
/// may carry a client's `?key=`.
pub(crate) fn request_span<B>(request: &http::Request<B>) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
    )
}
