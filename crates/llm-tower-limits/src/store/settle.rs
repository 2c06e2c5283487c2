//! Settling in Redis: a request's reservation trued up against what it used, and an
//! admission nobody waited for given back. Sent at once, in the order requests end, and
//! finished in the background.

use std::task::{Context, Waker};
use std::time::{Duration, SystemTime};

use tokio::time::timeout;

use super::handle::{LimitsStore, SLOW_CALL, ttl_ms};
use super::scripts::SETTLE_SCRIPT;
use crate::limiter::{Admission, Estimate, usd_to_settle};
use crate::period::period_at;
use crate::settings::{Budget, Limits};

impl LimitsStore {
    /// Settles in Redis a request it admitted.
    pub(crate) fn settle(
        &self,
        client: &str,
        limits: &Limits,
        admission: &Admission,
        used: Estimate,
        wall: SystemTime,
    ) {
        let budget = limits
            .budget
            .map(|budget| (budget, period_at(budget.per, wall)));
        let usd = budget.map_or(0.0, |(_, (period, _))| {
            usd_to_settle(admission, used, period)
        });
        let tokens = i128::from(used.tokens) - i128::from(admission.reserved.tokens);
        self.send_settlement(client, limits, budget, false, tokens, usd);
    }

    /// Sends the settlement script: `request` given back, `tokens` and `usd` taken (or given
    /// back, negative) in the period of `budget`. Polled once here, which puts the script on
    /// the connection now, ahead of any request this answer's client sends next (best
    /// effort: past the connection's buffer of pending commands, it waits its turn); its reply
    /// is awaited in the background.
    pub(super) fn send_settlement(
        &self,
        client: &str,
        limits: &Limits,
        budget: Option<(Budget, (u64, Duration))>,
        request: bool,
        tokens: i128,
        usd: f64,
    ) {
        let tokens = if limits.tpm.is_some() { tokens } else { 0 };
        let request = request && limits.rpm.is_some();
        if tokens == 0 && usd == 0.0 && !request {
            return;
        }
        let Some((number, connection)) = self.shared.connection.get() else {
            count_settle_failed();
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            count_settle_failed();
            return;
        };
        let mut invocation = self.on_client(&SETTLE_SCRIPT, client, limits, budget);
        invocation
            .arg(u8::from(request))
            .arg(i64::try_from(tokens).unwrap_or(if tokens > 0 { i64::MAX } else { i64::MIN }))
            .arg(usd)
            .arg(ttl_ms(budget.map(|(_, (_, left))| left)));
        let shared = self.shared.clone();
        // Unconstrained: a task that has used its budget would find even a free channel
        // busy on the first poll below.
        let mut settling = Box::pin(tokio::task::unconstrained(async move {
            let mut connection = connection;
            match timeout(SLOW_CALL, invocation.invoke_async::<i64>(&mut connection)).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    shared.connection.failed(number, &err);
                    tracing::debug!(error = %err, "a settlement with the limits store failed");
                    count_settle_failed();
                }
                Err(_) => count_settle_failed(),
            }
        }));
        let _entered = runtime.enter();
        if settling
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            runtime.spawn(settling);
        }
    }
}

/// An admission being made in Redis, to give back if nobody waits for it any more.
pub(super) struct Late {
    pub(super) store: LimitsStore,
    pub(super) client: String,
    pub(super) limits: Limits,
    pub(super) estimate: Estimate,
    pub(super) budget: Option<(Budget, (u64, Duration))>,
}

impl Late {
    /// Gives back all the admission took: the request, its tokens and its cost, in the
    /// period it was charged to.
    pub(super) fn give_back(&self) {
        let tokens = -i128::from(self.estimate.tokens);
        let usd = -self.estimate.usd.unwrap_or(0.0);
        let usd = if self.budget.is_some() { usd } else { 0.0 };
        self.store
            .send_settlement(&self.client, &self.limits, self.budget, true, tokens, usd);
    }
}

pub(super) fn count_settle_failed() {
    #[cfg(feature = "metrics")]
    metrics::counter!("llm_tower_limits_store_settle_failed_total").increment(1);
}
