//! OpenAI chat clients on Anthropic deployments: the request (`request.rs`), the answer and
//! errors (`response.rs`), and the stream, event by event (`stream.rs`). Field by field, from
//! the two providers' API references.

pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

#[cfg(test)]
mod tests;
