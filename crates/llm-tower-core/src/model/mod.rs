//! Models: which ones an endpoint serves ([`ModelRoute`]), which one a request asks for
//! ([`find_model`]), and the request's body rewritten for a deployment that calls it by
//! another name ([`with_model`]).

mod query;
mod scan;

use std::sync::Arc;

pub use query::{model_in_query, with_query_param};
pub use scan::{
    ModelInBody, TopLevel, find_model, find_model_and, find_top_level, for_each_member, with_model,
};

/// Whether `path` is one of the APIs that generate (and do nothing else): chat and text
/// completions, embeddings, Anthropic's messages, OpenAI's Responses, Gemini's
/// `generateContent`. Only these are hedged: sending anything else twice (a file upload, a
/// run) would do it twice.
///
/// ```
/// use llm_tower_core::is_generation_path;
///
/// assert!(is_generation_path("/v1/chat/completions"));
/// assert!(is_generation_path("/v1beta/models/gemini-2.0-flash:streamGenerateContent"));
/// assert!(!is_generation_path("/v1/files"));
/// ```
pub fn is_generation_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    [
        "/chat/completions",
        "/completions",
        "/embeddings",
        "/messages",
        "/responses",
    ]
    .iter()
    .any(|api| path.ends_with(api))
        || path.ends_with(":generateContent")
        || path.ends_with(":streamGenerateContent")
}

/// The model a Gemini-style path names: `…/models/{model}:{method}`
/// (`/v1beta/models/gemini-2.0-flash:generateContent`). `None` for any other path, and for
/// one that is ambiguous (two `/models/`, a `/` in the model or the method): a check
/// against an allow-list then fails closed.
///
/// ```
/// use llm_tower_core::model_in_path;
///
/// assert_eq!(model_in_path("/v1beta/models/gemini-2.0-flash:streamGenerateContent"), Some("gemini-2.0-flash"));
/// assert_eq!(model_in_path("/v1/chat/completions"), None);
/// assert_eq!(model_in_path("/v1beta/models/a/models/b:generateContent"), None);
/// assert_eq!(model_in_path("/v1beta/models/gemini-pro"), None);
/// ```
pub fn model_in_path(path: &str) -> Option<&str> {
    let (_, rest) = path.split_once("/models/")?;
    let (model, method) = rest.split_once(':')?;
    let plain = |part: &str| !part.is_empty() && !part.contains('/');
    (plain(model) && plain(method)).then_some(model)
}

/// The model a request asks for: its body's top-level `model`; else, for Gemini's own API,
/// the one its path names (`…/models/{model}:generateContent`); else, for a WebSocket
/// upgrade (`upgrade`), its `?model=`. `None`: it names none, or names it ambiguously.
///
/// ```
/// use llm_tower_core::requested_model;
///
/// let chat: http::Uri = "/v1/chat/completions".parse().unwrap();
/// assert_eq!(requested_model(br#"{"model":"gpt-4o"}"#, &chat, false).as_deref(), Some("gpt-4o"));
/// let gemini: http::Uri = "/v1beta/models/gemini-2.5-flash:generateContent".parse().unwrap();
/// assert_eq!(requested_model(b"{}", &gemini, false).as_deref(), Some("gemini-2.5-flash"));
/// let socket: http::Uri = "/v1/realtime?model=gpt-realtime".parse().unwrap();
/// assert_eq!(requested_model(b"", &socket, true).as_deref(), Some("gpt-realtime"));
/// assert_eq!(requested_model(b"", &socket, false), None);
/// ```
pub fn requested_model(body: &[u8], uri: &http::Uri, upgrade: bool) -> Option<ModelName> {
    requested_model_in(find_model(body), uri, upgrade)
}

/// [`requested_model`] of a body already read: `found` is what [`find_model`] (or
/// [`find_model_and`]) found in it.
///
/// ```
/// use llm_tower_core::{find_model_and, requested_model_in};
///
/// let gemini: http::Uri = "/v1beta/models/gemini-2.5-flash:streamGenerateContent".parse().unwrap();
/// let (found, [stream]) = find_model_and(br#"{"stream": true}"#, ["stream"]);
/// assert_eq!(requested_model_in(found, &gemini, false).as_deref(), Some("gemini-2.5-flash"));
/// assert!(stream.at().is_some());
/// ```
pub fn requested_model_in(found: ModelInBody, uri: &http::Uri, upgrade: bool) -> Option<ModelName> {
    match found {
        ModelInBody::Named { name, .. } => Some(name),
        _ if upgrade => uri.query().and_then(model_in_query),
        _ => model_in_path(uri.path()).map(Into::into),
    }
}

/// A model name: cheap to clone.
///
/// ```
/// use llm_tower_core::ModelName;
///
/// let name: ModelName = "gpt-4o".into();
/// assert_eq!(&*name.clone(), "gpt-4o");
/// ```
pub type ModelName = Arc<str>;

/// One model an endpoint serves: the name clients ask for, and the name the endpoint knows it
/// by (an Azure deployment name, a vLLM served name). Usually the same.
///
/// ```
/// use llm_tower_core::ModelRoute;
///
/// let same = ModelRoute::from("gpt-4o");
/// assert_eq!((&**same.name(), &**same.upstream()), ("gpt-4o", "gpt-4o"));
/// let alias = ModelRoute::alias("gpt-4o", "gpt4o-prod");
/// assert_eq!((&**alias.name(), &**alias.upstream()), ("gpt-4o", "gpt4o-prod"));
/// assert!(alias.is_alias());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRoute {
    name: ModelName,
    upstream: ModelName,
}

impl ModelRoute {
    /// A model served under the name clients use.
    pub fn new(name: impl Into<ModelName>) -> Self {
        let name = name.into();
        Self {
            upstream: name.clone(),
            name,
        }
    }

    /// A model clients call `name`, sent upstream as `upstream`.
    pub fn alias(name: impl Into<ModelName>, upstream: impl Into<ModelName>) -> Self {
        Self {
            name: name.into(),
            upstream: upstream.into(),
        }
    }

    /// The name clients ask for.
    pub fn name(&self) -> &ModelName {
        &self.name
    }

    /// The name sent upstream.
    pub fn upstream(&self) -> &ModelName {
        &self.upstream
    }

    /// Whether the upstream name differs from the client's.
    pub fn is_alias(&self) -> bool {
        self.name != self.upstream
    }
}

impl From<&str> for ModelRoute {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<(&str, &str)> for ModelRoute {
    fn from((name, upstream): (&str, &str)) -> Self {
        Self::alias(name, upstream)
    }
}
