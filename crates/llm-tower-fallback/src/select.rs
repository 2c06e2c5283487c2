//! Endpoint selection: priority tiers, strategies, fallback order.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use llm_tower_core::Endpoint;
use tokio::time::Instant;

use crate::health::{Admission, EndpointHealth, ProbeGuard};
use crate::registry::HealthRegistry;
use crate::settings::Strategy;

/// Longest weighted schedule; larger weight totals are scaled down proportionally.
const MAX_SCHEDULE: u64 = 4096;

pub(crate) struct Member {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) health: Arc<EndpointHealth>,
    tier: usize,
}

struct Tier {
    range: Range<usize>,
    /// Member indexes in the order the strategy visits them (each at least once).
    schedule: Box<[usize]>,
}

/// The chosen endpoint; `probe` is set when the request is its half-open probe.
#[derive(Debug)]
pub(crate) struct Pick {
    pub(crate) index: usize,
    pub(crate) probe: Option<ProbeGuard>,
}

/// The endpoints of one balancer, sorted by priority (stable), with their health cells.
pub(crate) struct Pool {
    pub(crate) members: Box<[Member]>,
    tiers: Box<[Tier]>,
    strategy: Strategy,
    counter: AtomicUsize,
}

/// Tracks the member whose cooldown ends first among those that refused a request.
#[derive(Default)]
pub(crate) struct Soonest(pub(crate) Option<(usize, Instant)>);

impl Soonest {
    fn offer(&mut self, index: usize, until: Instant) {
        if self.0.is_none_or(|(_, best)| until < best) {
            self.0 = Some((index, until));
        }
    }
}

impl Pool {
    pub(crate) fn new(
        endpoints: Vec<Endpoint>,
        registry: &HealthRegistry,
        strategy: Strategy,
    ) -> Self {
        let mut endpoints = endpoints;
        endpoints.sort_by_key(Endpoint::priority);
        let mut members: Vec<Member> = Vec::with_capacity(endpoints.len());
        let mut tiers: Vec<Tier> = Vec::new();
        for (index, endpoint) in endpoints.into_iter().enumerate() {
            if tiers
                .last()
                .is_none_or(|t| members[t.range.start].endpoint.priority() != endpoint.priority())
            {
                tiers.push(Tier {
                    range: index..index,
                    schedule: Box::new([]),
                });
            }
            let tier = tiers.len() - 1;
            tiers[tier].range.end = index + 1;
            members.push(Member {
                health: registry.cell(endpoint.id()),
                endpoint: Arc::new(endpoint),
                tier,
            });
        }
        for tier in &mut tiers {
            tier.schedule = match strategy {
                Strategy::Weighted => {
                    let weights: Vec<u64> = members[tier.range.clone()]
                        .iter()
                        .map(|m| u64::from(m.endpoint.weight()))
                        .collect();
                    smooth_weighted_schedule(&weights)
                        .into_iter()
                        .map(|offset| tier.range.start + offset)
                        .collect()
                }
                Strategy::RoundRobin | Strategy::LeastInFlight => tier.range.clone().collect(),
            };
        }
        Self {
            members: members.into_boxed_slice(),
            tiers: tiers.into_boxed_slice(),
            strategy,
            counter: AtomicUsize::new(0),
        }
    }

    /// The first endpoint for a request: the best available tier, then the strategy.
    /// On the healthy path this reads one atomic counter and one health flag.
    pub(crate) fn first(&self, now: Instant, soonest: &mut Soonest) -> Option<Pick> {
        let start = self.counter.fetch_add(1, Ordering::Relaxed);
        self.tiers
            .iter()
            .find_map(|tier| self.pick_in_tier(tier, start, now, soonest))
    }

    fn pick_in_tier(
        &self,
        tier: &Tier,
        start: usize,
        now: Instant,
        soonest: &mut Soonest,
    ) -> Option<Pick> {
        let len = tier.range.len();
        if self.strategy == Strategy::LeastInFlight && len > 1 {
            let a = tier.range.start + fastrand::usize(..len);
            let mut b = tier.range.start + fastrand::usize(..len - 1);
            if b >= a {
                b += 1;
            }
            let (first, second) =
                if self.members[a].health.in_flight() <= self.members[b].health.in_flight() {
                    (a, b)
                } else {
                    (b, a)
                };
            return self.scan(
                [first, second].into_iter().chain(tier.range.clone()),
                None,
                now,
                soonest,
            );
        }
        let schedule = &tier.schedule;
        let offset = start % schedule.len();
        let order = schedule[offset..]
            .iter()
            .chain(&schedule[..offset])
            .copied();
        self.scan(order, None, now, soonest)
    }

    /// The endpoint to fall back to after `failed`: the rest of its tier in list order,
    /// wrapping around, then the other tiers by priority; never one in `tried`.
    pub(crate) fn next(
        &self,
        failed: usize,
        tried: &[bool],
        now: Instant,
        soonest: &mut Soonest,
    ) -> Option<Pick> {
        let start = self.counter.fetch_add(1, Ordering::Relaxed);
        let failed_tier = self.members[failed].tier;
        self.tiers.iter().enumerate().find_map(|(t, tier)| {
            let range = tier.range.clone();
            let pivot = if t == failed_tier {
                failed + 1
            } else {
                range.start + start % range.len()
            };
            let order = (pivot..range.end).chain(range.start..pivot);
            self.scan(order, Some(tried), now, soonest)
        })
    }

    fn scan(
        &self,
        order: impl Iterator<Item = usize>,
        tried: Option<&[bool]>,
        now: Instant,
        soonest: &mut Soonest,
    ) -> Option<Pick> {
        // Members already found closed in this scan (weighted schedules repeat members).
        let mut closed: Vec<usize> = Vec::new();
        for index in order {
            if tried.is_some_and(|t| t[index]) || closed.contains(&index) {
                continue;
            }
            match self.members[index].health.admit(now) {
                Admission::Open => return Some(Pick { index, probe: None }),
                Admission::Probe(guard) => {
                    return Some(Pick {
                        index,
                        probe: Some(guard),
                    });
                }
                Admission::Closed(until) => {
                    soonest.offer(index, until);
                    closed.push(index);
                }
            }
        }
        None
    }
}

/// Smooth weighted round-robin (nginx): a sequence in which each index appears in proportion
/// to its weight, spread out evenly.
fn smooth_weighted_schedule(weights: &[u64]) -> Vec<usize> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        for w in &mut weights {
            *w = (*w * MAX_SCHEDULE / total).max(1);
        }
    }
    let total: u64 = weights.iter().sum();
    let total_signed = i64::try_from(total).unwrap_or(i64::MAX);
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += i64::try_from(*w).unwrap_or(i64::MAX);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total_signed;
            best
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_schedule_is_proportional_and_spread() {
        assert_eq!(smooth_weighted_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted_schedule(&[2, 2]), [0, 1]);
        let big = smooth_weighted_schedule(&[1_000_000, 1]);
        assert!(big.len() as u64 <= MAX_SCHEDULE + 1);
        assert!(big.contains(&1));
    }
}
