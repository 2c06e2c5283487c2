//! [`LimitsStore`]: admissions, settlements and standings in Redis, one script each.
//!
//! - An admission waits for Redis at most `timeout` (50 ms by default). Without an answer —
//!   no connection, a lost one, a slow server, a refused script — it is decided as
//!   `on_store_down` says, counted in `llm_tower_limits_store_unreachable_total{decision}`,
//!   and warned of (once per outage when the connection goes, at most once a minute for
//!   calls that fail on a live connection).
//! - The admission's call runs in a task of its own: one that Redis makes after nobody waits
//!   for it any more (the timeout passed, or the request went) is given back when its answer
//!   comes, request, tokens and cost.
//! - A settlement is sent at once (`settle.rs`), in the order of the requests that end (its script is on
//!   the connection before the client can have read the answer that settles it, unless the
//!   connection's buffer of calls waiting to be written is full), and finished in the
//!   background; one that fails is counted (`llm_tower_limits_store_settle_failed_total`)
//!   and not replayed: the key stays charged its reservation, whatever it used.
//! - Each admission's answer says what the key has spent; the process's own counts keep it,
//!   so that while Redis is down (`allow`) a budget is counted from there, not from 0.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use llm_tower_core::ConfigError;
use redis::aio::MultiplexedConnection;
use redis::{Client, Script, ScriptInvocation};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout};

use super::connection::{Connection, keep};
use super::scripts::{ADMIT_SCRIPT, Keys, STANDING_SCRIPT};
use super::settle::Late;
use super::{LimitsStoreSettings, OnStoreDown};
use crate::limiter::{
    Admission, BudgetStanding, ClientStanding, Counted, Estimate, Refusal, Standing, Standings,
};
use crate::local::Counts;
use crate::period::period_at;
use crate::settings::{Budget, Limits, Period};

/// How long a standing (`/limits`) or a settlement may wait for Redis.
pub(super) const SLOW_CALL: Duration = Duration::from_secs(2);
/// The least time between two warnings of calls that failed on a live connection.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// How long a budget's key outlives its period (a settlement that comes late finds it).
const BUDGET_KEPT_AFTER: Duration = Duration::from_secs(3600);

/// Counts every client's limits in Redis, for every replica given the same server and
/// prefix: give it to a [`Limiter`](crate::Limiter) with
/// [`Limiter::shared`](crate::Limiter::shared). Started with [`LimitsStore::start`]; it
/// connects in the background, reconnects when the connection is lost, and stops when the
/// last clone is dropped.
///
/// ```no_run
/// use std::sync::Arc;
/// use llm_tower_limits::Limiter;
/// use llm_tower_limits::store::{LimitsStore, LimitsStoreSettings};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), llm_tower_core::ConfigError> {
/// let store = LimitsStore::start(&LimitsStoreSettings::new("redis://127.0.0.1:6379"))?;
/// // Give it to `LimitsLayer::limiter` (or `Upstream::limiter`), and keep it across reloads.
/// let limiter = Arc::new(Limiter::shared(store));
/// # drop(limiter);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LimitsStore {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) connection: Connection,
    /// The server, for logs: the password replaced.
    pub(super) url: String,
    pub(super) prefix: String,
    on_store_down: OnStoreDown,
    timeout: Duration,
    last_warned: Mutex<Option<Instant>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The task holds it weakly: woken, it finds it gone and ends.
        self.connection.wake().notify_one();
    }
}

impl Shared {
    /// What admission does while the store is down, for the warnings.
    pub(super) fn meanwhile(&self) -> &'static str {
        match self.on_store_down {
            OnStoreDown::Allow => "admitting on this replica's own counts (on_store_down: allow)",
            OnStoreDown::Deny => {
                "refusing the requests of clients with limits (on_store_down: deny)"
            }
        }
    }
}

/// What [`LimitsStore::status`] reports.
///
/// ```
/// let status = llm_tower_limits::store::LimitsStoreStatus::default();
/// assert_eq!(serde_json::to_value(status).unwrap()["connected"], false);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LimitsStoreStatus {
    /// Connected right now.
    pub connected: bool,
}

impl LimitsStore {
    /// Starts counting in the Redis server of `settings`. Returns at once: connecting is a
    /// background task's business (until it has connected, the store is down), and a server
    /// that is down is retried with backoff.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for invalid settings, or when called outside a Tokio
    /// runtime (the task needs one).
    pub fn start(settings: &LimitsStoreSettings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let url = settings.redis.to_string();
        let client = Client::open(settings.redis.expose()).map_err(|_| {
            ConfigError::invalid("limits_store.redis", format!("`{url}` is not a Redis URL"))
        })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::invalid(
                "limits_store",
                "sharing limits needs a Tokio runtime: start the store inside one",
            )
        })?;
        touch_counters();
        let shared = Arc::new(Shared {
            connection: Connection::new(),
            url,
            prefix: settings.prefix.clone(),
            on_store_down: settings.on_store_down,
            timeout: settings.timeout,
            last_warned: Mutex::new(None),
        });
        let wake = shared.connection.wake();
        runtime.spawn(keep(Arc::downgrade(&shared), client, wake));
        Ok(Self { shared })
    }

    /// Whether it is connected.
    pub fn status(&self) -> LimitsStoreStatus {
        LimitsStoreStatus {
            connected: *self.shared.connection.connected().borrow(),
        }
    }

    /// Waits until it is connected (or `within` has passed: `false`).
    pub async fn connected(&self, within: Duration) -> bool {
        let mut connected = self.shared.connection.connected();
        timeout(within, connected.wait_for(|up| *up)).await.is_ok()
    }

    pub(crate) fn on_store_down(&self) -> OnStoreDown {
        self.shared.on_store_down
    }

    /// Admits a request in Redis: `Some` with the decision, or `None` when Redis did not
    /// decide in time (see `on_store_down`). The call runs in a task of its own: an
    /// admission nobody waits for any more (it took too long, or its request went) that
    /// Redis makes all the same is given back when its answer comes.
    pub(crate) async fn admit(
        &self,
        client: &str,
        limits: &Limits,
        estimate: Estimate,
        wall: SystemTime,
        here: &Counts,
    ) -> Option<Result<Admission, Refusal>> {
        let (number, mut connection) = self.shared.connection.get()?;
        let budget = limits
            .budget
            .map(|budget| (budget, period_at(budget.per, wall)));
        let mut invocation = self.on_client(&ADMIT_SCRIPT, client, limits, budget);
        invocation
            .arg(estimate.tokens)
            .arg(budget.map_or(0.0, |(b, _)| b.usd))
            .arg(estimate.usd.unwrap_or(0.0))
            .arg(ttl_ms(budget.map(|(_, (_, left))| left)));
        let (answer, mut answered) = oneshot::channel();
        let late = Late {
            store: self.clone(),
            client: client.to_owned(),
            limits: limits.clone(),
            estimate,
            budget,
        };
        tokio::spawn(async move {
            let reply = invocation.invoke_async::<Vec<i64>>(&mut connection).await;
            if let Err(Ok(reply)) = answer.send(reply)
                && reply.first() == Some(&0)
            {
                late.give_back();
            }
        });
        let reply = match timeout(self.shared.timeout, &mut answered).await {
            Ok(Ok(reply)) => reply,
            // Too late; unless the answer came as the wait ended, it is given back.
            Err(_) => {
                answered.close();
                let Ok(reply) = answered.try_recv() else {
                    self.warn(&format!("no answer within {:?}", self.shared.timeout));
                    return None;
                };
                reply
            }
            Ok(Err(_)) => return None,
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) => {
                self.shared.connection.failed(number, &err);
                self.warn(&err.to_string());
                return None;
            }
        };
        let period = budget.map(|(_, (period, _))| period);
        let decided = match reply.as_slice() {
            [0, requests, requests_reset, tokens, tokens_reset, spent] => {
                note_spent(here, client, period, *spent);
                Ok(Admission {
                    standings: Standings {
                        requests: standing(limits.rpm, *requests, *requests_reset),
                        tokens: standing(limits.tpm, *tokens, *tokens_reset),
                    },
                    reserved: estimate,
                    period,
                    counted: Counted::Store,
                })
            }
            [1, wait] => Err(Refusal::Requests(millis(*wait))),
            [2, wait] => Err(Refusal::Tokens(millis(*wait))),
            [3, spent] => {
                note_spent(here, client, period, *spent);
                Err(Refusal::Budget(
                    budget.map_or(Duration::ZERO, |(_, (_, left))| left),
                ))
            }
            _ => {
                self.warn(&format!("the admission script answered {reply:?}"));
                return None;
            }
        };
        Some(decided)
    }

    /// Where `client` stands in Redis, or `None` when Redis does not answer.
    pub(crate) async fn standing(
        &self,
        client: &str,
        limits: &Limits,
        wall: SystemTime,
    ) -> Option<ClientStanding> {
        let budget = limits
            .budget
            .map(|budget| (budget, period_at(budget.per, wall)));
        let invocation = self.on_client(&STANDING_SCRIPT, client, limits, budget);
        let (requests, requests_reset, tokens, tokens_reset, spent): (i64, i64, i64, i64, String) =
            self.call(&invocation, SLOW_CALL).await?;
        Some(ClientStanding {
            requests: standing(limits.rpm, requests, requests_reset),
            tokens: standing(limits.tpm, tokens, tokens_reset),
            budget: budget.map(|(budget, (_, left))| {
                BudgetStanding::new(budget.usd, spent.parse().unwrap_or(0.0), left)
            }),
        })
    }

    /// `script` on `client`'s keys — its buckets, and its budget's in the period `budget`
    /// is in — with its rpm and tpm (0: none) as its first arguments.
    pub(super) fn on_client<'a>(
        &self,
        script: &'a Script,
        client: &str,
        limits: &Limits,
        budget: Option<(Budget, (u64, Duration))>,
    ) -> ScriptInvocation<'a> {
        let prefix = &self.shared.prefix;
        let keys = Keys::new(prefix, client);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(keys.requests)
            .key(keys.tokens)
            .key(Keys::budget(
                prefix,
                client,
                budget.map(|(b, (period, _))| (marker(b.per), period)),
            ))
            .arg(limits.rpm.unwrap_or(0))
            .arg(limits.tpm.unwrap_or(0));
        invocation
    }

    /// Runs `invocation` on the connection within `limit`: `None` without a connection, an
    /// answer in time, or with an error (a lost connection is made again).
    async fn call<T: redis::FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        limit: Duration,
    ) -> Option<T> {
        let (number, mut connection) = self.shared.connection.get()?;
        match timeout(limit, invoke(invocation, &mut connection)).await {
            Ok(Ok(reply)) => Some(reply),
            Ok(Err(err)) => {
                self.shared.connection.failed(number, &err);
                self.warn(&err.to_string());
                None
            }
            Err(_) => {
                self.warn(&format!("no answer within {limit:?}"));
                None
            }
        }
    }

    /// Warns of a call that failed on a live connection, at most once a minute.
    fn warn(&self, why: &str) {
        let now = Instant::now();
        let mut last = self
            .shared
            .last_warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
            tracing::debug!(redis = %self.shared.url, error = why, "limits store call failed");
            return;
        }
        *last = Some(now);
        tracing::warn!(
            redis = %self.shared.url,
            error = why,
            "a call to the limits store failed; {}",
            self.shared.meanwhile()
        );
    }
}

async fn invoke<T: redis::FromRedisValue>(
    invocation: &ScriptInvocation<'_>,
    connection: &mut MultiplexedConnection,
) -> redis::RedisResult<T> {
    invocation.invoke_async(connection).await
}

impl std::fmt::Debug for LimitsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitsStore")
            .field("redis", &self.shared.url)
            .field("prefix", &self.shared.prefix)
            .field("on_store_down", &self.shared.on_store_down)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Keeps in `here` what Redis says `client` has spent in `period`, for this replica's own
/// counts to start from should Redis go (`on_store_down: allow`): a fleet then overspends a
/// budget by what is left of it per replica, not by a whole budget.
fn note_spent(here: &Counts, client: &str, period: Option<u64>, micro_usd: i64) {
    if let Some(period) = period {
        here.note_spent(client, period, micro_usd as f64 / 1e6);
    }
}

/// Which kind of period a budget key counts in.
pub(super) fn marker(per: Period) -> char {
    match per {
        Period::Day => 'd',
        Period::Month => 'm',
    }
}

/// How long a budget key is kept: past its period's end (`left`).
pub(super) fn ttl_ms(left: Option<Duration>) -> u64 {
    left.map_or(1, |left| {
        u64::try_from((left + BUDGET_KEPT_AFTER).as_millis()).unwrap_or(u64::MAX)
    })
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A limit's standing from a script's reply (`remaining` -1: no such limit).
fn standing(limit: Option<u64>, remaining: i64, reset_ms: i64) -> Option<Standing> {
    Some(Standing {
        limit: limit?,
        remaining: u64::try_from(remaining).ok()?,
        reset: millis(reset_ms),
    })
}

/// Admissions decided without the store, by what was decided.
pub(crate) fn count_unreachable(decision: OnStoreDown) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "llm_tower_limits_store_unreachable_total",
        "decision" => match decision {
            OnStoreDown::Allow => "allowed",
            OnStoreDown::Deny => "denied",
        }
    )
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = decision;
}

/// The store's series, at 0 from the start (a dashboard shows them before the first outage).
fn touch_counters() {
    #[cfg(feature = "metrics")]
    {
        for decision in ["allowed", "denied"] {
            metrics::counter!("llm_tower_limits_store_unreachable_total", "decision" => decision)
                .increment(0);
        }
        metrics::counter!("llm_tower_limits_store_settle_failed_total").increment(0);
    }
}
