//! [`finish`]: the response the client gets for the inner service's result (an error made a
//! JSON response, hop-by-hop headers dropped, the attempt headers added, the completion
//! record attached).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response};
use llm_tower_core::{
    AttemptFacts, Attempts, BoxError, Caller, ClientApi, Error, ErrorKind, Selected, UsageRecord,
    is_event_stream, strip_hop_by_hop,
};
use tracing::Span;

use super::accounting::Answered;

use super::body::ResponseBody;
use super::completion::Completion;
use super::shared::Shared;
use super::span::record_status;
use super::{ATTEMPTS_HEADER, ENDPOINT_HEADER, MODEL_HEADER};

/// The response the client gets for `result`.
pub(crate) fn finish<RB>(
    shared: &Arc<Shared>,
    result: Result<Response<RB>, BoxError>,
    caller: Option<Caller>,
    api: ClientApi,
    usage: Option<UsageRecord>,
    span: Span,
) -> Response<ResponseBody<RB>>
where
    RB: http_body::Body<Data = Bytes>,
    RB::Error: Into<BoxError>,
{
    let mut response = match result {
        Ok(mut response) => {
            // hyper writes an upstream's own reason phrase when it keeps one: the client gets
            // the canonical one instead, since the upstream's is free text that can hold
            // anything, down to the key it was sent (`401 Bad key sk-...`).
            response
                .extensions_mut()
                .remove::<hyper::ext::ReasonPhrase>();
            strip_hop_by_hop(response.headers_mut());
            drop_inconsistent_length(&mut response);
            // A stream of events that fails is told so in band.
            let in_band = is_event_stream(response.headers()).then_some(api);
            response.map(|body| ResponseBody::upstream(body).with_in_band_errors(in_band))
        }
        Err(err) => respond(shared, err, api),
    };
    let settings = shared.settings();
    // None for an answer made before any attempt (a client over its limits): it is logged
    // and counted all the same.
    let facts = AttemptFacts::of(response.extensions());
    let attempts = facts.log().cloned().unwrap_or_default();
    // Who answered: for the attempt headers and the usage accounting, when either is on.
    let answered = (settings.response_headers || usage.is_some())
        .then(|| answered(facts))
        .flatten();
    if settings.response_headers {
        let endpoint = answered_by(answered.as_ref(), &attempts, facts.selected());
        add_attempt_headers(&mut response, endpoint, &attempts, answered.as_ref());
    }
    #[cfg(feature = "metrics")]
    let record_metrics = settings.metrics;
    #[cfg(not(feature = "metrics"))]
    let record_metrics = false;
    // Who answered, for the usage accounting (an error response has no usage).
    let usage = usage.and_then(|record| {
        let (answered, _) = answered?;
        response.extensions_mut().insert(record.clone());
        Some((record, answered))
    });
    record_status(&span, response.status());
    // The span ends with the body: kept by the completion, when a tracing backend listens.
    let span = (!span.is_disabled()).then_some(span);
    if !(settings.access_log || record_metrics || usage.is_some() || span.is_some()) {
        return response;
    }
    let completion =
        Completion::new(shared.clone(), response.status(), attempts, caller, usage).in_span(span);
    if http_body::Body::is_end_stream(response.body()) {
        // An empty body is never polled: the response is complete as it is.
        completion.ended(None);
        return response;
    }
    response.map(|body| body.with_completion(Some(completion)))
}

/// The deployment whose answer a response is (what its extensions say, `facts`), the model
/// it answered as, and whether a fallback chain moved on to that model from the one asked
/// for. A failed response returned after a later attempt failed without one is not the last
/// attempt's.
fn answered(facts: AttemptFacts<'_>) -> Option<(Answered, bool)> {
    match facts.deployment() {
        Some(deployment) => Some((
            Answered {
                deployment: deployment.id.clone(),
                model: deployment.model.clone(),
            },
            deployment.fell_back_from.is_some(),
        )),
        None => facts.selected().map(|selected| {
            let answered = Answered {
                deployment: selected.id().clone(),
                model: None,
            };
            (answered, false)
        }),
    }
}

/// An error as the client sees it: JSON in its API's shape (OpenAI's, or Anthropic's to an
/// Anthropic client), with the right status.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
fn respond<RB>(shared: &Shared, err: BoxError, api: ClientApi) -> Response<ResponseBody<RB>> {
    let err = Error::upstream(err);
    if err.kind() == ErrorKind::Local {
        // Not an upstream's fault: whoever runs this process must act (raise limits, add
        // memory), so it is said loudly.
        tracing::error!(detail = %err.detail(), "this process ran out of a resource");
        #[cfg(feature = "metrics")]
        if shared.settings().metrics {
            shared.record_local_failure();
        }
    } else if err.status().is_server_error() {
        tracing::warn!(kind = %err.kind(), detail = %err.detail(), "request failed");
    }
    err.to_response_in::<Bytes>(api).map(ResponseBody::error)
}

/// Keeps `content-length` only when it matches what the body says about itself; hyper
/// derives the framing from the body otherwise.
fn drop_inconsistent_length<B: http_body::Body>(response: &mut Response<B>) {
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
    if let Some(declared) = declared
        && declared != response.body().size_hint().exact()
    {
        response.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
}

/// Who answered, as the attempt header names it: `answered`, else the last attempt's
/// deployment. `selected`: the endpoint the response came from, whose id is a header value
/// already.
fn answered_by(
    answered: Option<&(Answered, bool)>,
    attempts: &Attempts,
    selected: Option<&Selected>,
) -> Option<HeaderValue> {
    let last;
    let id = if let Some((answered, _)) = answered {
        &answered.deployment
    } else {
        last = attempts.last()?;
        &last.endpoint
    };
    match selected {
        Some(selected) if selected.id() == id => Some(selected.id_value().clone()),
        _ => HeaderValue::from_str(id.as_str()).ok(),
    }
}

/// The attempt headers: who answered (`endpoint`, from [`answered_by`]), the model that
/// answered when a fallback chain moved on from the one asked for, and how many attempts
/// were made.
fn add_attempt_headers<B>(
    response: &mut Response<B>,
    endpoint: Option<HeaderValue>,
    attempts: &Attempts,
    answered: Option<&(Answered, bool)>,
) {
    let model = answered
        .filter(|(_, fell_back)| *fell_back)
        .and_then(|(answered, _)| answered.model.as_deref())
        .and_then(|model| HeaderValue::from_str(model).ok());
    let headers = response.headers_mut();
    if let Some(value) = endpoint {
        headers.insert(ENDPOINT_NAME.clone(), value);
    }
    if let Some(model) = model {
        headers.insert(MODEL_NAME.clone(), model);
    }
    headers.insert(ATTEMPTS_NAME.clone(), attempts_value(attempts.len()));
}

/// The `x-llm-tower-attempts` value: made once for the counts nearly every response has (a
/// number is otherwise formatted into a new allocation per response).
fn attempts_value(count: usize) -> HeaderValue {
    static FEW: [HeaderValue; 10] = [
        HeaderValue::from_static("0"),
        HeaderValue::from_static("1"),
        HeaderValue::from_static("2"),
        HeaderValue::from_static("3"),
        HeaderValue::from_static("4"),
        HeaderValue::from_static("5"),
        HeaderValue::from_static("6"),
        HeaderValue::from_static("7"),
        HeaderValue::from_static("8"),
        HeaderValue::from_static("9"),
    ];
    FEW.get(count)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(count))
}

// Parsed once: a `&str` name is parsed again on every insert.
static ENDPOINT_NAME: HeaderName = HeaderName::from_static(ENDPOINT_HEADER);
static ATTEMPTS_NAME: HeaderName = HeaderName::from_static(ATTEMPTS_HEADER);
static MODEL_NAME: HeaderName = HeaderName::from_static(MODEL_HEADER);

#[cfg(test)]
mod tests {
    use super::attempts_value;

    #[test]
    fn attempt_counts_are_written_in_decimal() {
        for count in [0, 1, 4, 9, 10, 11, 123] {
            assert_eq!(attempts_value(count), count.to_string().as_str());
        }
    }
}
