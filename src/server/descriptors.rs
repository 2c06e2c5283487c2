//! File descriptors: the process's limit, and how many client connections it allows.
//!
//! Every client connection takes a descriptor, and so does every upstream connection its
//! requests use. A soft `RLIMIT_NOFILE` of 1 024 (the usual default) under a
//! `max_connections` of 10 000 means the cap never acts: the process runs out of descriptors
//! first, and then fails upstream connects and accepts alike. So the gateway raises its soft
//! limit to the hard one at start, and each listener serves at most half of what is left
//! after a small reserve, keeping the other half for upstream connections.
//!
//! Upstream connections follow requests, not client connections: one HTTP/2 connection
//! carries up to `http2_max_concurrent_streams` requests, each with an upstream connection
//! of its own while it streams. So requests in flight are counted too, across the whole
//! process (descriptors are the process's), against that other half: past it, a request is
//! answered 503 `gateway_overloaded` at once rather than left to fail an upstream connect
//! and starve `accept` of descriptors.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors kept for what is not a connection: listeners, the runtime, logs, Redis.
const RESERVED: u64 = 64;

/// Raises this process's soft limit of open files to its hard limit. Returns the soft limit
/// in force afterwards (`None` where there is none to read).
///
/// ```
/// let limit = llm_tower_gateway::raise_descriptor_limit();
/// # #[cfg(unix)]
/// assert!(limit.is_some_and(|soft| soft > 0));
/// ```
pub fn raise_descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(soft) => Some(soft),
            Err(err) => {
                tracing::warn!(%err, "could not raise the limit of open files");
                soft_limit()
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

fn soft_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Descriptors a side (client connections, upstream connections) may have, out of a soft
/// limit of open files.
fn half_of(soft: u64) -> usize {
    usize::try_from(soft.saturating_sub(RESERVED) / 2)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The requests in flight in the whole process, each holding (or about to hold) an
/// upstream connection.
#[derive(Debug)]
pub(crate) struct RequestSlots {
    limit: usize,
    used: AtomicUsize,
}

impl RequestSlots {
    /// The process's slots, sized from its limit of open files when first asked for.
    pub(crate) fn of_process() -> &'static Self {
        static SLOTS: OnceLock<RequestSlots> = OnceLock::new();
        SLOTS.get_or_init(|| Self {
            limit: soft_limit().map_or(usize::MAX, half_of),
            used: AtomicUsize::new(0),
        })
    }

    /// A slot for one request until it is dropped, if one is free.
    pub(crate) fn take(&'static self) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.limit).then_some(used + 1)
            })
            .ok()
            .map(|_| Slot(self))
    }
}

/// One request's slot, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot(&'static RequestSlots);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The refusal of a request when every slot is taken.
pub(crate) fn no_slot() -> llm_tower::Error {
    tracing::warn!(
        "request refused: as many requests are in flight as the limit of open files allows \
         upstream connections for"
    );
    llm_tower::Error::new(
        llm_tower::ErrorKind::Overloaded,
        "the gateway has as many requests in flight as it can open upstream connections for; \
         retry shortly",
    )
    .with_retry_after(std::time::Duration::from_secs(1))
}

/// The connections a listener may serve: `configured`, or fewer when the descriptors the
/// process may open cannot hold that many with their upstream connections (said once, as a
/// warning).
pub(crate) fn connection_cap(configured: usize) -> usize {
    let Some(soft) = soft_limit() else {
        return configured;
    };
    let affordable = half_of(soft);
    if affordable < configured {
        tracing::warn!(
            max_connections = configured,
            serving = affordable,
            open_files_limit = soft,
            "serving at most {affordable} connections, not max_connections ({configured}): the \
             limit of open files ({soft}) must also hold one upstream connection for each; \
             raise it (ulimit -n, LimitNOFILE=) to serve more"
        );
    }
    affordable.min(configured)
}
