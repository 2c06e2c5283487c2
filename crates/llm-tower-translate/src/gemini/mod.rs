//! OpenAI chat clients on Gemini deployments: the request (`request.rs`, with the model moved
//! into the URL), and the answer, errors and stream (`response.rs`). Field by field, from
//! the two API references.

pub(crate) mod request;
pub(crate) mod response;

#[cfg(test)]
mod tests;
