//! [`EndpointPolicy`]: what tower's retry loop asks after each attempt.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use llm_tower_core::{
    BoxError, CooldownHint, EndpointId, RetryPolicy, Selected, SingleTry, classify, retry_after,
};
use tower::retry::budget::{Budget, TpsBudget};

use crate::backoff::{Backoff, backoff};
use crate::body::ResponseBody;
use crate::layer::RetryState;

/// Marks a request clone as retry number `n` (1-based) for [`PerTry`](crate::PerTry).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryIndex(pub(crate) u32);

/// The [`tower::retry::Policy`] of [`Retry`](crate::Retry): reads the endpoint's
/// [`RetryPolicy`] from [`Selected`], applies the budget and `Retry-After`, and drains
/// discarded responses.
///
/// ```
/// use llm_tower_retry::{Retry, RetryLayer};
/// use tower::Layer;
///
/// // One policy per request, made by the layer: users never build it themselves.
/// let retry: Retry<()> = RetryLayer::new().layer(());
/// # let _ = retry;
/// ```
#[derive(Clone)]
pub struct EndpointPolicy {
    state: RetryState,
    /// Retries made so far for this request.
    retries: u32,
    /// This request's endpoint budget, looked up once.
    budget: Option<Arc<TpsBudget>>,
}

impl EndpointPolicy {
    pub(crate) fn new(state: RetryState) -> Self {
        Self {
            state,
            retries: 0,
            budget: None,
        }
    }
}

impl fmt::Debug for EndpointPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointPolicy")
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// The retries allowed for `request`: none for a [`SingleTry`] (a half-open probe), else the
/// endpoint's policy, or the layer's default for requests without [`Selected`].
fn max_retries<B>(default: &RetryPolicy, request: &Request<B>) -> u32 {
    if request.extensions().get::<SingleTry>().is_some() {
        return 0;
    }
    policy_for(default, request.extensions().get::<Selected>()).max_retries()
}

/// The endpoint's policy, or the layer's default for requests without [`Selected`].
fn policy_for<'a>(default: &'a RetryPolicy, selected: Option<&'a Selected>) -> &'a RetryPolicy {
    selected.map_or(default, |s| s.retry_policy())
}

impl<B, RB> tower::retry::Policy<Request<B>, Response<ResponseBody<RB>>, BoxError>
    for EndpointPolicy
where
    B: Clone,
    RB: Body + Send + 'static,
    RB::Data: Send,
{
    type Future = Backoff;

    fn retry(
        &mut self,
        request: &mut Request<B>,
        result: &mut Result<Response<ResponseBody<RB>>, BoxError>,
    ) -> Option<Self::Future> {
        let selected = request.extensions().get::<Selected>();
        let budget = self.budget.get_or_insert_with(|| {
            let id = selected.map_or_else(
                || EndpointId::from(crate::DEFAULT_ENDPOINT),
                |s| s.id().clone(),
            );
            let budget = self.state.budget_for(&id);
            // One deposit per request, made when its first attempt has finished.
            budget.deposit();
            budget
        });
        if !classify(result).retry_same_endpoint() {
            return None;
        }
        let policy = policy_for(&self.state.default_policy, selected);
        let wait = result.as_ref().ok().and_then(|r| retry_after(r.headers()));
        let max_wait = self.state.max_retry_after(policy);
        if let Some(wait) = wait.filter(|w| *w > max_wait) {
            tracing::debug!(
                ?wait,
                ?max_wait,
                "Retry-After longer than allowed; not retrying here"
            );
            if let Ok(response) = result {
                response.extensions_mut().insert(CooldownHint(wait));
            }
            return None;
        }
        if self.retries >= max_retries(&self.state.default_policy, request) {
            return None;
        }
        if !budget.withdraw() {
            tracing::debug!("retry budget exhausted; not retrying");
            return None;
        }
        let ceiling = policy.backoff_ceiling(self.retries);
        let jittered = Duration::from_nanos(fastrand::u64(0..=ceiling.as_nanos() as u64));
        let delay = jittered.max(wait.unwrap_or(Duration::ZERO));
        self.retries += 1;
        request.extensions_mut().insert(RetryIndex(self.retries));
        let discarded = result
            .as_mut()
            .ok()
            .map(|r| std::mem::replace(r.body_mut(), ResponseBody::empty()));
        Some(backoff(delay, discarded))
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        if self.retries >= max_retries(&self.state.default_policy, request) {
            // No retry can follow this attempt: skip the copy.
            return None;
        }
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.version_mut() = request.version();
        *clone.headers_mut() = request.headers().clone();
        *clone.extensions_mut() = request.extensions().clone();
        Some(clone)
    }
}
