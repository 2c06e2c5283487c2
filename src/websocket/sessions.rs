//! The WebSocket sessions of this process, per deployment: in the metrics
//! (`llm_tower_websocket_sessions_total`, `llm_tower_websocket_open`,
//! `llm_tower_websocket_closed_total{code}`) and in `/upstreams` ([`Sockets`]). A reload
//! keeps the counts: they are the process's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// Every deployment's sessions, for `/upstreams`.
#[derive(Debug, Default)]
pub(crate) struct Sockets(Mutex<BTreeMap<String, DeploymentSockets>>);

/// One deployment's sessions: opened since start, open now, and closed by code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct DeploymentSockets {
    pub(crate) opened: u64,
    pub(crate) open: u64,
    pub(crate) closed: BTreeMap<String, u64>,
}

impl Sockets {
    /// Every deployment's sessions now.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, DeploymentSockets> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DeploymentSockets>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One session, counted open until [`closed`](Self::closed).
pub(crate) struct Session {
    deployment: String,
    sockets: Arc<Sockets>,
}

impl Session {
    pub(crate) fn opened(deployment: &str, sockets: &Arc<Sockets>) -> Self {
        let deployment = deployment.to_owned();
        metrics::counter!("llm_tower_websocket_sessions_total", "deployment" => deployment.clone())
            .increment(1);
        metrics::gauge!("llm_tower_websocket_open", "deployment" => deployment.clone())
            .increment(1.0);
        {
            let mut counts = sockets.lock();
            let counts = counts.entry(deployment.clone()).or_default();
            counts.opened += 1;
            counts.open += 1;
        }
        Self {
            deployment,
            sockets: sockets.clone(),
        }
    }

    pub(crate) fn closed(self, code: u16) {
        let label = code_label(code);
        {
            let mut counts = self.sockets.lock();
            let counts = counts.entry(self.deployment.clone()).or_default();
            counts.open = counts.open.saturating_sub(1);
            *counts.closed.entry(label.clone()).or_default() += 1;
        }
        metrics::gauge!("llm_tower_websocket_open", "deployment" => self.deployment.clone())
            .decrement(1.0);
        metrics::counter!(
            "llm_tower_websocket_closed_total",
            "deployment" => self.deployment,
            "code" => label
        )
        .increment(1);
    }
}

/// A close code as a label: the protocol's own codes (1000–1015) as they are, the ranges
/// applications and libraries may use as `3xxx` and `4xxx`: a peer cannot make a series per
/// code it invents.
fn code_label(code: u16) -> String {
    match code {
        1000..=1015 => code.to_string(),
        3000..=3999 => "3xxx".to_owned(),
        4000..=4999 => "4xxx".to_owned(),
        _ => "other".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_counted_per_deployment_and_close_code_bucket() {
        let sockets = Arc::new(Sockets::default());
        let a = Session::opened("a", &sockets);
        let b = Session::opened("a", &sockets);
        assert_eq!(sockets.snapshot()["a"].open, 2);
        a.closed(1000);
        b.closed(4321);
        let counts = &sockets.snapshot()["a"];
        assert_eq!((counts.opened, counts.open), (2, 0));
        let closed: Vec<_> = counts
            .closed
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(closed, [("1000", 1), ("4xxx", 1)]);
    }
}
