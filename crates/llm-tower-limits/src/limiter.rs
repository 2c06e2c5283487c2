//! [`Limiter`]: each client's buckets and spend, in this process. Admission takes what a
//! request needs from every limit at once, under one lock, or nothing: a request refused by
//! its budget has not used up a request of its minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use crate::bucket::Bucket;
use crate::period::period_at;
use crate::settings::Limits;

/// What a request is expected to use, reserved when it is admitted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Estimate {
    pub(crate) tokens: u64,
    /// `None`: the model has no price.
    pub(crate) usd: Option<f64>,
}

/// Why a request was not admitted, and when it could be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Refusal {
    Requests(Duration),
    Tokens(Duration),
    Budget(Duration),
    /// Its estimated cost alone is above the budget: it never fits.
    Unaffordable(f64),
}

/// What an admitted request took: its standings, what it reserved (tokens at most the
/// limit), and the budget period it was charged to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Admission {
    pub(crate) standings: Standings,
    pub(crate) reserved: Estimate,
    pub(crate) period: Option<u64>,
}

/// Where a client stands against one per-minute limit.
///
/// ```
/// use std::time::Duration;
/// use llm_tower_limits::Standing;
///
/// let standing = Standing { limit: 600, remaining: 590, reset: Duration::from_secs(1) };
/// assert_eq!(serde_json::to_value(standing).unwrap()["reset_seconds"], 1.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Standing {
    /// The limit.
    pub limit: u64,
    /// What may be taken now.
    pub remaining: u64,
    /// How long until all of it may be taken again.
    #[serde(rename = "reset_seconds", serialize_with = "seconds")]
    pub reset: Duration,
}

/// The requests and tokens standings of an admitted request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Standings {
    pub(crate) requests: Option<Standing>,
    pub(crate) tokens: Option<Standing>,
}

/// Where a client stands against its budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BudgetStanding {
    /// The budget, USD.
    pub usd: f64,
    /// What was spent in the period (reservations of requests under way included).
    pub spent: f64,
    /// What is left.
    pub remaining: f64,
    /// How long until the period ends.
    #[serde(rename = "reset_seconds", serialize_with = "seconds")]
    pub reset: Duration,
}

/// Where a client stands against each of its limits (`/limits`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClientStanding {
    /// Requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<Standing>,
    /// Tokens per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Standing>,
    /// The budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStanding>,
}

fn seconds<S: serde::Serializer>(wait: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(wait.as_secs_f64())
}

#[derive(Debug, Default)]
struct Client {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// The budget period's number, and what was spent in it.
    spent: Option<(u64, f64)>,
}

/// Every client's standing against its limits, in this process. Keep one for the life of the
/// process: a reload that builds a new stack with the same limiter keeps every count.
///
/// ```
/// use llm_tower_limits::Limiter;
///
/// let limiter = Limiter::default();
/// # let _ = limiter;
/// ```
#[derive(Debug, Default)]
pub struct Limiter {
    clients: Mutex<HashMap<Arc<str>, Client>>,
}

impl Limiter {
    /// Admits a request of `client` (whose limits are `limits`) expected to use `estimate`,
    /// taking it from every limit; or refuses it, taking nothing.
    pub(crate) fn admit(
        &self,
        client: &str,
        limits: &Limits,
        estimate: Estimate,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Admission, Refusal> {
        let mut clients = self.lock();
        if !clients.contains_key(client) {
            clients.insert(client.into(), Client::default());
        }
        let Some(state) = clients.get_mut(client) else {
            unreachable!("inserted above");
        };
        let requests = limits
            .rpm
            .map(|rpm| (rpm, bucket(&mut state.requests, rpm, now)));
        if let Some((rpm, bucket)) = &requests
            && !bucket.holds(1.0, *rpm)
        {
            return Err(Refusal::Requests(bucket.wait_for(1.0, *rpm)));
        }
        let tokens = limits
            .tpm
            .map(|tpm| (tpm, bucket(&mut state.tokens, tpm, now)));
        // A request estimated above the whole limit (a large image counted as text) takes the
        // limit, not more: it waits for a full bucket, and does not hold the key back longer.
        let reserved_tokens = limits
            .tpm
            .map_or(estimate.tokens, |tpm| estimate.tokens.min(tpm));
        let needs = reserved_tokens as f64;
        if let Some((tpm, bucket)) = &tokens
            && !bucket.holds(needs, *tpm)
        {
            return Err(Refusal::Tokens(bucket.wait_for(needs, *tpm)));
        }
        let mut charged = None;
        if let Some(budget) = &limits.budget {
            let cost = estimate.usd.unwrap_or(0.0);
            if cost > budget.usd {
                return Err(Refusal::Unaffordable(cost));
            }
            let (period, left) = period_at(budget.per, wall);
            let spent = spent_in(&mut state.spent, period);
            if spent + cost > budget.usd {
                return Err(Refusal::Budget(left));
            }
            state.spent = Some((period, spent + cost));
            charged = Some(period);
        }
        let mut standings = Standings::default();
        if let Some((rpm, mut bucket)) = requests {
            bucket.take(1.0);
            standings.requests = Some(standing(&bucket, rpm));
            state.requests = Some(bucket);
        }
        if let Some((tpm, mut bucket)) = tokens {
            bucket.take(needs);
            standings.tokens = Some(standing(&bucket, tpm));
            state.tokens = Some(bucket);
        }
        Ok(Admission {
            standings,
            reserved: Estimate {
                tokens: reserved_tokens,
                usd: estimate.usd,
            },
            period: charged,
        })
    }

    /// Settles a request admitted with `reserved` once its usage is known (`None`: it used
    /// nothing that is known — a failed request — and gives everything back but the
    /// request itself).
    pub(crate) fn settle(
        &self,
        client: &str,
        limits: &Limits,
        admission: &Admission,
        used: Option<Estimate>,
        now: Instant,
        wall: SystemTime,
    ) {
        let reserved = admission.reserved;
        let used = used.unwrap_or_default();
        let mut clients = self.lock();
        let Some(state) = clients.get_mut(client) else {
            return;
        };
        if let (Some(tpm), Some(bucket)) = (limits.tpm, state.tokens.as_mut()) {
            bucket.refill(tpm, now);
            let over = used.tokens as f64 - reserved.tokens as f64;
            if over > 0.0 {
                bucket.take(over);
            } else {
                bucket.give_back(-over, tpm);
            }
        }
        if let Some(budget) = &limits.budget {
            let (period, _) = period_at(budget.per, wall);
            let spent = spent_in(&mut state.spent, period);
            let used = used.usd.unwrap_or(0.0);
            // Settled in the period it was charged to; in a later one (it crossed midnight),
            // what it used is spent there, and its reservation, an earlier period's, is not
            // taken off.
            let spent = if admission.period == Some(period) {
                spent + used - reserved.usd.unwrap_or(0.0)
            } else {
                spent + used
            };
            state.spent = Some((period, spent.max(0.0)));
        }
    }

    /// Where `client` (held to `limits`) stands now.
    ///
    /// ```
    /// use llm_tower_limits::{Limiter, Limits};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let limits = Limits { rpm: Some(600), ..Limits::default() };
    /// let standing = Limiter::default().standing("team-a", &limits);
    /// assert_eq!(standing.requests.unwrap().remaining, 600);
    /// assert!(standing.tokens.is_none() && standing.budget.is_none());
    /// # }
    /// ```
    pub fn standing(&self, client: &str, limits: &Limits) -> ClientStanding {
        let now = Instant::now();
        let clients = self.lock();
        let state = clients.get(client);
        let per_minute = |limit: Option<u64>, bucket: Option<Bucket>| {
            let limit = limit?;
            let mut bucket = bucket.unwrap_or_else(|| Bucket::full(limit, now));
            bucket.refill(limit, now);
            Some(standing(&bucket, limit))
        };
        let budget = limits.budget.map(|budget| {
            let (period, reset) = period_at(budget.per, SystemTime::now());
            let spent = state
                .and_then(|state| state.spent)
                .filter(|(of, _)| *of == period)
                .map_or(0.0, |(_, spent)| spent);
            BudgetStanding {
                usd: budget.usd,
                spent,
                remaining: (budget.usd - spent).max(0.0),
                reset,
            }
        });
        ClientStanding {
            requests: per_minute(limits.rpm, state.and_then(|s| s.requests)),
            tokens: per_minute(limits.tpm, state.and_then(|s| s.tokens)),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Client>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The client's bucket for a limit, refilled to `now` (a copy, stored back on admission).
fn bucket(slot: &mut Option<Bucket>, limit: u64, now: Instant) -> Bucket {
    let bucket = slot.get_or_insert_with(|| Bucket::full(limit, now));
    bucket.refill(limit, now);
    *bucket
}

/// What was spent in `period` (a spend of an earlier period is over).
fn spent_in(slot: &mut Option<(u64, f64)>, period: u64) -> f64 {
    slot.filter(|(of, _)| *of == period)
        .map_or(0.0, |(_, spent)| spent)
}

fn standing(bucket: &Bucket, limit: u64) -> Standing {
    Standing {
        limit,
        remaining: bucket.remaining(),
        reset: bucket.until_full(limit),
    }
}
