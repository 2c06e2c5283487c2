//! [`Failed`]: the failures of one request so far — the answer the client gets if nothing
//! succeeds, which deployments were tried, and whether a hedge was sent.

use http::Response;
use llm_tower_core::{Attempts, BoxError, Deployment, Error, ErrorKind, Selected};

use crate::balancer::Balancer;
use crate::body::ResponseBody;
use crate::pool::Member;
use crate::run::{annotate, upstream_error};

/// The failures of one request so far, and which endpoints it tried.
pub(crate) struct Failed<RB> {
    /// The latest upstream response and who sent it: what the client gets if nothing succeeds.
    /// Boxed: most requests fail nothing, and this lives in the request's future, which is
    /// moved whole.
    response: Option<Box<Kept<RB>>>,
    /// The latest error; it only matters while no response arrived.
    error: Option<BoxError>,
    pub(crate) tried: Vec<bool>,
    /// Whether a hedge was sent (a request gets one at most).
    pub(crate) hedged: bool,
}

/// A failed answer kept, and who sent it.
struct Kept<RB> {
    response: Response<ResponseBody<RB>>,
    selected: Selected,
    deployment: Deployment,
}

impl<RB> Failed<RB> {
    pub(crate) fn new() -> Self {
        Self {
            response: None,
            error: None,
            tried: Vec::new(),
            hedged: false,
        }
    }

    pub(crate) fn keep(
        &mut self,
        result: Result<Response<ResponseBody<RB>>, BoxError>,
        member: &Member,
        deployment: Deployment,
    ) {
        match result {
            Ok(mut response) => {
                response.body_mut().failure_counted();
                self.response = Some(Box::new(Kept {
                    response,
                    selected: Selected(member.endpoint.clone()),
                    deployment,
                }));
            }
            Err(err) => self.error = Some(err),
        }
    }

    pub(crate) fn is_tried(&self, index: usize) -> bool {
        self.tried.get(index).copied().unwrap_or(false)
    }

    pub(crate) fn mark_tried(&mut self, balancer: &Balancer, index: usize) -> &mut [bool] {
        if self.tried.is_empty() {
            self.tried = vec![false; balancer.pool.members.len()];
        }
        self.tried[index] = true;
        &mut self.tried
    }

    /// Every attempt failed: the last upstream response as it came, else the last error.
    pub(crate) fn into_result(
        self,
        log: &Attempts,
    ) -> Result<Response<ResponseBody<RB>>, BoxError> {
        match (self.response, self.error) {
            (Some(kept), _) => {
                let Kept {
                    response,
                    selected,
                    deployment,
                } = *kept;
                Ok(annotate(response, selected, &deployment, log))
            }
            (None, Some(err)) => Err(upstream_error(err, log)),
            (None, None) => Err(Box::new(
                Error::new(ErrorKind::Internal, "no upstream attempt was made")
                    .with_attempts(log.clone()),
            )),
        }
    }
}
