//! [`FileChanges`]: when a configuration file changed, for `--watch`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long it must hold still before a change counts: an editor's save, or a `cp`, is
/// several writes, and a half-written file would be refused.
const SETTLE: Duration = Duration::from_millis(300);

/// Reports changes to a file, debounced. It polls the file's modification time and length
/// (no file-system notification crate, and it works on every file system, network ones
/// included); a file that disappears and comes back counts as a change.
///
/// ```no_run
/// use llm_tower_gateway::FileChanges;
///
/// # async fn run() {
/// let mut changes = FileChanges::new("gateway.yaml");
/// loop {
///     changes.next().await;
///     println!("gateway.yaml changed");
/// }
/// # }
/// ```
pub struct FileChanges {
    path: PathBuf,
    seen: Option<Stamp>,
}

type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok(), metadata.len()))
}

impl FileChanges {
    /// Watches `path` from now on: what it holds now is not a change.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let seen = stamp(&path);
        Self { path, seen }
    }

    /// Waits for the next change, once the file has held still.
    pub async fn next(&mut self) {
        loop {
            tokio::time::sleep(POLL).await;
            let mut now = stamp(&self.path);
            if now == self.seen {
                continue;
            }
            loop {
                tokio::time::sleep(SETTLE).await;
                let again = stamp(&self.path);
                if again == now {
                    break;
                }
                now = again;
            }
            self.seen = now;
            if now.is_some() {
                return;
            }
        }
    }
}

impl fmt::Debug for FileChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileChanges")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
