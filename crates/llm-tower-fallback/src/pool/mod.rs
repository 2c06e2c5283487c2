//! Deployment selection: groups by model, priority tiers, strategies, fallback order.
//!
//! Strategies compare what health gives them as a cost (attempts in flight, the latency
//! estimate) and ask it whether a deployment admits a request; the health state itself is
//! `llm_tower_health`'s.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use llm_tower_core::{Endpoint, EndpointId, ModelName, ModelRoute};
use tokio::time::Instant;

use llm_tower_health::{Admission, DeploymentHealth, HealthPolicy, HealthRegistry, ProbeGuard};

pub(crate) use self::asking::{Asking, Needs};
#[cfg(test)]
use self::schedule::MAX_SCHEDULE;
use self::schedule::smooth_weighted_schedule;
use crate::hedge::HedgePolicy;
use crate::settings::{FallbackSettings, Strategy};

/// One deployment: an endpoint, and the model it serves when the endpoint lists several (or
/// one). Health is kept per deployment; the endpoint (its key, its URL) is shared.
pub(crate) struct Member {
    pub(crate) endpoint: Arc<Endpoint>,
    /// The model, for an endpoint that lists models; `None` for one that serves any.
    pub(crate) route: Option<ModelRoute>,
    pub(crate) health: Arc<DeploymentHealth>,
    /// Its endpoint's hedging, when it hedges (per deployment: each counts its own share).
    pub(crate) hedge: Option<HedgePolicy>,
}

impl Member {
    /// The deployment id: the endpoint id, or `endpoint/model` when the endpoint lists
    /// several models (an outage of one must not cool its siblings down).
    pub(crate) fn id(&self) -> &EndpointId {
        self.health.id()
    }
}

/// The deployments a request may use, in priority tiers: those of one model (with the
/// endpoints that serve any model), or those of the endpoints that serve any model.
pub(crate) struct Group {
    /// Member indexes, by priority (stable).
    members: Box<[usize]>,
    tiers: Box<[Tier]>,
    counter: AtomicUsize,
}

struct Tier {
    /// Positions in the group's `members`.
    range: Range<usize>,
    /// Positions in the order the strategy visits them (each at least once).
    schedule: Box<[usize]>,
}

/// The chosen deployment; `probe` is set when the request is its half-open probe.
#[derive(Debug)]
pub(crate) struct Pick {
    pub(crate) index: usize,
    /// Its position in the group it was picked from.
    slot: usize,
    pub(crate) probe: Option<ProbeGuard>,
    /// The request gets one try there: it is the probe, or the deployment is on probation.
    pub(crate) single_try: bool,
}

/// Why a request has no group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoGroup {
    /// It names a model nobody serves.
    UnknownModel,
    /// It names no model, and every endpoint serves named models only.
    ModelRequired,
}

/// The deployments of one balancer, sorted by priority (stable), with their health cells, and
/// the groups requests choose from.
pub(crate) struct Pool {
    pub(crate) members: Box<[Member]>,
    /// For requests without a model (and with one nobody lists): the endpoints that serve any.
    any: Option<Group>,
    /// For requests with a model some endpoint lists.
    models: HashMap<ModelName, Group>,
    strategy: Strategy,
    /// `least_latency`'s time constant.
    latency_decay: Duration,
    /// Whether any deployment has a latency estimate yet: until then, there is no median
    /// to look for.
    scored: AtomicBool,
}

/// Tracks the member whose cooldown ends first among those that refused a request.
#[derive(Default)]
pub(crate) struct Soonest(pub(crate) Option<(usize, usize, Instant)>);

impl Soonest {
    fn offer(&mut self, index: usize, slot: usize, until: Instant) {
        if self.0.is_none_or(|(_, _, best)| until < best) {
            self.0 = Some((index, slot, until));
        }
    }

    /// The member whose cooldown ends first, as a pick without a probe.
    pub(crate) fn pick(&self) -> Option<Pick> {
        self.0.map(|(index, slot, _)| Pick {
            index,
            slot,
            probe: None,
            single_try: false,
        })
    }
}

impl Pool {
    /// The pool of `endpoints`. `chained` are the models named in fallback chains: an
    /// endpoint that serves any model gets a deployment of its own for each of them, so that
    /// a chain from one model to another on the same account is not stopped by the first
    /// model's failures (health is kept per deployment). Other names share the endpoint's
    /// one deployment: clients cannot create health cells by inventing model names.
    pub(crate) fn new(
        endpoints: Vec<Endpoint>,
        chained: &[ModelName],
        registry: &HealthRegistry,
        settings: &FallbackSettings,
    ) -> Self {
        let strategy = settings.strategy;
        let policy = HealthPolicy {
            unhealthy_threshold: settings.unhealthy_threshold,
            max_cooldown: settings.max_cooldown,
            max_probe_interval: settings.max_probe_interval,
        };
        let mut endpoints = endpoints;
        endpoints.sort_by_key(Endpoint::priority);
        let mut members: Vec<Member> = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let endpoint = Arc::new(endpoint);
            let routes: Vec<Option<ModelRoute>> = match endpoint.models() {
                None => std::iter::once(None)
                    .chain(chained.iter().map(|m| Some(ModelRoute::new(m.clone()))))
                    .collect(),
                Some(routes) => routes.iter().cloned().map(Some).collect(),
            };
            let several = routes.len() > 1;
            for route in routes {
                let id = match &route {
                    Some(route) if several => {
                        EndpointId::from(format!("{}/{}", endpoint.id(), route.name()))
                    }
                    _ => endpoint.id().clone(),
                };
                let model = route.as_ref().map(|r| r.name().clone());
                let health = DeploymentHealth::new(registry, id, &endpoint, model, policy)
                    .headroom_min(settings.headroom.min.fraction());
                members.push(Member {
                    hedge: endpoint.hedge().map(HedgePolicy::new),
                    health: Arc::new(health),
                    endpoint: endpoint.clone(),
                    route,
                });
            }
        }
        let serves_any: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].route.is_none())
            .collect();
        let mut by_model: BTreeMap<ModelName, Vec<usize>> = BTreeMap::new();
        for (index, member) in members.iter().enumerate() {
            if let Some(route) = &member.route {
                by_model
                    .entry(route.name().clone())
                    .or_default()
                    .push(index);
            }
        }
        let models = by_model
            .into_iter()
            .map(|(model, mut listed)| {
                // Endpoints that serve any model serve this one too, in priority order (by
                // their own deployment of it, for a chained model).
                let has_own = |any: &usize| {
                    listed
                        .iter()
                        .any(|&m| Arc::ptr_eq(&members[m].endpoint, &members[*any].endpoint))
                };
                let others: Vec<usize> =
                    serves_any.iter().copied().filter(|a| !has_own(a)).collect();
                listed.extend(others);
                listed.sort_unstable();
                (model, Group::new(listed, &members, strategy))
            })
            .collect();
        let any = (!serves_any.is_empty()).then(|| Group::new(serves_any, &members, strategy));
        Self {
            members: members.into_boxed_slice(),
            any,
            models,
            strategy,
            latency_decay: settings.latency_decay,
            scored: AtomicBool::new(false),
        }
    }

    /// Whether answers' latencies are scored (`least_latency`).
    pub(crate) fn scores_latency(&self) -> bool {
        self.strategy == Strategy::LeastLatency
    }

    /// An answer of `member` took `latency` to its first byte.
    pub(crate) fn observe_latency(&self, member: usize, latency: Duration) {
        self.members[member]
            .health
            .observe_latency(latency, Instant::now(), self.latency_decay);
        if !self.scored.load(Ordering::Relaxed) {
            self.scored.store(true, Ordering::Relaxed);
        }
    }

    /// The group for a request naming `model` (or none).
    pub(crate) fn group(&self, model: Option<&str>) -> Result<&Group, NoGroup> {
        match model {
            Some(model) => self
                .models
                .get(model)
                .or(self.any.as_ref())
                .ok_or(NoGroup::UnknownModel),
            None => self.any.as_ref().ok_or(NoGroup::ModelRequired),
        }
    }

    /// The group of every deployment, when no endpoint lists models.
    pub(crate) fn only_any(&self) -> Option<&Group> {
        self.any.as_ref().filter(|_| self.models.is_empty())
    }

    /// The models some endpoint lists, sorted.
    pub(crate) fn listed_models(&self) -> impl Iterator<Item = &ModelName> {
        let mut names: Vec<_> = self.models.keys().collect();
        names.sort();
        names.into_iter()
    }

    /// The deployments that share `index`'s endpoint (itself included): they share its key.
    pub(crate) fn siblings(&self, index: usize) -> impl Iterator<Item = &Member> {
        let endpoint = &self.members[index].endpoint;
        self.members
            .iter()
            .filter(move |m| Arc::ptr_eq(&m.endpoint, endpoint))
    }

    /// The first deployment for a request in `group`: the best available tier, then the
    /// strategy. On the healthy path this reads one atomic counter and one health flag.
    pub(crate) fn first(
        &self,
        group: &Group,
        at: &Asking<'_>,
        soonest: &mut Soonest,
    ) -> Option<Pick> {
        let start = group.counter.fetch_add(1, Ordering::Relaxed);
        group
            .tiers
            .iter()
            .find_map(|tier| self.pick_in_tier(group, tier, start, at, soonest))
    }

    fn pick_in_tier(
        &self,
        group: &Group,
        tier: &Tier,
        start: usize,
        at: &Asking<'_>,
        soonest: &mut Soonest,
    ) -> Option<Pick> {
        let now = at.now;
        let len = tier.range.len();
        let two_choices = matches!(
            self.strategy,
            Strategy::LeastInFlight | Strategy::LeastLatency
        );
        if two_choices && len > 1 {
            let a = tier.range.start + fastrand::usize(..len);
            let mut b = tier.range.start + fastrand::usize(..len - 1);
            if b >= a {
                b += 1;
            }
            let a_first = if self.strategy == Strategy::LeastLatency {
                self.latency_cost(group, tier, a, now) <= self.latency_cost(group, tier, b, now)
            } else {
                let in_flight = |slot: usize| self.members[group.members[slot]].health.in_flight();
                in_flight(a) <= in_flight(b)
            };
            let (first, second) = if a_first { (a, b) } else { (b, a) };
            return self.scan(
                group,
                [first, second].into_iter().chain(tier.range.clone()),
                None,
                at,
                soonest,
            );
        }
        let schedule = &tier.schedule;
        let offset = start % schedule.len();
        let order = schedule[offset..]
            .iter()
            .chain(&schedule[..offset])
            .copied();
        self.scan(group, order, None, at, soonest)
    }

    /// `least_latency`'s cost of the member at `slot`: its latency estimate (plus a
    /// microsecond, so that estimates that decayed to nothing still compare by load) times
    /// its attempts in flight + 1. One that has no estimate yet (new, or restored after an
    /// ejection) is seeded with the median of the tier's estimates, so that it neither takes
    /// every request (as zero would) nor none; the tier is scanned once per seeding, not per
    /// request. While nothing is known, all compare by their attempts in flight alone.
    fn latency_cost(&self, group: &Group, tier: &Tier, slot: usize, now: Instant) -> f64 {
        const FLOOR: f64 = 1e-6;
        let health = &self.members[group.members[slot]].health;
        let decay = self.latency_decay;
        let in_flight = health.in_flight();
        let estimate = health.latency_estimate(now, decay).or_else(|| {
            if !self.scored.load(Ordering::Relaxed) {
                return None;
            }
            let mut known: Vec<f64> = tier
                .range
                .clone()
                .filter_map(|s| {
                    self.members[group.members[s]]
                        .health
                        .latency_estimate(now, decay)
                })
                .collect();
            if known.is_empty() {
                return None;
            }
            let middle = known.len() / 2;
            let (_, median, _) = known.select_nth_unstable_by(middle, f64::total_cmp);
            let median = *median;
            health.seed_latency(median, now);
            Some(median)
        });
        (estimate.unwrap_or(0.0) + FLOOR) * (in_flight + 1) as f64
    }

    /// The deployment of `group` to fall back to after `failed`: the rest of its tier in list
    /// order, wrapping around, then the other tiers by priority; never one in `tried`.
    pub(crate) fn next(
        &self,
        group: &Group,
        failed: &Pick,
        tried: &[bool],
        at: &Asking<'_>,
        soonest: &mut Soonest,
    ) -> Option<Pick> {
        let start = group.counter.fetch_add(1, Ordering::Relaxed);
        group.tiers.iter().find_map(|tier| {
            let range = tier.range.clone();
            let pivot = if range.contains(&failed.slot) {
                failed.slot + 1
            } else {
                range.start + start % range.len()
            };
            let order = (pivot..range.end).chain(range.start..pivot);
            self.scan(group, order, Some(tried), at, soonest)
        })
    }

    /// The first deployment of `group`, by priority, that `allowed` lets through and that
    /// admits a request (rare paths only: it allocates).
    pub(crate) fn first_allowed(
        &self,
        group: &Group,
        at: &Asking<'_>,
        allowed: impl Fn(&Member, usize) -> bool,
    ) -> Option<Pick> {
        let refused: Vec<bool> = self
            .members
            .iter()
            .enumerate()
            .map(|(index, member)| !allowed(member, index))
            .collect();
        let slots = 0..group.members.len();
        self.scan(group, slots, Some(&refused), at, &mut Soonest::default())
    }

    /// The first of `slots` (positions in `group`) that admits a request.
    fn scan(
        &self,
        group: &Group,
        slots: impl Iterator<Item = usize>,
        tried: Option<&[bool]>,
        at: &Asking<'_>,
        soonest: &mut Soonest,
    ) -> Option<Pick> {
        // Members already found closed in this scan (weighted schedules repeat members).
        let mut closed: Vec<usize> = Vec::new();
        for slot in slots {
            let index = group.members[slot];
            if tried.is_some_and(|t| t[index]) || closed.contains(&index) {
                continue;
            }
            let admission = self.members[index]
                .health
                .admit_needing(at.now, &|| at.needs.tokens());
            match admission {
                Admission::Open | Admission::Probation => {
                    let single_try = matches!(admission, Admission::Probation);
                    return Some(Pick {
                        index,
                        slot,
                        probe: None,
                        single_try,
                    });
                }
                Admission::Probe(guard) => {
                    return Some(Pick {
                        index,
                        slot,
                        probe: Some(guard),
                        single_try: true,
                    });
                }
                Admission::Closed(until) => {
                    soonest.offer(index, slot, until);
                    closed.push(index);
                }
            }
        }
        None
    }
}

impl Group {
    /// A group of these members (indexes, in priority order), in tiers by priority.
    fn new(members: Vec<usize>, all: &[Member], strategy: Strategy) -> Self {
        let priority = |slot: usize| all[members[slot]].endpoint.priority();
        let mut tiers: Vec<Tier> = Vec::new();
        for slot in 0..members.len() {
            match tiers.last_mut() {
                Some(tier) if priority(tier.range.start) == priority(slot) => {
                    tier.range.end = slot + 1;
                }
                _ => tiers.push(Tier {
                    range: slot..slot + 1,
                    schedule: Box::new([]),
                }),
            }
        }
        for tier in &mut tiers {
            tier.schedule = match strategy {
                Strategy::Weighted => {
                    let weights: Vec<u64> = tier
                        .range
                        .clone()
                        .map(|slot| u64::from(all[members[slot]].endpoint.weight()))
                        .collect();
                    smooth_weighted_schedule(&weights)
                        .into_iter()
                        .map(|offset| tier.range.start + offset)
                        .collect()
                }
                Strategy::RoundRobin | Strategy::LeastInFlight | Strategy::LeastLatency => {
                    tier.range.clone().collect()
                }
            };
        }
        Self {
            members: members.into_boxed_slice(),
            tiers: tiers.into_boxed_slice(),
            counter: AtomicUsize::new(0),
        }
    }
}

mod asking;
mod schedule;
#[cfg(test)]
mod tests;
