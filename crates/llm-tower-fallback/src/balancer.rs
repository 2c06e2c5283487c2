//! [`Balancer`]: what every clone of a [`Fallback`](crate::Fallback) shares, and the decisions
//! it makes between attempts: which endpoint first, which next, and what a failure costs.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Response, Uri};
use llm_tower_core::{
    BoxError, Classification, ConfigError, Continuation, CooldownHint, Endpoint, Error, ErrorKind,
    ModelInBody, ModelName, Outcome, classify, cooldown_hint, find_model, model_in_query,
};
use llm_tower_health::{CheckService, HealthChecker, HealthRegistry, ProbeGuard};
use tokio::time::Instant;

use crate::models::ModelFallbacks;
use crate::pool::{Asking, Group, Member, Needs, NoGroup, Pick, Pool, Soonest};
use crate::settings::{FallbackSettings, WhenAllUnhealthy};

pub(crate) struct Balancer {
    pub(crate) pool: Pool,
    pub(crate) registry: HealthRegistry,
    pub(crate) settings: FallbackSettings,
    /// The chains as configured, for [`FallbackLayer::model_fallbacks`](crate::FallbackLayer).
    pub(crate) models: ModelFallbacks,
    /// The same, by model, resolved once.
    chains: HashMap<ModelName, Box<[ModelName]>>,
    /// The models each model goes on to when a prompt does not fit it.
    context: HashMap<ModelName, Box<[ModelName]>>,
    /// The health checker of its endpoints, once started: it stops with the balancer.
    checker: Mutex<Option<HealthChecker>>,
    /// Whether some deployment may continue a broken stream (`continuation: prefill`).
    continues: bool,
}

/// Where one request may go, in steps: the model it asked for (if any), then the models of
/// that model's fallback chain, each with its group of deployments. When a model refuses the
/// prompt as too long for its context window, the steps after it become its
/// `context_window_fallback` models.
pub(crate) struct Route<'a> {
    /// The model the request named, and where its value is in the body.
    pub(crate) requested: Option<(ModelName, Range<usize>)>,
    /// The group of step 0: the model asked for, or the endpoints that serve any model.
    first: &'a Group,
    /// Steps 1 and on (empty unless the model has a chain: no allocation).
    chain: Vec<(&'a ModelName, &'a Group)>,
    /// The models that refused this prompt as too long: never sent it again.
    overflowed: Vec<&'a ModelName>,
    /// What the request is expected to use, read only if a deployment asks.
    needs: Needs,
}

impl Route<'_> {
    /// A deployment asked at `now` to admit this request.
    pub(crate) fn asking(&self, now: Instant) -> Asking<'_> {
        Asking {
            now,
            needs: &self.needs,
        }
    }

    /// The number of steps.
    pub(crate) fn steps(&self) -> usize {
        1 + self.chain.len()
    }

    /// The group of step `step`.
    pub(crate) fn group(&self, step: usize) -> &Group {
        match step {
            0 => self.first,
            _ => self.chain[step - 1].1,
        }
    }

    /// The model of step `step` (`None`: the request named none).
    pub(crate) fn model(&self, step: usize) -> Option<&ModelName> {
        match step {
            0 => self.requested.as_ref().map(|(name, _)| name),
            _ => Some(self.chain[step - 1].0),
        }
    }
}

impl Balancer {
    pub(crate) fn new(
        endpoints: Vec<Endpoint>,
        registry: HealthRegistry,
        settings: FallbackSettings,
        models: ModelFallbacks,
    ) -> Self {
        let chains: HashMap<ModelName, Box<[ModelName]>> = models
            .iter()
            .filter(|(_, next)| !next.is_empty())
            .map(|(model, next)| (model, next.into()))
            .collect();
        let context: HashMap<ModelName, Box<[ModelName]>> = models
            .iter()
            .map(|(model, _)| {
                let bigger = models.context_window_fallbacks(&model);
                (model, bigger.into())
            })
            .filter(|(_, bigger): &(_, Box<[ModelName]>)| !bigger.is_empty())
            .collect();
        let mut chained: Vec<ModelName> = chains
            .iter()
            .chain(&context)
            .flat_map(|(model, next)| std::iter::once(model).chain(next.iter()))
            .cloned()
            .collect();
        chained.sort();
        chained.dedup();
        let continues =
            settings.max_continuations > 0 && endpoints.iter().any(|e| e.continuation().is_some());
        Self {
            pool: Pool::new(endpoints, &chained, &registry, &settings),
            registry,
            settings,
            models,
            chains,
            context,
            checker: Mutex::new(None),
            continues,
        }
    }

    /// Starts the health checker of this balancer's endpoints with a `health_check`, sending
    /// checks through `probe`; once per balancer. Returns whether it started now.
    pub(crate) fn start_health_checks(
        &self,
        probe: impl CheckService,
    ) -> Result<bool, ConfigError> {
        let Some(checked) = self
            .pool
            .members
            .iter()
            .find(|m| m.endpoint.health_check().is_some())
        else {
            return Ok(false);
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::invalid(
                format!("endpoint `{}`: health_check", checked.endpoint.id()),
                "health checks run as a Tokio task: start them inside a Tokio runtime",
            ));
        }
        let mut checker = self.checker.lock().unwrap_or_else(PoisonError::into_inner);
        if checker.is_some() {
            return Ok(false);
        }
        let deployments = self
            .pool
            .members
            .iter()
            .map(|m| (m.endpoint.clone(), m.health.clone()));
        *checker = HealthChecker::start(deployments, probe);
        Ok(checker.is_some())
    }

    /// The route of a request with this body: by its top-level `model`, read without
    /// building a document.
    pub(crate) fn route(&self, body: &Bytes) -> Result<Route<'_>, Error> {
        if let Some(route) = self.route_by_nothing(body) {
            return Ok(route);
        }
        let requested = match find_model(body) {
            ModelInBody::Named { name, span } => Some((name, span)),
            ModelInBody::Absent => None,
            ModelInBody::Duplicate => {
                return Err(Error::new(
                    ErrorKind::InvalidRequest,
                    "the request body has more than one top-level `model`",
                ));
            }
        };
        self.route_to(requested, body)
    }

    /// The route of a WebSocket upgrade to `target`: by its `model` query parameter (it has
    /// no body). Its span is empty: an alias is rewritten in the query, not the body.
    pub(crate) fn route_by_query(&self, target: &Uri) -> Result<Route<'_>, Error> {
        let empty = Bytes::new();
        if let Some(route) = self.route_by_nothing(&empty) {
            return Ok(route);
        }
        let requested = target
            .query()
            .and_then(model_in_query)
            .map(|name| (name, 0..0));
        self.route_to(requested, &empty)
    }

    /// When no endpoint lists models and no model has a chain, the model decides nothing:
    /// the route to every deployment, the request not read.
    fn route_by_nothing(&self, body: &Bytes) -> Option<Route<'_>> {
        let any = self
            .pool
            .only_any()
            .filter(|_| self.chains.is_empty() && self.context.is_empty())?;
        Some(Route {
            requested: None,
            first: any,
            chain: Vec::new(),
            overflowed: Vec::new(),
            needs: Needs::new(body.clone()),
        })
    }

    /// The route of a request for `requested` (the name, and where the body has it).
    fn route_to(
        &self,
        requested: Option<(ModelName, Range<usize>)>,
        body: &Bytes,
    ) -> Result<Route<'_>, Error> {
        let model = requested.as_ref().map(|(name, _)| &**name);
        let first = self
            .pool
            .group(model)
            .map_err(|no| self.no_group(no, model))?;
        let chain = model
            .and_then(|model| self.chains.get(model))
            .map(|next| {
                next.iter()
                    // Validated at build: every model of a chain has deployments.
                    .filter_map(|model| Some((model, self.pool.group(Some(model)).ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Route {
            requested,
            first,
            chain,
            overflowed: Vec::new(),
            needs: Needs::new(body.clone()),
        })
    }

    /// The model of the route's step `step` refused the prompt as longer than its context
    /// window: the steps after it become that model's `context_window_fallback` models (none
    /// that refused it already), and the first of them that admits a request is returned
    /// with its step. `None`: the model has none, or none admits a request now.
    pub(crate) fn context_window_pick<'a>(
        &'a self,
        route: &mut Route<'a>,
        step: usize,
        now: Instant,
    ) -> Option<(usize, Pick)> {
        let model = match step {
            0 => {
                let requested = &route.requested.as_ref()?.0;
                self.context.get_key_value(requested)?.0
            }
            _ => route.chain[step - 1].0,
        };
        route.overflowed.push(model);
        let bigger = self.context.get(model)?;
        route.chain.truncate(step);
        for next in bigger.iter().filter(|m| !route.overflowed.contains(m)) {
            // Validated at build: every model named has deployments.
            if let Ok(group) = self.pool.group(Some(next)) {
                route.chain.push((next, group));
            }
        }
        self.first_from(route, step + 1, now)
    }

    /// Whether a broken stream may be continued here: some deployment declares
    /// `continuation: prefill`, and `max_continuations` is not 0.
    pub(crate) fn continues(&self) -> bool {
        self.continues
    }

    /// The deployment to continue a stream that `broken` broke off at the route's step
    /// `step`: one of the same model that declares `continuation: prefill` and admits a
    /// request, else one of the chain's next models. Returns its step too.
    pub(crate) fn continuation_pick(
        &self,
        route: &Route<'_>,
        step: usize,
        broken: usize,
        now: Instant,
    ) -> Option<(usize, Pick)> {
        (step..route.steps()).find_map(|step| {
            let allowed = |member: &Member, index: usize| {
                index != broken && member.endpoint.continuation() == Some(Continuation::Prefill)
            };
            let pick = self
                .pool
                .first_allowed(route.group(step), &route.asking(now), allowed)?;
            Some((step, pick))
        })
    }

    /// The first deployment that admits a request in the route's steps from `from` on.
    fn first_from(&self, route: &Route<'_>, from: usize, now: Instant) -> Option<(usize, Pick)> {
        (from..route.steps()).find_map(|step| {
            let pick = self.pool.first(
                route.group(step),
                &route.asking(now),
                &mut Soonest::default(),
            )?;
            Some((step, pick))
        })
    }

    fn no_group(&self, no: NoGroup, model: Option<&str>) -> Error {
        let known: Vec<&str> = self.pool.listed_models().map(|m| &**m).collect();
        match no {
            NoGroup::UnknownModel => Error::model_not_found(model.unwrap_or_default(), &known),
            NoGroup::ModelRequired => Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "`model` is required: the request names no model (a JSON body with a \
                     top-level `model` string; a WebSocket, one `?model=` in its query). \
                     Available models: {}",
                    known.join(", ")
                ),
            ),
        }
    }

    /// The first deployment for a request: in the first step of its route with one that
    /// admits requests (a chain's next model before a deployment that is cooling down), or
    /// what `when_all_unhealthy` says about the model asked for. Returns the step too.
    pub(crate) fn first_pick(
        &self,
        route: &Route<'_>,
        now: Instant,
    ) -> Result<(usize, Pick), Error> {
        let mut asked = Soonest::default();
        for step in 0..route.steps() {
            let mut soonest = Soonest::default();
            if let Some(pick) = self
                .pool
                .first(route.group(step), &route.asking(now), &mut soonest)
            {
                return Ok((step, pick));
            }
            if step == 0 {
                asked = soonest;
            }
        }
        self.when_all_unhealthy(&asked).map(|pick| (0, pick))
    }

    /// The deployment to fall back to after `failed` in the route's step `step`: an untried
    /// one of the same model, else the first of the chain's next models that admits requests
    /// (`tried` is then cleared: it is another model), else, with `try_soonest`, the
    /// deployment of the same model whose cooldown ends first. Returns the step too.
    pub(crate) fn fallback_pick(
        &self,
        route: &Route<'_>,
        step: usize,
        failed: &Pick,
        tried: &mut [bool],
        now: Instant,
    ) -> Option<(usize, Pick)> {
        let mut soonest = Soonest::default();
        if let Some(pick) = self.pool.next(
            route.group(step),
            failed,
            tried,
            &route.asking(now),
            &mut soonest,
        ) {
            return Some((step, pick));
        }
        if let Some(next) = self.first_from(route, step + 1, now) {
            tried.fill(false);
            return Some(next);
        }
        (self.settings.when_all_unhealthy == WhenAllUnhealthy::TrySoonest)
            .then(|| soonest.pick())
            .flatten()
            .map(|pick| (step, pick))
    }

    /// The deployment a late attempt on `pick` is hedged on: the next of its step by
    /// fallback's order that admits a request now (never one cooling down, tried, or low on
    /// headroom).
    pub(crate) fn hedge_pick(
        &self,
        route: &Route<'_>,
        step: usize,
        pick: &Pick,
        tried: &[bool],
        now: Instant,
    ) -> Option<Pick> {
        self.pool.next(
            route.group(step),
            pick,
            tried,
            &route.asking(now),
            &mut Soonest::default(),
        )
    }

    /// Counts a failed request against the deployment, with the upstream's cooldown hint. A
    /// rejected key (401/403) counts against every deployment of the endpoint: they share it.
    pub(crate) fn record_failure<RB>(
        &self,
        index: usize,
        probe: Option<ProbeGuard>,
        result: &Result<Response<RB>, BoxError>,
        now: Instant,
    ) {
        let hint = result.as_ref().ok().and_then(|response| {
            response
                .extensions()
                .get::<CooldownHint>()
                .map(|h| h.0)
                .or_else(|| cooldown_hint(response.status(), response.headers(), SystemTime::now()))
        });
        let member = &self.pool.members[index];
        member.health.failed(now, Outcome::of(result), hint, probe);
        if classify(result) == Classification::BadCredentials {
            for sibling in self.pool.siblings(index).filter(|m| m.id() != member.id()) {
                sibling.health.key_rejected(now, hint);
            }
        }
    }

    /// No endpoint admits the request: try the one whose cooldown ends first, or fail with 503.
    fn when_all_unhealthy(&self, soonest: &Soonest) -> Result<Pick, Error> {
        let Some((index, _, until)) = soonest.0 else {
            return Err(Error::new(
                ErrorKind::Internal,
                "the balancer has no endpoints",
            ));
        };
        match self.settings.when_all_unhealthy {
            WhenAllUnhealthy::TrySoonest => {
                tracing::debug!(
                    endpoint = %self.pool.members[index].id(),
                    "every endpoint is cooling down; trying the one that returns first"
                );
                Ok(soonest.pick().expect("checked above"))
            }
            WhenAllUnhealthy::Fail => {
                let wait = until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1));
                Err(Error::new(
                    ErrorKind::NoEndpointAvailable,
                    "every upstream endpoint is cooling down after failures or out of its \
                     provider's rate limit; retry later",
                )
                .with_retry_after(wait))
            }
        }
    }
}
