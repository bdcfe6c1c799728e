//! What a run would leave behind if its process were stopped (SIGTERM, Ctrl-C) before it
//! ends: its attempt's staging folder and its spill folder. The run records them here as
//! it makes them; whoever catches the signal removes them without waiting for the run,
//! which may be deep in a query that does not yield.
//!
//! Spill folders are named `segflow-<pid>-…` (see [`SPILL_PREFIX`]), so that `segflow gc`
//! can tell those of dead processes ([`dead_spill_folders`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use segflow_pipeline::Url;
use segflow_publish::{STAGING_DIR, StagingLeftover};

use crate::output::remove_empty_local_dirs;

/// A run's spill folder is `<spill dir>/segflow-<pid>-<random>/`.
pub const SPILL_PREFIX: &str = "segflow-";

/// The staging folder and local folders of the run under way, if any.
#[derive(Debug, Clone, Default)]
pub struct Leftovers {
    inner: Arc<Mutex<Recorded>>,
}

#[derive(Debug, Default)]
struct Recorded {
    /// The attempt's staging folder, and the output folder it is in.
    staging: Option<(StagingLeftover, Url)>,
    dirs: Vec<PathBuf>,
}

impl Leftovers {
    pub(crate) fn staging(&self, staging: Option<(StagingLeftover, Url)>) {
        self.lock().staging = staging;
    }

    pub(crate) fn dir(&self, dir: &Path) {
        self.lock().dirs.push(dir.to_path_buf());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // A panic elsewhere cannot leave the list half-changed: every change is one push
        // or one assignment.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes what the run recorded; returns what was removed and what could not be, one
    /// line each.
    pub async fn remove(&self) -> (Vec<String>, Vec<String>) {
        let (staging, dirs) = {
            let mut recorded = self.lock();
            (recorded.staging.take(), std::mem::take(&mut recorded.dirs))
        };
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        if let Some((staging, output)) = staging {
            match staging.remove().await {
                Ok(files) => removed.push(format!("{} ({files} files)", staging.url())),
                Err(error) => failed.push(format!("{}: {error}", staging.url())),
            }
            remove_empty_local_dirs(&output, STAGING_DIR);
        }
        for dir in dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => removed.push(dir.display().to_string()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => failed.push(format!("{}: {error}", dir.display())),
            }
        }
        (removed, failed)
    }
}

/// A new spill folder for this process's run in `base` (the system's temporary folder by
/// default), removed when dropped.
pub(crate) fn spill_folder(base: Option<&Path>) -> std::io::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    let prefix = format!("{SPILL_PREFIX}{}-", std::process::id());
    builder.prefix(&prefix);
    match base {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            builder.tempdir_in(dir)
        }
        None => builder.tempdir(),
    }
}

/// Spill folders in `base` (the system's temporary folder by default) left by segflow
/// processes that are gone, untouched for `older_than`. A process is known to be gone only
/// where `/proc` tells (Linux); elsewhere none is.
pub fn dead_spill_folders(base: Option<&Path>, older_than: Duration) -> Vec<PathBuf> {
    let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let proc = Path::new("/proc/self");
    if !proc.exists() {
        return Vec::new();
    }
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut dead: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .filter(|entry| {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|name| name.strip_prefix(SPILL_PREFIX))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
            else {
                return false;
            };
            let modified = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .unwrap_or_else(|_| SystemTime::now());
            !Path::new(&format!("/proc/{pid}")).exists() && modified < cutoff
        })
        .map(|entry| entry.path())
        .collect();
    dead.sort();
    dead
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spill_folders_of_gone_processes_are_found_and_live_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        let live = spill_folder(Some(base.path())).unwrap();
        // No process has this id (Linux ids stay below 2^22).
        let gone = base.path().join(format!("{SPILL_PREFIX}4294967290-abc"));
        std::fs::create_dir(&gone).unwrap();
        let unrelated = base.path().join("segflow-notes");
        std::fs::create_dir(&unrelated).unwrap();
        let found = dead_spill_folders(Some(base.path()), Duration::ZERO);
        if Path::new("/proc/self").exists() {
            assert_eq!(found, [gone]);
        } else {
            assert!(found.is_empty());
        }
        assert!(live.path().exists());
    }
}
