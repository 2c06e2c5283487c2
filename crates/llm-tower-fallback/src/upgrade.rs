//! A WebSocket upgrade as the balancer forwards it ([`WebSocketUpgrade`](llm_tower_core::WebSocketUpgrade)):
//! the headers that ask the deployment for the connection, and the target that names the
//! model as the deployment knows it.

use http::header::{CONNECTION, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use http::{HeaderMap, HeaderValue, Uri};
use llm_tower_core::{Provider, model_in_query, with_query_param};

/// The headers of a WebSocket upgrade to a deployment: the one exchange that asks the
/// upstream for the connection itself. Compression is not offered (the relay passes
/// messages as they are, and takes no compressed frame), and a key a browser client put in
/// its subprotocols (`openai-insecure-api-key.<key>`, a gateway key here) never goes on.
pub(crate) fn headers(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    let kept: Vec<String> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty() && !token.starts_with("openai-insecure-api-key."))
        .map(str::to_owned)
        .collect();
    headers.remove(SEC_WEBSOCKET_PROTOCOL);
    if let Ok(value) = HeaderValue::try_from(kept.join(", "))
        && !kept.is_empty()
    {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
}

/// The client's `target` with the `?model=` the deployment knows the model by (`send`),
/// when that is not the one asked for, and for Azure OpenAI the `deployment=` its Realtime
/// URL names the model by; `None`: the target as it is.
pub(crate) fn target(target: &Uri, send: &str, provider: &Provider) -> Option<Uri> {
    let query = target.query()?;
    let azure = matches!(provider, Provider::Azure);
    if model_in_query(query).as_deref() == Some(send) && !azure {
        return None;
    }
    let mut query = with_query_param(query, "model", send);
    if azure {
        query = with_query_param(&query, "deployment", send);
    }
    format!("{}?{query}", target.path()).parse().ok()
}
