//! A scriptable fake LLM provider for tests, benchmarks and demos.
//!
//! [`MockProvider`] is a small, fast OpenAI-compatible HTTP/1.1 server (hyper, keep-alive, one
//! Tokio task per connection, reply bodies serialised once) listening on loopback. Each
//! `POST …/chat/completions` request is answered according to a script of [`Behavior`]s:
//! normal JSON or SSE replies, error statuses with `retry-after`, delays, and transport
//! failures (connection closed before the head, reset mid-stream, stalled head or body).
//!
//! Routes:
//!
//! * `POST` to any path ending in `/chat/completions` follows the script: the one-shot queue
//!   ([`MockProvider::push`], [`MockProvider::script`]) first, then the default
//!   ([`MockProvider::set_default`]) or cycle ([`MockProvider::set_cycle`]).
//! * `GET` to any path ending in `/models` answers a static model list.
//! * Anything else answers `404` with an OpenAI-style error JSON.
//!
//! Every request is counted ([`MockProvider::request_count`]) and, unless recording is
//! turned off with [`MockBuilder::record`], recorded with its whole body
//! ([`MockProvider::requests`]). Every response carries `x-mock-request-index`, the 0-based
//! request count at the request's arrival.
//!
//! With the `test-util` feature, `scripted` adds an in-process alternative for unit tests of
//! Tower layers: a scripted upstream service and a single-frame body, with no sockets.
//!
//! It is meant for your own tests too: code that calls an LLM through llm-tower (an axum
//! app with the stack mounted, a proxy of your own) can be tested against it on loopback,
//! with the failures a real provider throws, by adding `llm-tower-mock` as a
//! dev-dependency (and its `test-util` feature for `scripted`). This repository uses it for
//! its tests, benchmarks, examples and the gateway's demo. No library crate of llm-tower
//! depends on it: a user of `llm-tower` never compiles it unless asked.
//!
//! # Example
//!
//! ```rust
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use llm_tower_mock::{Behavior, MockProvider};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! tokio::runtime::Builder::new_current_thread()
//!     .enable_all()
//!     .build()?
//!     .block_on(async {
//!         let mock = MockProvider::start().await?;
//!         // The first request is rate limited, the next ones succeed.
//!         mock.script([Behavior::retry_after(429, "1")]);
//!
//!         let client = Client::builder(TokioExecutor::new()).build_http();
//!         let url = format!("{}/chat/completions", mock.base_url());
//!         let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
//!         let request = |body: &'static str| {
//!             http::Request::post(url.as_str())
//!                 .header("content-type", "application/json")
//!                 .body(Full::new(Bytes::from_static(body.as_bytes())))
//!         };
//!
//!         let limited = client.request(request(body)?).await?;
//!         assert_eq!(limited.status(), 429);
//!         assert_eq!(limited.headers()["retry-after"], "1");
//!
//!         let ok = client.request(request(body)?).await?;
//!         assert_eq!(ok.status(), 200);
//!         let json: serde_json::Value =
//!             serde_json::from_slice(&ok.into_body().collect().await?.to_bytes())?;
//!         assert_eq!(json["choices"][0]["message"]["role"], "assistant");
//!
//!         assert_eq!(mock.request_count(), 2);
//!         assert_eq!(mock.requests()[0].json().unwrap()["model"], "gpt-4o-mini");
//!         mock.shutdown().await;
//!         Ok(())
//!     })
//! # }
//! ```

mod assets;
mod behavior;
mod body;
mod server;

#[cfg(feature = "test-util")]
mod redis_server;
#[cfg(feature = "test-util")]
pub mod scripted;

pub use behavior::Behavior;

/// Locks `mutex`, poisoned or not: the mock's state stays usable after a test thread that
/// held it panicked, so the failure shown is that test's, not a cascade of poison errors.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
#[cfg(feature = "test-util")]
pub use redis_server::RedisServer;
pub use server::{MockBuilder, MockProvider, RecordedRequest};
