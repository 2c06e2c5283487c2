//! [`Translate`], the service: turns a request into the deployment's API before it goes on.

use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body::Body;
use llm_tower_core::{BoxError, BufferedBody, Error, ErrorKind, Selected, rewrite_attempt};
use tower::Service;

use crate::anthropic::request::to_anthropic;
use crate::body::ResponseBody;
use crate::future::{ResponseFuture, Source};
use crate::gemini::request::to_gemini;
use crate::openai::request::to_openai;
use crate::pair::Pair;

/// Translates each attempt between the API its client speaks and the API of the deployment
/// the balancer chose: an OpenAI chat completion request to an Anthropic deployment goes out
/// as a messages request, and its answer (JSON, stream or error) comes back as OpenAI's.
/// Requests whose deployment speaks the client's API pass through untouched, not a byte
/// parsed. Put it inside the balancer (which says, with
/// [`Selected`](llm_tower_core::Selected), where each attempt goes) and outside retry.
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::BodyExt;
/// use llm_tower_core::{BufferedBody, Endpoint, Provider, Selected};
/// use llm_tower_translate::TranslateLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A stand-in Anthropic endpoint: it checks what it was sent, and answers a message.
/// let claude = service_fn(|request: Request<BufferedBody>| async move {
///     assert_eq!(request.uri().path(), "/v1/messages");
///     let body: serde_json::Value = serde_json::from_slice(&request.body().to_bytes()).unwrap();
///     assert_eq!(body["system"], "Be brief.");
///     let message = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-haiku","content":[{"type":"text","text":"Hi."}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":2}}"#;
///     Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(Bytes::from(message))))
/// });
/// let endpoint = Endpoint::builder("claude", "https://api.anthropic.com/v1")
///     .provider(Provider::Anthropic)
///     .build()
///     .unwrap();
/// let mut request = Request::post("https://api.anthropic.com/v1/chat/completions").body(BufferedBody::from(Bytes::from(
///     r#"{"model":"claude-3-5-haiku","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}]}"#,
/// ))).unwrap();
/// request.extensions_mut().insert(Selected(Arc::new(endpoint)));
/// let response = TranslateLayer::new().layer(claude).oneshot(request).await.unwrap();
/// let body = response.into_body().collect().await.unwrap().to_bytes();
/// let completion: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(completion["object"], "chat.completion");
/// assert_eq!(completion["choices"][0]["message"]["content"], "Hi.");
/// assert_eq!(completion["usage"]["total_tokens"], 11);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Translate<S> {
    inner: S,
}

impl<S> Translate<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }

    llm_tower_core::define_inner_service_accessors!();
}

impl<S, RB> Service<Request<BufferedBody>> for Translate<S>
where
    S: Service<Request<BufferedBody>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<BufferedBody>) -> Self::Future {
        match Pair::of(&request) {
            Pair::Passthrough => ResponseFuture::passthrough(self.inner.call(request)),
            Pair::OpenAiToAnthropic => match to_messages_request(&mut request) {
                Ok(usage_in_stream) => {
                    let source = Source::Anthropic {
                        created: now(),
                        usage_in_stream,
                    };
                    ResponseFuture::translated(self.inner.call(request), source)
                }
                Err(err) => ResponseFuture::refused(err),
            },
            Pair::OpenAiToGemini => match to_generate_request(&mut request, false) {
                Ok(usage_in_stream) => {
                    let source = Source::Gemini {
                        created: now(),
                        usage_in_stream,
                    };
                    ResponseFuture::translated(self.inner.call(request), source)
                }
                Err(err) => ResponseFuture::refused(err),
            },
            Pair::AnthropicToGemini => match to_generate_request(&mut request, true) {
                Ok(_) => {
                    let source = Source::GeminiForAnthropic { created: now() };
                    ResponseFuture::translated(self.inner.call(request), source)
                }
                Err(err) => ResponseFuture::refused(err),
            },
            Pair::AnthropicToOpenAi => match to_chat_request(&mut request) {
                Ok(()) => ResponseFuture::translated(self.inner.call(request), Source::OpenAi),
                Err(err) => ResponseFuture::refused(err),
            },
        }
    }
}

/// Rewrites an OpenAI chat completion attempt into an Anthropic messages one: the body, the
/// path (`…/chat/completions` → `…/messages`), and the `Replay` a retry remakes it from.
/// Returns whether the client asked for usage in its stream.
fn to_messages_request(request: &mut Request<BufferedBody>) -> Result<bool, Error> {
    let endpoint = endpoint(request)?;
    let (body, usage_in_stream) = to_anthropic(
        &request.body().to_bytes(),
        endpoint.id().as_str(),
        endpoint.translation(),
    )?;
    let uri = with_path_end(request.uri(), "/chat/completions", "/messages", None)?;
    rewrite(request, uri, body);
    Ok(usage_in_stream)
}

/// Rewrites an Anthropic messages attempt into an OpenAI chat completion one (`…/messages` →
/// `…/chat/completions`).
fn to_chat_request(request: &mut Request<BufferedBody>) -> Result<(), Error> {
    let endpoint = endpoint(request)?;
    let body = to_openai(
        &request.body().to_bytes(),
        endpoint.id().as_str(),
        endpoint.translation(),
    )?;
    let uri = with_path_end(request.uri(), "/messages", "/chat/completions", None)?;
    rewrite(request, uri, body);
    Ok(())
}

/// Rewrites an OpenAI chat completion attempt (an Anthropic messages one, `from_anthropic`,
/// through OpenAI's shape) into a Gemini one: the body, the path (`…/chat/completions` or
/// `…/messages` → `…/models/{model}:generateContent`, or `:streamGenerateContent?alt=sse` for
/// a stream). Returns whether the client asked for usage in its stream.
fn to_generate_request(
    request: &mut Request<BufferedBody>,
    from_anthropic: bool,
) -> Result<bool, Error> {
    let endpoint = endpoint(request)?;
    let (id, options) = (endpoint.id().as_str(), endpoint.translation());
    let client = request.body().to_bytes();
    let (openai, path) = if from_anthropic {
        (to_openai(&client, id, options)?.into(), "/messages")
    } else {
        (client, "/chat/completions")
    };
    let (body, model, stream, usage_in_stream) = to_gemini(&openai, id, options)?;
    if model.is_empty()
        || !model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
    {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            format!("`{model}` cannot name a Gemini model"),
        ));
    }
    // Gemini names a stream by its method, and wants it as server-sent events.
    let (method, query) = if stream {
        (
            format!("/models/{model}:streamGenerateContent"),
            Some("alt=sse"),
        )
    } else {
        (format!("/models/{model}:generateContent"), None)
    };
    let uri = with_path_end(request.uri(), path, &method, query)?;
    rewrite(request, uri, body);
    Ok(usage_in_stream)
}

/// The endpoint an attempt goes to (its pair was found from it: it is there).
fn endpoint<B>(request: &Request<B>) -> Result<std::sync::Arc<llm_tower_core::Endpoint>, Error> {
    Selected::of(request.extensions())
        .map(|selected| selected.0.clone())
        .ok_or_else(|| Error::new(ErrorKind::Internal, "no endpoint was selected"))
}

/// Gives the attempt `uri` and `body`, and the `Replay` a retry remakes it from the same.
fn rewrite(request: &mut Request<BufferedBody>, uri: Uri, body: Vec<u8>) {
    rewrite_attempt(request, uri, BufferedBody::from(bytes::Bytes::from(body)));
}

/// `uri` with its path's end `from` made `to` (`…/chat/completions` as `…/messages`), the
/// query kept, and `more` added to it.
fn with_path_end(uri: &Uri, from: &str, to: &str, more: Option<&str>) -> Result<Uri, Error> {
    let path = uri.path();
    let base = path.strip_suffix(from).unwrap_or(path);
    let query: Vec<&str> = uri.query().into_iter().chain(more).collect();
    let path_and_query = match query.as_slice() {
        [] => format!("{base}{to}"),
        query => format!("{base}{to}?{}", query.join("&")),
    };
    let unaddressable = || {
        Error::new(
            ErrorKind::InvalidRequest,
            "cannot address the deployment's API",
        )
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(path_and_query).map_err(|_| unaddressable())?);
    Uri::from_parts(parts).map_err(|_| unaddressable())
}

/// Now, in seconds since the epoch: the `created` of a translated answer.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
