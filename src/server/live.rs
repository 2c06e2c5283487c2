//! [`LiveRoutes`]: the routes a listener serves, replaceable while it runs (live reload).
//!
//! Each connection keeps the routes it last saw and compares one atomic generation number
//! per request: only after a swap does it take the lock to pick up the new routes. A request
//! already running keeps the stack it started on (its own clones), so in-flight requests
//! and streams finish on the old configuration.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;

use crate::Routes;

/// Routes that can be replaced while they are served; `Clone` shares them.
///
/// ```
/// use axum::Router;
/// use llm_tower_gateway::LiveRoutes;
///
/// let live = LiveRoutes::new(Router::new());
/// assert_eq!(live.generation(), 1);
/// assert_eq!(live.replace(Router::new()), 2);
/// ```
#[derive(Clone)]
pub struct LiveRoutes(Arc<Slot>);

struct Slot {
    generation: AtomicU64,
    routes: RwLock<(u64, Routes)>,
}

impl LiveRoutes {
    /// Routes at generation 1.
    pub fn new(routes: impl Into<Routes>) -> Self {
        Self(Arc::new(Slot {
            generation: AtomicU64::new(1),
            routes: RwLock::new((1, routes.into())),
        }))
    }

    /// Serves `routes` from the next request of every connection on; returns their
    /// generation.
    pub fn replace(&self, routes: impl Into<Routes>) -> u64 {
        let mut slot = self
            .0
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = slot.0 + 1;
        *slot = (generation, routes.into());
        self.0.generation.store(generation, Ordering::Release);
        generation
    }

    /// The generation of the routes served now.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// The routes served now, with their generation.
    pub(crate) fn current(&self) -> (u64, Routes) {
        let slot = self.0.routes.read().unwrap_or_else(PoisonError::into_inner);
        (slot.0, slot.1.clone())
    }
}

impl From<Routes> for LiveRoutes {
    fn from(routes: Routes) -> Self {
        Self::new(routes)
    }
}

impl From<Router> for LiveRoutes {
    fn from(router: Router) -> Self {
        Self::new(router)
    }
}

impl fmt::Debug for LiveRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveRoutes")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}
