//! `LimitsLayer`: each client held to its requests and tokens per minute, its spend per day or
//! month, and the models it may use, before anything is sent upstream. See [`Limit`].
//!
//! A [`Limiter`] counts in the process, or, with the `redis` feature, in a
//! [`LimitsStore`](store::LimitsStore) that replicas share (see [`store`]).

mod body;
mod bucket;
mod estimate;
mod headers;
mod limiter;
mod local;
mod period;
mod service;
mod settings;
pub mod store;

pub use body::{RequestBody, ResponseBody};
pub use limiter::{BudgetStanding, ClientStanding, Limiter, Standing};
pub use llm_tower_core::DEFAULT_OUTPUT;
pub use service::{Limit, LimitsLayer, ResponseFuture};
pub use settings::{Budget, Limits, LimitsTable, Period};
