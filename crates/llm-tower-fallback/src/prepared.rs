//! [`Prepared`]: the request as every attempt sends it (buffered once, its connection
//! headers removed, what it said of its attempts carried), and each attempt made from it.

use std::sync::Arc;

use http::request::Parts;
use http::{Request, Uri};
use llm_tower_core::{
    AttemptContext, AttemptFacts, AttemptKind, Attempts, BufferedBody, Deployment, Endpoint, Error,
    ErrorKind, ModelName, ModelRoute, Replay, Selected, UsageRecord, WebSocketUpgrade,
    check_declared_size, header_names, strip_hop_by_hop_and, with_model,
};

use crate::balancer::{Balancer, Route};
use crate::pool::Member;
use crate::upgrade;

/// The deployment an attempt goes to, for the model of its step of the route.
pub(crate) fn deployment(route: &Route<'_>, step: usize, member: &Member) -> Deployment {
    let model = route.model(step).cloned();
    let mut deployment = Deployment::new(member.id().clone(), model);
    if step > 0 {
        deployment.fell_back_from = route.requested.as_ref().map(|(name, _)| name.clone());
    }
    deployment
}

header_names! {
    /// Request headers that are not forwarded besides the hop-by-hop ones. `host`: each
    /// endpoint's comes from its URL. `content-length`: the buffered body knows its exact
    /// length, and the client derives the framing from it. `expect`: the body is already here
    /// (a server that sent `100 Continue` did so to get it), so the upstream must not wait for
    /// a `100` of its own. `accept-encoding`: error bodies are checked for an echoed key, which
    /// a compressed body would hide, so upstreams are asked for identity encoding.
    static NOT_FORWARDED: ["host", "content-length", "expect", "accept-encoding"];
}

/// The request as every attempt sends it: buffered once, with the client's connection
/// headers removed.
pub(crate) struct Prepared {
    parts: Parts,
    pub(crate) body: BufferedBody,
    /// The client's request target; each attempt joins it to its endpoint's base URL.
    pub(crate) target: Uri,
    /// A WebSocket upgrade ([`WebSocketUpgrade`]): routed by its `?model=`, which each
    /// attempt rewrites instead of the (empty) body's.
    pub(crate) upgrade: bool,
    /// What the request said of its attempts before the balancer: kept in theirs.
    carried: Carried,
}

/// What a request said of its attempts before it reached the balancer (a layer outside, or
/// the caller, inserted the part on its own; or a balancer outside this one sent it): each
/// attempt's [`AttemptContext`] keeps it where this balancer says nothing, as the parts copied
/// into each attempt always were.
struct Carried {
    deployment: Option<Deployment>,
    single_try: bool,
    kind: Option<AttemptKind>,
    credentials_set: bool,
    usage: Option<UsageRecord>,
}

impl Carried {
    /// What `extensions` say of the attempts. The [`UsageRecord`] moves from the map into each
    /// attempt's context: the map is copied into every attempt, and without the record it is
    /// most often empty, which copies no entry (its table stays: the attempt's own entries fit
    /// in it, where a map made anew would grow on its first). A record on its own is the one a
    /// layer outside wants filled, even beside a context that carries another (see
    /// [`AttemptFacts::usage`]).
    fn take(extensions: &mut http::Extensions) -> Self {
        let own = extensions.remove::<UsageRecord>();
        let facts = AttemptFacts::of(extensions);
        Self {
            deployment: facts.deployment().cloned(),
            single_try: facts.single_try(),
            kind: facts.kind(),
            credentials_set: facts.credentials_set(),
            usage: own.or_else(|| facts.usage().cloned()),
        }
    }
}

/// The request's head as every attempt sends it (see [`Prepared`]), before its body is
/// buffered.
pub(crate) struct Head {
    parts: Parts,
    target: Uri,
    upgrade: bool,
}

impl Prepared {
    /// The request's head as attempts send it, and its body to buffer; a body longer than
    /// `max_body_bytes` by what it says of its length is refused before it is read.
    pub(crate) fn head<B: http_body::Body>(
        request: Request<B>,
        max_body_bytes: usize,
    ) -> Result<(Head, B), Error> {
        check_declared_size(&request, max_body_bytes)?;
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop_and(&mut parts.headers, |name| NOT_FORWARDED.contains(name));
        let upgrade = parts.extensions.get::<WebSocketUpgrade>().is_some();
        if upgrade {
            upgrade::headers(&mut parts.headers);
        }
        // The client's HTTP version says nothing about the upstream's: the pool picks HTTP/1.1
        // or HTTP/2 per connection (ALPN). Forwarding an h2 client's version to an HTTP/1-only
        // endpoint would fail every attempt.
        parts.version = http::Version::HTTP_11;
        let target = std::mem::take(&mut parts.uri);
        let head = Head {
            parts,
            target,
            upgrade,
        };
        Ok((head, body))
    }

    pub(crate) fn new(head: Head, body: BufferedBody) -> Self {
        let Head {
            mut parts,
            target,
            upgrade,
        } = head;
        let carried = Carried::take(&mut parts.extensions);
        Self {
            parts,
            body,
            target,
            upgrade,
            carried,
        }
    }

    /// The request for one attempt on `member`: its URI, its body (with the `model` this
    /// deployment knows the step's model by, when that differs from what the client sent),
    /// its [`AttemptContext`] (the endpoint, the [`Deployment`], the shared log, and
    /// `single_try` when it is the deployment's half-open probe or the deployment is on
    /// probation after a health check: no user waits through retries on a deployment that is
    /// probably still down, on failure it falls back at once), and the [`Replay`] that remakes
    /// it for a retry, so the retry layer copies nothing up front.
    pub(crate) fn attempt(
        this: &Arc<Self>,
        member: &Member,
        deployment: &Deployment,
        single_try: bool,
        log: &Attempts,
        body: BufferedBody,
    ) -> Result<Request<BufferedBody>, Error> {
        let target = this.target_for(member, deployment);
        let uri = member
            .endpoint
            .base_url()
            .join(target.as_ref().unwrap_or(&this.target))
            .map_err(|err| {
                Error::new(
                    ErrorKind::InvalidRequest,
                    format!("cannot forward this request target: {err}"),
                )
            })?;
        let replay = {
            let prepared = this.clone();
            let carried = &prepared.carried;
            let mut context = AttemptContext::new(Selected(member.endpoint.clone()), log.clone());
            context.deployment = deployment_extension(deployment, &member.endpoint)
                .or_else(|| carried.deployment.clone());
            context.single_try = single_try || carried.single_try;
            context.kind = carried.kind;
            context.credentials_set = carried.credentials_set;
            context.usage.clone_from(&carried.usage);
            Replay::new(move || {
                let mut attempt = Request::from_parts(prepared.parts.clone(), body.clone());
                *attempt.uri_mut() = uri.clone();
                attempt.extensions_mut().insert(context.clone());
                attempt
            })
        };
        let mut attempt = replay.request();
        if member.hedge.is_some() {
            // It may be out beside a hedge, which may end first: its kind is said, not
            // derived from the order attempts end in (as it is, for free, elsewhere).
            let kind = if log.is_empty() {
                AttemptKind::First
            } else {
                AttemptKind::Fallback
            };
            kind.mark(attempt.extensions_mut());
        }
        attempt.extensions_mut().insert(replay);
        Ok(attempt)
    }

    /// The attempt at the route's step `step` on `member`: its deployment, and its request
    /// (see [`attempt`](Self::attempt)).
    pub(crate) fn attempt_at(
        this: &Arc<Self>,
        (route, step): (&Route<'_>, usize),
        member: &Member,
        single_try: bool,
        log: &Attempts,
    ) -> Result<(Deployment, Request<BufferedBody>), Error> {
        let deployment = deployment(route, step, member);
        let body = this.body_for(route, step, member);
        let attempt = Self::attempt(this, member, &deployment, single_try, log, body)?;
        Ok((deployment, attempt))
    }

    /// The body as `member` is to get it at the route's step `step`: the client's, unless the
    /// deployment calls the step's model by another name than the client sent (an alias, or a
    /// chain's next model), in which case only the bytes of the `model` value change.
    fn body_for(&self, route: &Route<'_>, step: usize, member: &Member) -> BufferedBody {
        let (Some((asked, span)), Some(model)) = (&route.requested, route.model(step)) else {
            return self.body.clone();
        };
        let send = upstream_name(member, model);
        if send == asked || self.upgrade {
            return self.body.clone();
        }
        with_model(&self.body.to_bytes(), span.clone(), send)
    }

    /// The request's route: by its body's `model`, or an upgrade's `?model=`.
    pub(crate) fn route<'b>(&self, balancer: &'b Balancer) -> Result<Route<'b>, Error> {
        if self.upgrade {
            balancer.route_by_query(&self.target)
        } else {
            balancer.route(&self.body.to_bytes())
        }
    }

    /// An upgrade's target as the deployment is asked (see [`upgrade::target`]); `None`:
    /// the client's target as it is.
    fn target_for(&self, member: &Member, deployment: &Deployment) -> Option<Uri> {
        let model = deployment.model.as_ref().filter(|_| self.upgrade)?;
        upgrade::target(
            &self.target,
            upstream_name(member, model),
            member.endpoint.provider(),
        )
    }
}

/// The name `member` knows `model` by (its alias's upstream name, else the same).
fn upstream_name<'a>(member: &'a Member, model: &'a ModelName) -> &'a ModelName {
    member.route.as_ref().map_or(model, ModelRoute::upstream)
}

/// The [`Deployment`] of an [`AttemptContext`], when it says more than [`Selected`] does (a
/// model, or an id that is not the endpoint's): readers fall back to `Selected`.
pub(crate) fn deployment_extension(
    deployment: &Deployment,
    endpoint: &Endpoint,
) -> Option<Deployment> {
    (deployment.model.is_some() || deployment.id != *endpoint.id()).then(|| deployment.clone())
}
