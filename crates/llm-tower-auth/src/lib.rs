//! `AuthLayer`: the upstream sees the chosen endpoint's credential in the provider's own
//! scheme, and never the client's.
//!
//! For every request the layer
//!
//! 1. removes every inbound credential: [`CREDENTIAL_HEADERS`] (`authorization`,
//!    `proxy-authorization`, `x-api-key`, `api-key`, `anthropic-api-key`, `x-goog-api-key`,
//!    ...), the endpoint's custom header, and [`CREDENTIAL_PARAMETERS`] in the query (`key`,
//!    `api_key`, `access_token`, ..., by decoded, case-insensitive name), and the
//!    [`ACCOUNT_HEADERS`] that pick whose account is billed (`openai-organization`,
//!    `openai-project`, `x-goog-user-project`) or carry the client's session (`cookie`);
//! 2. sets the endpoint's credential header (prebuilt when the endpoint was built, marked
//!    sensitive, so `Debug` of the request and tower-http's `TraceLayer` never show it):
//!    `authorization: Bearer` (OpenAI-compatible), `api-key` (Azure), `x-api-key` plus
//!    `anthropic-version` (Anthropic), `x-goog-api-key` (Gemini) or a custom header;
//! 3. replaces `user-agent` with `llm-tower/<version>` (configurable).
//!
//! The endpoint comes from the [`Selected`](llm_tower_core::Selected) request extension (the balancer inserts it), or
//! is fixed with [`AuthLayer::for_endpoint`]. A request with neither is refused with an
//! [`ErrorKind::Internal`](llm_tower_core::ErrorKind::Internal) error and never reaches the
//! inner service: a layer put outside the balancer by mistake fails loudly instead of sending
//! requests without a key. The layer formats nothing per request.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use llm_tower_auth::AuthLayer;
//! use llm_tower_core::{ApiKey, Endpoint, Provider};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let endpoint = Endpoint::builder("claude", "https://api.anthropic.com/v1")
//!     .provider(Provider::Anthropic)
//!     .api_key(ApiKey::new("sk-ant-example").unwrap())
//!     .build()
//!     .unwrap();
//!
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::for_endpoint(endpoint))
//!     .service(service_fn(|req: Request<()>| async move {
//!         // What the upstream would receive:
//!         assert_eq!(req.headers()["x-api-key"], "sk-ant-example");
//!         assert_eq!(req.headers()["anthropic-version"], "2023-06-01");
//!         assert!(req.headers().get("authorization").is_none());
//!         Ok::<_, Infallible>(Response::new(()))
//!     }));
//!
//! let request = Request::builder()
//!     .header("authorization", "Bearer the-clients-own-token")
//!     .body(())
//!     .unwrap();
//! service.oneshot(request).await.unwrap();
//! # }
//! ```

mod future;
mod headers;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use headers::{ACCOUNT_HEADERS, ANTHROPIC_VERSION, CREDENTIAL_HEADERS, CREDENTIAL_PARAMETERS};
pub use layer::AuthLayer;
pub use service::Auth;
