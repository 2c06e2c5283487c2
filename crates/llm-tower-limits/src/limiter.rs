//! [`Limiter`]: each client's buckets and spend, in this process. Admission takes what a
//! request needs from every limit at once, under one lock, or nothing: a request refused by
//! its budget has not used up a request of its minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

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
}

/// One limit's standing after an admission, for the response headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Standing {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    pub(crate) reset: Duration,
}

/// The requests and tokens standings of an admitted request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Standings {
    pub(crate) requests: Option<Standing>,
    pub(crate) tokens: Option<Standing>,
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
    ) -> Result<Standings, Refusal> {
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
        let needs = estimate.tokens as f64;
        if let Some((tpm, bucket)) = &tokens
            && !bucket.holds(needs, *tpm)
        {
            return Err(Refusal::Tokens(bucket.wait_for(needs, *tpm)));
        }
        if let Some(budget) = &limits.budget {
            let (period, left) = period_at(budget.per, wall);
            let spent = spent_in(&mut state.spent, period);
            if spent + estimate.usd.unwrap_or(0.0) > budget.usd {
                return Err(Refusal::Budget(left));
            }
            state.spent = Some((period, spent + estimate.usd.unwrap_or(0.0)));
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
        Ok(standings)
    }

    /// Settles a request admitted with `reserved` once its usage is known (`None`: it used
    /// nothing that is known — a failed request — and gives everything back but the
    /// request itself).
    pub(crate) fn settle(
        &self,
        client: &str,
        limits: &Limits,
        reserved: Estimate,
        used: Option<Estimate>,
        now: Instant,
        wall: SystemTime,
    ) {
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
            let delta = used.usd.unwrap_or(0.0) - reserved.usd.unwrap_or(0.0);
            state.spent = Some((period, (spent + delta).max(0.0)));
        }
    }

    /// What `client` spent in the current period of its budget.
    pub fn spent(&self, client: &str, limits: &Limits) -> f64 {
        let Some(budget) = &limits.budget else {
            return 0.0;
        };
        let (period, _) = period_at(budget.per, SystemTime::now());
        self.lock()
            .get(client)
            .and_then(|state| state.spent)
            .filter(|(of, _)| *of == period)
            .map_or(0.0, |(_, spent)| spent)
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
