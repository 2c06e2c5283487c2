//! [`Pair`]: which translation a request needs, from the API its client speaks and the
//! provider of the deployment it goes to.

use http::Request;
use llm_tower_core::{ClientApi, Provider, Selected};

/// What a request and its answer go through on their way to and from a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pair {
    /// The deployment speaks the client's API (or nothing here knows better): not a byte is
    /// touched.
    Passthrough,
    /// An OpenAI chat client on an Anthropic deployment.
    OpenAiToAnthropic,
    /// An Anthropic messages client on an OpenAI-compatible deployment.
    AnthropicToOpenAi,
    /// An OpenAI chat client on a Gemini deployment.
    OpenAiToGemini,
    /// An Anthropic messages client on a Gemini deployment (through OpenAI's shape).
    AnthropicToGemini,
}

impl Pair {
    /// The pair of `request`, an attempt the balancer addressed to a deployment.
    pub(crate) fn of<B>(request: &Request<B>) -> Self {
        let Some(selected) = Selected::of(request.extensions()) else {
            return Self::Passthrough;
        };
        // The provider first: for most deployments that settles it without reading the path.
        let api = || ClientApi::of_path(request.uri().path());
        match selected.0.provider() {
            Provider::Anthropic if api() == ClientApi::OpenAiChat => Self::OpenAiToAnthropic,
            Provider::Gemini => match api() {
                ClientApi::OpenAiChat => Self::OpenAiToGemini,
                ClientApi::AnthropicMessages => Self::AnthropicToGemini,
                _ => Self::Passthrough,
            },
            Provider::OpenAi | Provider::Azure | Provider::Custom { .. }
                if api() == ClientApi::AnthropicMessages =>
            {
                Self::AnthropicToOpenAi
            }
            _ => Self::Passthrough,
        }
    }
}
