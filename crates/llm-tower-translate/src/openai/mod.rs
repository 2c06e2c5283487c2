//! Anthropic messages clients on OpenAI-compatible deployments: the request (`request.rs`),
//! the answer and errors (`response.rs`), and the stream, chunk by chunk (`stream.rs`).

pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

#[cfg(test)]
mod tests;
