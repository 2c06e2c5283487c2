//! [`LiveRoutes`]: the routes a listener serves, replaceable while it runs (live reload).
//!
//! Every request reads the routes in force when it starts (an `ArcSwap` load: no lock, no
//! shared count written on the way). A request already running keeps the clones it took,
//! so in-flight requests and streams finish on the old configuration, and the old stack
//! (with its health checker) goes away when the last of them ends: connections hold no
//! routes of their own between requests.

use std::fmt;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
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
/// assert_eq!(live.replace(Router::new(), 2), 2);
/// ```
#[derive(Clone)]
pub struct LiveRoutes(Arc<ArcSwap<(u64, Routes)>>);

impl LiveRoutes {
    /// Routes at generation 1.
    pub fn new(routes: impl Into<Routes>) -> Self {
        Self(Arc::new(ArcSwap::from_pointee((1, routes.into()))))
    }

    /// Serves `routes`, as configuration `generation`, from the next request on; returns
    /// the generation.
    pub fn replace(&self, routes: impl Into<Routes>, generation: u64) -> u64 {
        self.0.store(Arc::new((generation, routes.into())));
        generation
    }

    /// The generation of the routes served now.
    pub fn generation(&self) -> u64 {
        self.0.load().0
    }

    /// The routes in force now.
    pub(crate) fn load(&self) -> Guard<Arc<(u64, Routes)>> {
        self.0.load()
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
