//! What an output folder holds, run by run, and cleaning up after dead runs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use object_store::{ObjectStoreExt, PutMode};
use serde::{Deserialize, Serialize};

use crate::{
    LATEST_FILE, Manifest, OutputFolder, PublishError, RUN_DIR_PREFIX, Result, STAGING_DIR,
    SUCCESS_MARKER,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunStatus {
    /// `run_id=<id>/_SUCCESS` exists: complete, safe to load.
    Published,
    /// `run_id=<id>/` without `_SUCCESS`: a publish that died half way, or one under way.
    Incomplete,
    /// `_staging/<id>/`: a run in progress, or one that died before publishing.
    Staging,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Published => "published",
            RunStatus::Incomplete => "incomplete",
            RunStatus::Staging => "staging",
        }
    }
}

/// One run's folder (published or staging) in an output folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub run_id: String,
    pub status: RunStatus,
    /// Relative to the output folder, ending in `/`.
    pub path: String,
    /// Files in the folder, markers included.
    pub files: usize,
    pub bytes: u64,
    /// The newest file's modification time: when a published run's `_SUCCESS` was
    /// written, or when a staging run last wrote something.
    pub last_modified: DateTime<Utc>,
    /// Whether `_LATEST.json` names this run.
    pub latest: bool,
}

/// `_LATEST.json`: the run published most recently. Written only after that run's
/// `_SUCCESS`, so a loader that follows it always finds a complete run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    pub run_id: String,
    /// The run's folder, relative to the output folder, e.g. `run_id=2011-12-10/`.
    pub path: String,
    pub pipeline: String,
    pub published_at: String,
}

pub(crate) async fn point_latest_at(folder: &OutputFolder, manifest: &Manifest) -> Result<()> {
    let latest = Latest {
        run_id: manifest.run_id.clone(),
        path: format!("{}/", OutputFolder::run_dir(&manifest.run_id)),
        pipeline: manifest.pipeline.clone(),
        published_at: manifest.ended_at.clone(),
    };
    let json = serde_json::to_vec_pretty(&latest).expect("a pointer serialises");
    folder.put(LATEST_FILE, json, PutMode::Overwrite).await
}

impl OutputFolder {
    /// The run `_LATEST.json` names, if any run was published here.
    pub async fn latest(&self) -> Result<Option<Latest>> {
        let bytes = match self.store.get(&self.path(LATEST_FILE)).await {
            Ok(result) => result
                .bytes()
                .await
                .map_err(PublishError::store("reading", self.url_of(LATEST_FILE)))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => {
                return Err(PublishError::store("reading", self.url_of(LATEST_FILE))(
                    error,
                ));
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| PublishError::Corrupt {
                url: self.url_of(LATEST_FILE),
                message: format!("not a segflow latest pointer: {error}"),
            })
    }

    /// Every run folder, published ones first (newest first), then incomplete and staging
    /// ones.
    pub async fn runs(&self) -> Result<Vec<RunEntry>> {
        let latest = self.latest().await?.map(|latest| latest.run_id);
        let mut entries: BTreeMap<(RunStatus, String), RunEntry> = BTreeMap::new();
        let mut published = Vec::new();
        for object in self.list("").await? {
            let name = self.relative(&object.location);
            let Some((status, run_id, rest)) = classify(&name) else {
                continue;
            };
            if status == RunStatus::Incomplete && rest == SUCCESS_MARKER {
                published.push(run_id.to_string());
            }
            let path = match status {
                RunStatus::Staging => format!("{STAGING_DIR}/{run_id}/"),
                _ => format!("{}/", OutputFolder::run_dir(run_id)),
            };
            let entry = entries
                .entry((status, run_id.to_string()))
                .or_insert_with(|| RunEntry {
                    run_id: run_id.to_string(),
                    status,
                    path,
                    files: 0,
                    bytes: 0,
                    last_modified: object.last_modified,
                    latest: false,
                });
            entry.files += 1;
            entry.bytes += object.size;
            entry.last_modified = entry.last_modified.max(object.last_modified);
        }
        let mut runs: Vec<RunEntry> = entries
            .into_values()
            .map(|mut entry| {
                if entry.status == RunStatus::Incomplete && published.contains(&entry.run_id) {
                    entry.status = RunStatus::Published;
                    entry.latest = latest.as_deref() == Some(entry.run_id.as_str());
                }
                entry
            })
            .collect();
        runs.sort_by(|a, b| {
            let rank = |status| match status {
                RunStatus::Published => 0,
                RunStatus::Incomplete => 1,
                RunStatus::Staging => 2,
            };
            rank(a.status)
                .cmp(&rank(b.status))
                .then(b.last_modified.cmp(&a.last_modified))
                .then(a.run_id.cmp(&b.run_id))
        });
        Ok(runs)
    }

    /// Runs that died: staging folders and incomplete published folders whose newest file
    /// is older than `older_than`. A younger one may belong to a run still under way.
    pub async fn stale_runs(&self, older_than: chrono::Duration) -> Result<Vec<RunEntry>> {
        let cutoff = Utc::now() - older_than;
        Ok(self
            .runs()
            .await?
            .into_iter()
            .filter(|run| run.status != RunStatus::Published && run.last_modified < cutoff)
            .collect())
    }

    /// Deletes the folders of `runs` (from [`OutputFolder::stale_runs`]); published runs
    /// are never deleted here.
    pub async fn remove_runs(&self, runs: &[RunEntry]) -> Result<usize> {
        let mut deleted = 0;
        for run in runs.iter().filter(|run| run.status != RunStatus::Published) {
            deleted += self.delete_all(&run.path).await?;
        }
        Ok(deleted)
    }
}

/// `run_id=<id>/<rest>` or `_staging/<id>/<rest>`; anything else is not a run's file.
/// Published folders come back as `Incomplete`: only their `_SUCCESS` tells.
fn classify(name: &str) -> Option<(RunStatus, &str, &str)> {
    if let Some(rest) = name.strip_prefix(&format!("{STAGING_DIR}/")) {
        let (run_id, rest) = rest.split_once('/')?;
        return Some((RunStatus::Staging, run_id, rest));
    }
    let (dir, rest) = name.split_once('/')?;
    let run_id = dir.strip_prefix(RUN_DIR_PREFIX)?;
    Some((RunStatus::Incomplete, run_id, rest))
}
