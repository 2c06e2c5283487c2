//! File descriptors: the process's limit, and how many client connections it allows.
//!
//! Every client connection takes a descriptor, and so does every upstream connection its
//! requests use. A soft `RLIMIT_NOFILE` of 1 024 (the usual default) under a
//! `max_connections` of 10 000 means the cap never acts: the process runs out of descriptors
//! first, and then fails upstream connects and accepts alike. So the gateway raises its soft
//! limit to the hard one at start, and each listener serves at most half of what is left
//! after a small reserve, keeping the other half for upstream connections.

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

/// The connections a listener may serve: `configured`, or fewer when the descriptors the
/// process may open cannot hold that many with their upstream connections (said once, as a
/// warning).
pub(crate) fn connection_cap(configured: usize) -> usize {
    let Some(soft) = soft_limit() else {
        return configured;
    };
    let affordable = usize::try_from(soft.saturating_sub(RESERVED) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
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
