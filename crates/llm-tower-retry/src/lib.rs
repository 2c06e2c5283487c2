//! `RetryLayer`: retry what is worth retrying, on the same endpoint, politely.
//!
//! A retry loop of its own (one boxed future per request, tries and waits as its steps), with
//! tower's `TpsBudget` for the budget. For each request the policy comes from the
//! [`Selected`](llm_tower_core::Selected)
//! endpoint (or a layer-level default when there is none):
//!
//! - only retryable outcomes are retried (connect errors, per-try timeouts, resets before the
//!   response head, 408, 429, 500, 502, 503, 504, 529; see [`llm_tower_core::classify`]);
//! - `NoRetry`, `CountBased` (immediate) or `ExponentialBackoff` (full jitter);
//! - `Retry-After` (`retry-after`, `retry-after-ms`, `x-ms-retry-after-ms`) is honoured: the
//!   next attempt waits at least that long. A wait longer than `max_retry_after` is not slept:
//!   the response is returned with a [`CooldownHint`](llm_tower_core::CooldownHint) so the balancer cools the endpoint down
//!   and moves on;
//! - a per-endpoint [`RetryBudget`] (tower's `TpsBudget`) caps the extra load retries add;
//! - the endpoint's `timeout` bounds the wait for the response head of each try; before the
//!   head is passed on, the first body frame of a 2xx and the body of an error (up to
//!   [`DRAIN_LIMIT`]) are read ahead, within `first_byte_timeout`, else `stream_idle_timeout`,
//!   else `timeout`, so a stalled or broken body fails the try (what was read is passed on,
//!   never lost or duplicated);
//! - a response that is retried is drained (at most 64 KiB, only while the backoff runs) so
//!   its connection can be reused, else dropped;
//! - every attempt is appended to the request's [`Attempts`](llm_tower_core::Attempts) log
//!   (the layer declares that it records, so the balancer does not record the same tries)
//!   and is a tracing span;
//! - dropping the response future stops everything: no further attempt, no timer.
//!
//! Requests must have a clonable body; use llm-tower-core's
//! [`BufferedBody`](llm_tower_core::BufferedBody) (the balancer buffers for you) so every attempt
//! sends identical bytes.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use http::{Request, Response, StatusCode};
//! use llm_tower_core::{BufferedBody, CountBased, Endpoint, RetryPolicy, Selected};
//! use llm_tower_retry::RetryLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let upstream = {
//!     let calls = calls.clone();
//!     service_fn(move |_req: Request<BufferedBody>| {
//!         // 503 twice, then 200.
//!         let status = if calls.fetch_add(1, Ordering::SeqCst) < 2 { 503 } else { 200 };
//!         async move {
//!             let response = Response::builder().status(status).body(String::new()).unwrap();
//!             Ok::<_, std::convert::Infallible>(response)
//!         }
//!     })
//! };
//! let service = ServiceBuilder::new().layer(RetryLayer::new()).service(upstream);
//!
//! let endpoint = Endpoint::builder("main", "http://127.0.0.1:9")
//!     .retry_policy(RetryPolicy::CountBased(CountBased { times: 2 }))
//!     .build()
//!     .unwrap();
//! let mut request = Request::new(BufferedBody::from(bytes::Bytes::from_static(b"{}")));
//! request.extensions_mut().insert(Selected(Arc::new(endpoint)));
//!
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```

mod ahead;
mod attempt;
mod backoff;
mod body;
mod layer;
mod run;
mod service;
mod settings;
mod span;
mod state;

pub use body::ResponseBody;
pub use layer::RetryLayer;
pub use service::{ResponseFuture, Retry};
pub use settings::{RetryBudget, RetrySettings};

/// At most this much of a discarded response body is read so its connection can be reused
/// (and of an error response read ahead before its head is passed on).
pub const DRAIN_LIMIT: usize = llm_tower_core::ERROR_BODY_LIMIT;

/// `max_retry_after` for policies without a `max_interval` (`NoRetry`, `CountBased`).
pub const DEFAULT_MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The endpoint id budgets are kept under for requests without a
/// [`Selected`](llm_tower_core::Selected) endpoint.
const DEFAULT_ENDPOINT: &str = "default";
