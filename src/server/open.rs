//! [`OpenConnections`]: the connections a listener serves, so that at the connection cap the
//! one idle longest can be closed to make room for a newcomer.
//!
//! At the cap, established clients keep their connections, and new ones wait. But a
//! keep-alive connection with nothing in flight holds its descriptor for nothing until its
//! idle timeout: a client that opens connections and leaves them idle could keep everyone
//! else out for that long. So when a newcomer arrives at the cap, the connection idle the
//! longest is closed (HTTP allows a server to close an idle keep-alive connection at any
//! time; its client opens another when it needs one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::conn::ConnState;

/// The connections being served; `Clone` shares them.
#[derive(Clone, Default)]
pub(crate) struct OpenConnections(Arc<Inner>);

#[derive(Default)]
struct Inner {
    states: Mutex<HashMap<u64, Arc<ConnState>>>,
    next: AtomicU64,
}

impl OpenConnections {
    /// Counts `state` in until the returned guard drops.
    pub(crate) fn add(&self, state: Arc<ConnState>) -> Counted {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, state);
        Counted {
            open: self.clone(),
            id,
        }
    }

    /// Asks the connection idle the longest to close; `false` when none is idle.
    pub(crate) fn close_longest_idle(&self) -> bool {
        let states = self.lock();
        let longest = states
            .values()
            .filter_map(|state| state.idle_since().map(|since| (since, state)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, state)) => {
                state.evict();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.0.states.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's place among the open ones, given up on drop.
pub(crate) struct Counted {
    open: OpenConnections,
    id: u64,
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

    #[tokio::test(start_paused = true)]
    async fn the_connection_idle_longest_is_asked_to_close_and_a_busy_one_never() {
        let open = OpenConnections::default();
        let (older, newer, busy) = (ConnState::new(), ConnState::new(), ConnState::new());
        let counted = [
            open.add(older.clone()),
            open.add(newer.clone()),
            open.add(busy.clone()),
        ];
        busy.request_started();
        older.request_started();
        older.request_finished();
        tokio::time::advance(Duration::from_secs(1)).await;
        newer.request_started();
        newer.request_finished();
        assert!(open.close_longest_idle());
        // The older idle one hears it at once; the newer one hears nothing.
        tokio::time::timeout(Duration::ZERO, older.evicted())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::ZERO, newer.evicted())
                .await
                .is_err()
        );
        // A connection that began a request since it was asked stays.
        newer.evict();
        newer.request_started();
        assert!(
            tokio::time::timeout(Duration::ZERO, newer.evicted())
                .await
                .is_err()
        );
        drop(counted);
        assert!(!open.close_longest_idle(), "none left");
    }
}
