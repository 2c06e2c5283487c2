//! `LimitsLayer`: each client held to its requests and tokens per minute, its spend per day or
//! month, and the models it may use, before anything is sent upstream. See [`Limit`].
//!
//! This step counts in the process ([`Limiter`]); replicas that must share one count use
//! the Redis store of the next step.

mod body;
mod bucket;
mod estimate;
mod headers;
mod limiter;
mod period;
mod service;
mod settings;

pub use body::{RequestBody, ResponseBody};
pub use estimate::DEFAULT_OUTPUT;
pub use limiter::{BudgetStanding, ClientStanding, Limiter, Standing};
pub use service::{Limit, LimitsLayer, ResponseFuture};
pub use settings::{Budget, Limits, LimitsTable, Period};
