//! [`Counts`]: each client's buckets and spend in this process. Admission takes what a
//! request needs from every limit at once, under one lock, or nothing: a request refused by
//! its budget has not used up a request of its minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::time::Instant;

use crate::bucket::Bucket;
use crate::limiter::{
    Admission, BudgetStanding, ClientStanding, Counted, Estimate, Refusal, Standing, Standings,
    usd_to_settle,
};
use crate::period::period_at;
use crate::settings::Limits;

#[derive(Debug, Default)]
struct Client {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    /// The budget period's number, and what was spent in it.
    spent: Option<(u64, f64)>,
}

/// Every client's counts in this process.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    clients: Mutex<HashMap<Arc<str>, Client>>,
}

impl Counts {
    /// Admits a request of `client` (held to `limits`) expected to use `estimate` (its
    /// tokens at most the limit, its cost within the budget), taking it from every limit; or
    /// refuses it, taking nothing.
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
        let needs = estimate.tokens as f64;
        if let Some((tpm, bucket)) = &tokens
            && !bucket.holds(needs, *tpm)
        {
            return Err(Refusal::Tokens(bucket.wait_for(needs, *tpm)));
        }
        let mut charged = None;
        if let Some(budget) = &limits.budget {
            let cost = estimate.usd.unwrap_or(0.0);
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
            reserved: estimate,
            period: charged,
            counted: Counted::Here,
        })
    }

    /// Settles a request admitted here with `admission` against what it `used`.
    pub(crate) fn settle(
        &self,
        client: &str,
        limits: &Limits,
        admission: &Admission,
        used: Estimate,
        now: Instant,
        wall: SystemTime,
    ) {
        let reserved = admission.reserved;
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
            let spent = spent + usd_to_settle(admission, used, period);
            state.spent = Some((period, spent.max(0.0)));
        }
    }

    /// Takes `spent` in `period` (what the store counted) as `client`'s spend, unless more
    /// was counted here.
    #[cfg(feature = "redis")]
    pub(crate) fn note_spent(&self, client: &str, period: u64, spent: f64) {
        let mut clients = self.lock();
        if !clients.contains_key(client) {
            clients.insert(client.into(), Client::default());
        }
        if let Some(state) = clients.get_mut(client) {
            let here = spent_in(&mut state.spent, period);
            state.spent = Some((period, here.max(spent)));
        }
    }

    /// Where `client` (held to `limits`) stands now.
    pub(crate) fn standing(&self, client: &str, limits: &Limits) -> ClientStanding {
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
            BudgetStanding::new(budget.usd, spent, reset)
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
