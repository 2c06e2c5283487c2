//! `GET {mount}/models` and `GET {mount}/models/{id}`, answered from the configuration in
//! OpenAI's format, so that an SDK's `models.list()` shows the names clients may use.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use llm_tower::{Endpoint, Error};
use serde::Serialize;

use crate::admin::json_response;

/// The model names the endpoints list, sorted and once each; empty when every endpoint
/// serves any model (then `/models` goes upstream, as before models could be listed).
pub(crate) fn listed(endpoints: &[Endpoint]) -> Vec<String> {
    let mut names: Vec<String> = endpoints
        .iter()
        .filter_map(Endpoint::models)
        .flatten()
        .map(|route| route.name().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

impl<'a> Model<'a> {
    fn new(id: &'a str, created: u64) -> Self {
        Self {
            id,
            object: "model",
            created,
            owned_by: "llm-tower",
        }
    }
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

/// The routes, at `{mount}/models` (`mount` without its trailing slash).
pub(crate) fn routes(mount: &str, names: Vec<String>) -> Router {
    // When the configuration was loaded: OpenAI's `created` is a required integer.
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let names: Arc<[String]> = names.into();
    let all = names.clone();
    let list = move || {
        let body = List {
            object: "list",
            data: all.iter().map(|name| Model::new(name, created)).collect(),
        };
        std::future::ready(json_response(&body))
    };
    let one = move |Path(id): Path<String>| {
        let response: Response = if let Some(name) = names.iter().find(|name| **name == id) {
            json_response(&Model::new(name, created))
        } else {
            let known: Vec<&str> = names.iter().map(String::as_str).collect();
            Error::model_not_found(&id, &known).to_response::<axum::body::Body>()
        };
        std::future::ready(response)
    };
    Router::new()
        .route(&format!("{mount}/models"), get(list))
        .route(&format!("{mount}/models/{{*id}}"), get(one))
}
