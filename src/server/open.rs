//! [`OpenConnections`]: the connections a listener serves, so that at the connection cap the
//! one idle longest can be closed to make room for a newcomer.
//!
//! At the cap, established clients keep their connections, and new ones wait. But a
//! keep-alive connection with nothing in flight holds its descriptor for nothing until its
//! idle timeout: a client that opens connections and leaves them idle could keep everyone
//! else out for that long. So when a newcomer arrives at the cap, the connection idle the
//! longest is closed (HTTP allows a server to close an idle keep-alive connection at any
//! time; its client opens another when it needs one). It is closed by aborting its task,
//! which costs the connections nothing while they are served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::AbortHandle;

use super::conn::ConnState;

/// The connections being served; `Clone` shares them.
#[derive(Clone, Default)]
pub(crate) struct OpenConnections(Arc<Inner>);

#[derive(Default)]
struct Inner {
    states: Mutex<HashMap<u64, (Arc<ConnState>, AbortHandle)>>,
    next: AtomicU64,
}

impl OpenConnections {
    /// A place for a connection about to be served, kept by its task and given up when the
    /// task ends; [`add`](Self::add) fills it.
    pub(crate) fn counted(&self) -> Counted {
        Counted {
            open: self.clone(),
            id: self.0.next.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The connection of `state`, served by `task`, in the place `id` its [`Counted`]
    /// holds. Its task may have ended already: then it is not added.
    pub(crate) fn add(&self, id: u64, state: Arc<ConnState>, task: AbortHandle) {
        if !task.is_finished() {
            self.lock().insert(id, (state, task));
        }
    }

    /// Closes the connection idle the longest; `false` when none is idle.
    pub(crate) fn close_longest_idle(&self) -> bool {
        let mut states = self.lock();
        // A task that ended as it was being added left its place behind.
        states.retain(|_, (_, task)| !task.is_finished());
        let longest = states
            .values()
            .filter_map(|(state, task)| state.idle_since().map(|since| (since, task)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, task)) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Arc<ConnState>, AbortHandle)>> {
        self.0.states.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's place among the open ones, given up on drop.
pub(crate) struct Counted {
    open: OpenConnections,
    id: u64,
}

impl Counted {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A connection's stand-in: a task that runs until aborted.
    fn served(open: &OpenConnections, state: &Arc<ConnState>) -> tokio::task::JoinHandle<()> {
        let counted = open.counted();
        let id = counted.id();
        let task = tokio::spawn(async move {
            let _counted = counted;
            std::future::pending::<()>().await;
        });
        open.add(id, state.clone(), task.abort_handle());
        task
    }

    #[tokio::test(start_paused = true)]
    async fn the_connection_idle_longest_is_closed_and_a_busy_one_never() {
        let open = OpenConnections::default();
        let (older, newer, busy) = (ConnState::new(), ConnState::new(), ConnState::new());
        let tasks = [
            served(&open, &older),
            served(&open, &newer),
            served(&open, &busy),
        ];
        busy.request_started();
        older.request_started();
        older.request_finished();
        tokio::time::advance(Duration::from_secs(1)).await;
        newer.request_started();
        newer.request_finished();
        assert!(open.close_longest_idle());
        let [older_task, newer_task, busy_task] = tasks;
        assert!(older_task.await.unwrap_err().is_cancelled());
        assert_eq!(open.lock().len(), 2, "its place is given up");
        assert!(open.close_longest_idle(), "the newer one is next");
        assert!(newer_task.await.unwrap_err().is_cancelled());
        assert!(!open.close_longest_idle(), "the busy one is never closed");
        assert!(!busy_task.is_finished());
        busy_task.abort();
    }
}
