//! [`Respond`]: the outermost layer of the stack, which makes the client's response out of
//! whatever the stack ended with and reports it. It turns every failure into an OpenAI-style
//! JSON response (so the stack's error type is [`Infallible`](std::convert::Infallible) and it
//! fits axum's `nest_service`), strips hop-by-hop headers from responses, and adds the
//! optional `x-llm-tower-*` headers, access log line and metrics. (Named `ErrorResponse`
//! until it did more than errors: the name said a third of it.)

mod accounting;
mod body;
mod completion;
mod finish;
mod future;
mod layer;
#[cfg(feature = "metrics")]
mod metrics;
mod service;
mod shared;
mod span;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::RespondLayer;
pub use service::Respond;

/// Response header naming the deployment (the endpoint, or `endpoint/model`) whose response
/// this is.
pub const ENDPOINT_HEADER: &str = "x-llm-tower-endpoint";
/// Response header naming the model that answered, when a model fallback chain moved on from
/// the one the request asked for.
pub const MODEL_HEADER: &str = "x-llm-tower-model";
/// Response header counting the upstream attempts made.
pub const ATTEMPTS_HEADER: &str = "x-llm-tower-attempts";
