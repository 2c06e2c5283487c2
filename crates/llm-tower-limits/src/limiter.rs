//! [`Limiter`]: where each client's counts are kept, in this process or in a store that
//! replicas share, and what admitting and settling a request there gives.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use crate::local::Counts;
use crate::settings::Limits;
#[cfg(feature = "redis")]
use crate::store::{LimitsStore, OnStoreDown};

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
    /// The store could not be asked, and `on_store_down` is `deny`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    StoreDown,
}

/// Where an admitted request was counted, and so where it is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counted {
    /// In this process (no store, or the store down and `on_store_down: allow`).
    Here,
    /// In the store the replicas share.
    #[cfg(feature = "redis")]
    Store,
}

/// What an admitted request took: its standings, what it reserved (tokens at most the
/// limit), and the budget period it was charged to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Admission {
    pub(crate) standings: Standings,
    pub(crate) reserved: Estimate,
    pub(crate) period: Option<u64>,
    pub(crate) counted: Counted,
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

impl BudgetStanding {
    pub(crate) fn new(usd: f64, spent: f64, reset: Duration) -> Self {
        Self {
            usd,
            spent,
            remaining: (usd - spent).max(0.0),
            reset,
        }
    }
}

fn seconds<S: serde::Serializer>(wait: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(wait.as_secs_f64())
}

/// Every client's standing against its limits: counted in this process, or, given a
/// [`LimitsStore`](crate::store::LimitsStore), in Redis where every replica counts. Keep one
/// for the life of the process: a reload that builds a new stack with the same limiter keeps
/// every count.
///
/// ```
/// use llm_tower_limits::{Limiter, Limits};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let limits = Limits { rpm: Some(600), ..Limits::default() };
/// let standing = Limiter::default().standing("team-a", &limits).await;
/// assert_eq!(standing.requests.unwrap().remaining, 600);
/// assert!(standing.tokens.is_none() && standing.budget.is_none());
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Limiter {
    here: Counts,
    #[cfg(feature = "redis")]
    store: Option<LimitsStore>,
}

impl Limiter {
    /// A limiter counting in `store`, which every replica given the same store shares; and
    /// in this process while the store is down, if its settings allow.
    #[cfg(feature = "redis")]
    pub fn shared(store: LimitsStore) -> Self {
        Self {
            here: Counts::default(),
            store: Some(store),
        }
    }

    /// The store it counts in, if any.
    #[cfg(feature = "redis")]
    pub fn store(&self) -> Option<&LimitsStore> {
        self.store.as_ref()
    }

    /// Admits a request of `client` (whose limits are `limits`) expected to use `estimate`,
    /// taking it from every limit; or refuses it, taking nothing.
    #[cfg_attr(not(feature = "redis"), allow(clippy::unused_async))]
    pub(crate) async fn admit(
        &self,
        client: &str,
        limits: &Limits,
        estimate: Estimate,
    ) -> Result<Admission, Refusal> {
        // A request estimated above the whole limit (a large image counted as text) takes the
        // limit, not more: it waits for a full bucket, and does not hold the key back longer.
        let estimate = Estimate {
            tokens: limits
                .tpm
                .map_or(estimate.tokens, |tpm| estimate.tokens.min(tpm)),
            usd: estimate.usd,
        };
        if let Some(budget) = &limits.budget {
            let cost = estimate.usd.unwrap_or(0.0);
            if cost > budget.usd {
                return Err(Refusal::Unaffordable(cost));
            }
        }
        let wall = SystemTime::now();
        #[cfg(feature = "redis")]
        if let Some(store) = &self.store {
            if let Some(decided) = store
                .admit(client, limits, estimate, wall, &self.here)
                .await
            {
                return decided;
            }
            let decision = store.on_store_down();
            crate::store::count_unreachable(decision);
            if decision == OnStoreDown::Deny {
                return Err(Refusal::StoreDown);
            }
        }
        self.here
            .admit(client, limits, estimate, Instant::now(), wall)
    }

    /// Settles a request admitted with `admission` once its usage is known (`None`: it used
    /// nothing that is known — a failed request — and gives everything back but the
    /// request itself), where it was counted.
    pub(crate) fn settle(
        &self,
        client: &str,
        limits: &Limits,
        admission: &Admission,
        used: Option<Estimate>,
    ) {
        let used = used.unwrap_or_default();
        match admission.counted {
            Counted::Here => self.here.settle(
                client,
                limits,
                admission,
                used,
                Instant::now(),
                SystemTime::now(),
            ),
            #[cfg(feature = "redis")]
            Counted::Store => {
                if let Some(store) = &self.store {
                    store.settle(client, limits, admission, used, SystemTime::now());
                }
            }
        }
    }

    /// Where `client` (held to `limits`) stands now: in the store when there is one and it
    /// answers, else in this process.
    #[cfg_attr(not(feature = "redis"), allow(clippy::unused_async))]
    pub async fn standing(&self, client: &str, limits: &Limits) -> ClientStanding {
        #[cfg(feature = "redis")]
        if let Some(store) = &self.store
            && let Some(standing) = store.standing(client, limits, SystemTime::now()).await
        {
            return standing;
        }
        self.here.standing(client, limits)
    }
}

/// The USD to add to the spend of `period` (the current one) when a request admitted with
/// `admission` has used `used`: the difference with its reservation, in the period it was
/// charged to; in a later one (it crossed midnight), all it used, its reservation being an
/// earlier period's.
pub(crate) fn usd_to_settle(admission: &Admission, used: Estimate, period: u64) -> f64 {
    let used = used.usd.unwrap_or(0.0);
    if admission.period == Some(period) {
        used - admission.reserved.usd.unwrap_or(0.0)
    } else {
        used
    }
}
