//! What an output folder holds, run by run, and cleaning up after dead runs.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use object_store::{ObjectStoreExt, PutMode};
use serde::{Deserialize, Serialize};

use crate::commits::{commit_name, version_of};
use crate::layout::table_file_run;
use crate::{
    ATTEMPT_PREFIX, COMMITS_DIR, Commit, LATEST_FILE, MANIFEST_FILE, Manifest, OutputFolder,
    PublishError, RUN_DIR_PREFIX, Result, STAGING_DIR, SUCCESS_MARKER, TABLE_FOLDERS_SINCE,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunStatus {
    /// The version of a run its newest commit (and `_SUCCESS`) names: complete, safe to
    /// load.
    Published,
    /// An older version of a run published again since: the publish that superseded it
    /// deletes it, or `gc` does when that publish died first.
    Superseded,
    /// A version folder no commit names: an attempt that died (or lost a race) while
    /// publishing, or one publishing right now.
    Incomplete,
    /// `_staging/<id>/attempt=<a>/`: an attempt in progress, or one that died before
    /// publishing.
    Staging,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Published => "published",
            RunStatus::Superseded => "superseded",
            RunStatus::Incomplete => "incomplete",
            RunStatus::Staging => "staging",
        }
    }
}

/// One folder of a run (a version, or an attempt's staging) in an output folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub run_id: String,
    pub status: RunStatus,
    /// The version, for a published or superseded folder (0: a run published before runs
    /// had versions).
    pub version: Option<u64>,
    /// Relative to the output folder, ending in `/`.
    pub path: String,
    /// The version's files in its tables' folders (relative to the output folder), which
    /// go with it.
    pub table_files: Vec<String>,
    /// Files of the version (in its folder, the manifest included, and in its tables'
    /// folders).
    pub files: usize,
    pub bytes: u64,
    /// The newest file's modification time: about when a version was published, or when
    /// an attempt last wrote something.
    pub last_modified: DateTime<Utc>,
    /// Whether `_LATEST.json` names this run (set on its published version only).
    pub latest: bool,
}

/// `_LATEST.json`: the run published most recently. Written only after that run's commit
/// and `_SUCCESS`, so a loader that follows it always finds a complete run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    pub run_id: String,
    /// The run's folder, relative to the output folder, e.g. `run_id=2011-12-10/`: its
    /// `_SUCCESS` names the version to read.
    pub path: String,
    /// The version published then (absent in pointers written before runs had versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub pipeline: String,
    pub published_at: String,
}

/// The order of runs: `previous`, `latest` and the listing of `segflow runs` follow it, not
/// the time a run was written, so a backfill of an old day stays in its place. Ids compare in
/// natural order: runs of digits as numbers, the rest as text (`run-9` before `run-10`;
/// dates written `YYYY-MM-DD` and segflow's default `YYYYMMDDTHHMMSSZ-<pid>` ids in time
/// order). Ids that differ only in leading zeros fall back to plain text order, so no two
/// distinct ids are equal.
pub fn compare_run_ids(a: &str, b: &str) -> std::cmp::Ordering {
    natord::compare(a, b).then_with(|| a.cmp(b))
}

/// Points `_LATEST.json` at the run just committed, unless it names a run later in run order
/// (this one is a backfill). Returns the run `_LATEST.json` names afterwards.
///
/// Two publishes of different ids at the same moment may both read the old pointer; the one
/// that writes last wins, so the pointer may name the earlier of the two until the next run.
pub(crate) async fn point_latest_at(
    folder: &OutputFolder,
    manifest: &Manifest,
    commit: &Commit,
) -> Result<String> {
    // A pointer that cannot be read is replaced: it is rewritten from the run just committed.
    if let Ok(Some(current)) = folder.latest().await
        && compare_run_ids(&current.run_id, &manifest.run_id).is_gt()
    {
        return Ok(current.run_id);
    }
    let latest = Latest {
        run_id: manifest.run_id.clone(),
        path: format!("{}/", OutputFolder::run_dir(&manifest.run_id)),
        version: Some(commit.version),
        pipeline: manifest.pipeline.clone(),
        published_at: manifest.ended_at.clone(),
    };
    let json = serde_json::to_vec_pretty(&latest).expect("a pointer serialises");
    folder.put(LATEST_FILE, json, PutMode::Overwrite).await?;
    Ok(latest.run_id)
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

    /// Every folder of every run: published versions first (latest first in run order,
    /// [`compare_run_ids`]), then superseded and incomplete versions and staging attempts
    /// (most recently written first).
    pub async fn runs(&self) -> Result<Vec<RunEntry>> {
        let latest = self.latest().await?.map(|latest| latest.run_id);
        let mut folders: BTreeMap<Folder, RunEntry> = BTreeMap::new();
        let mut commits: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut succeeded: BTreeSet<String> = BTreeSet::new();
        let mut table_files = Vec::new();
        for object in self.list("").await? {
            let name = self.relative(&object.location);
            let folder = match classify(&name) {
                Some(RunObject::Commit { run_id, version }) => {
                    commits.entry(run_id.to_string()).or_default().push(version);
                    continue;
                }
                Some(RunObject::Success { run_id }) => {
                    succeeded.insert(run_id.to_string());
                    continue;
                }
                Some(RunObject::InFolder(folder)) => folder,
                Some(RunObject::TableFile(folder)) => {
                    table_files.push((folder, name, object));
                    continue;
                }
                None => continue,
            };
            folders
                .entry(folder.clone())
                .or_insert_with(|| RunEntry::new(&folder, object.last_modified))
                .count(&object);
        }
        // A version's table files count with its folder; an attempt that died while moving
        // its files out of staging has table files and no folder.
        for (folder, name, object) in table_files {
            let entry = folders
                .entry(folder.clone())
                .or_insert_with(|| RunEntry::new(&folder, object.last_modified));
            entry.count(&object);
            entry.table_files.push(name);
        }
        for versions in commits.values_mut() {
            versions.sort_unstable();
        }
        let versions = self.versions_of_attempts(&folders, &commits).await?;
        let mut runs: Vec<RunEntry> = folders
            .into_iter()
            .map(|(folder, mut entry)| {
                let newest = commits.get(&folder.run_id).and_then(|v| v.last()).copied();
                (entry.status, entry.version) = match (&folder.attempt, folder.staging) {
                    (_, true) => (RunStatus::Staging, None),
                    (Some(attempt), false) => {
                        match versions.get(&(folder.run_id.clone(), attempt.clone())) {
                            Some(&version) if Some(version) == newest => {
                                (RunStatus::Published, Some(version))
                            }
                            Some(&version) => (RunStatus::Superseded, Some(version)),
                            None => (RunStatus::Incomplete, None),
                        }
                    }
                    (None, false) if newest.is_some() => (RunStatus::Superseded, Some(0)),
                    (None, false) if succeeded.contains(&folder.run_id) => {
                        (RunStatus::Published, Some(0))
                    }
                    (None, false) => (RunStatus::Incomplete, None),
                };
                entry.latest = entry.status == RunStatus::Published
                    && latest.as_deref() == Some(entry.run_id.as_str());
                entry
            })
            .collect();
        runs.sort_by(|a, b| {
            let by_time = b.last_modified.cmp(&a.last_modified);
            let in_order = match a.status {
                RunStatus::Published => compare_run_ids(&b.run_id, &a.run_id).then(by_time),
                _ => by_time.then(a.run_id.cmp(&b.run_id)),
            };
            a.status.cmp(&b.status).then(in_order)
        });
        Ok(runs)
    }

    /// The manifest of `run_id`'s published version; `None` when it is not published.
    pub async fn published_manifest(&self, run_id: &str) -> Result<Option<Manifest>> {
        match self.published(run_id).await? {
            Some(commit) => self.manifest_at(&commit).await,
            None => Ok(None),
        }
    }

    /// The published run just before `run_id` in run order (the greatest smaller id):
    /// what a run of `run_id` compares itself with, whether `run_id` is the newest day, a
    /// rerun of a day (which is not its own baseline) or a backfill of an old one.
    pub async fn previous_published(&self, run_id: &str) -> Result<Option<RunEntry>> {
        Ok(self
            .runs()
            .await?
            .into_iter()
            .filter(|run| run.status == RunStatus::Published)
            .find(|run| compare_run_ids(&run.run_id, run_id).is_lt()))
    }

    /// Which version each version folder is, read from the runs' commits, newest first,
    /// stopping once every folder of a run is named (a run published many times costs
    /// one read, not one per rerun).
    async fn versions_of_attempts(
        &self,
        folders: &BTreeMap<Folder, RunEntry>,
        commits: &BTreeMap<String, Vec<u64>>,
    ) -> Result<BTreeMap<(String, String), u64>> {
        let mut versions = BTreeMap::new();
        for (run_id, committed) in commits {
            let mut unnamed: BTreeSet<&str> = folders
                .keys()
                .filter(|folder| !folder.staging && &folder.run_id == run_id)
                .filter_map(|folder| folder.attempt.as_deref())
                .collect();
            for &version in committed.iter().rev() {
                if unnamed.is_empty() {
                    break;
                }
                let commit = self.read_commit(run_id, version).await?;
                if unnamed.remove(commit.attempt.as_str()) {
                    versions.insert((run_id.clone(), commit.attempt), version);
                }
            }
        }
        Ok(versions)
    }

    /// Folders of dead attempts and superseded versions whose newest file is older than
    /// `older_than`; a younger attempt may belong to a run still under way. A run's
    /// published version is never among them.
    pub async fn stale_runs(&self, older_than: chrono::Duration) -> Result<Vec<RunEntry>> {
        let cutoff = Utc::now() - older_than;
        Ok(self
            .runs()
            .await?
            .into_iter()
            .filter(|run| run.status != RunStatus::Published && run.last_modified < cutoff)
            .collect())
    }

    /// Deletes the folders of `runs` (from [`OutputFolder::stale_runs`]); published
    /// versions are never deleted here. Before a superseded version goes, its run's
    /// `_SUCCESS` and its tables' are moved on to the newest commit, should a crash have
    /// left them behind.
    pub async fn remove_runs(&self, runs: &[RunEntry]) -> Result<usize> {
        let mut deleted = 0;
        let superseded: BTreeSet<&str> = runs
            .iter()
            .filter(|run| run.status == RunStatus::Superseded)
            .map(|run| run.run_id.as_str())
            .collect();
        for run_id in superseded {
            if let Some(newest) = self.success_lags(run_id).await? {
                self.point_success_at(&newest).await?;
            }
            // The tables' markers and Delta logs may still name the version about to go.
            if let Some(published) = self.published(run_id).await?
                && let Some(manifest) = self.manifest_at(&published).await?
            {
                self.point_tables_at(&published, &manifest).await?;
                self.keep_delta_tables_at(&published, &manifest, false)
                    .await?;
            }
        }
        for run in runs.iter().filter(|run| run.status != RunStatus::Published) {
            for name in &run.table_files {
                self.delete_if_present(name).await?;
                deleted += 1;
            }
            deleted += if run.path.contains(ATTEMPT_PREFIX) {
                self.delete_all(&run.path).await?
            } else {
                self.remove_unversioned(&run.path).await?
            };
        }
        Ok(deleted)
    }

    /// The versions before `current` whose folders are still there (normally just the one
    /// it replaces; more when a publish died before deleting its predecessor). Commits are
    /// read newest first and the search stops at the first version already deleted, so a
    /// run published a thousand times costs a read or two, not a thousand.
    pub(crate) async fn superseded_versions(&self, current: &Commit) -> Result<Vec<u64>> {
        let run_dir = format!("{}/", OutputFolder::run_dir(&current.run_id));
        let present: BTreeSet<String> = self
            .list(&run_dir)
            .await?
            .iter()
            .filter_map(|object| match classify(&self.relative(&object.location)) {
                Some(RunObject::InFolder(Folder {
                    attempt: Some(attempt),
                    staging: false,
                    ..
                })) => Some(attempt),
                _ => None,
            })
            .collect();
        let mut superseded = Vec::new();
        for version in (1..current.version).rev() {
            let commit = self.read_commit(&current.run_id, version).await?;
            if !present.contains(&commit.attempt) {
                break;
            }
            superseded.push(version);
        }
        Ok(superseded)
    }

    /// Deletes `version` of `run_id`, superseded by a newer one: its table files (those its
    /// manifest lists outside its folder), then its folder, so that a crash in between
    /// leaves the folder for the next attempt to find.
    pub(crate) async fn remove_superseded(&self, run_id: &str, version: u64) -> Result<usize> {
        let commit = self.read_commit(run_id, version).await?;
        let run_dir = format!("{}/{ATTEMPT_PREFIX}", OutputFolder::run_dir(run_id));
        if !commit.path.starts_with(&run_dir) {
            return Err(PublishError::Corrupt {
                url: self.url_of(&commit_name(run_id, version)),
                message: format!("names `{}`, not a version folder of the run", commit.path),
            });
        }
        let mut deleted = 0;
        if let Some(manifest) = self.manifest_at(&commit).await? {
            for file in manifest.files.iter().filter(|file| {
                manifest.schema_version >= TABLE_FOLDERS_SINCE
                    && table_file_run(&file.path) == Some((run_id, commit.attempt.as_str()))
            }) {
                self.delete_if_present(&file.path).await?;
                deleted += 1;
            }
        }
        Ok(deleted + self.delete_all(&commit.path).await?)
    }

    /// The manifest of the version `commit` names, if it has one.
    pub(crate) async fn manifest_at(&self, commit: &Commit) -> Result<Option<Manifest>> {
        let name = format!("{}{MANIFEST_FILE}", commit.path);
        let Some(bytes) = self.read(&name).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| PublishError::Corrupt {
                url: self.url_of(&name),
                message: format!("not a segflow manifest: {error}"),
            })
    }

    /// The files of `table` in the version `commit` names, relative to the output folder,
    /// in part order: from its manifest, or for a run published before tables had folders
    /// of their own, from its folder (`<table>/` or `<table>.parquet` there; rejects were in
    /// `_rejects/`).
    pub async fn table_files(&self, commit: &Commit, table: &str) -> Result<Vec<String>> {
        if let Some(manifest) = self.manifest_at(commit).await?
            && manifest.schema_version >= TABLE_FOLDERS_SINCE
        {
            return Ok(manifest
                .files
                .into_iter()
                .filter(|file| file.table.as_deref() == Some(table))
                .map(|file| file.path)
                .collect());
        }
        let legacy = match table.strip_prefix("rejects/") {
            Some(rest) => format!("_rejects/{rest}"),
            None => table.to_string(),
        };
        let inside = format!("{}{legacy}/", commit.path);
        let single = format!("{}{legacy}.parquet", commit.path);
        let mut files: Vec<String> = self
            .list(&inside)
            .await?
            .iter()
            .map(|object| self.relative(&object.location))
            .filter(|name| name.ends_with(".parquet"))
            .collect();
        files.sort();
        if files.is_empty() && self.read(&single).await?.is_some() {
            files.push(single);
        }
        Ok(files)
    }

    /// Deletes the files a run (or its staging) written before runs had versions kept in
    /// the folder `run_dir` itself, leaving its versions, attempts, commits and `_SUCCESS`.
    pub(crate) async fn remove_unversioned(&self, run_dir: &str) -> Result<usize> {
        let mut deleted = 0;
        for object in self.list(run_dir).await? {
            let name = self.relative(&object.location);
            if let Some(RunObject::InFolder(Folder { attempt: None, .. })) = classify(&name) {
                self.delete_if_present(&name).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// A folder of a run: a version (`run_id=<id>/attempt=<a>/`), an attempt's staging
/// (`_staging/<id>/attempt=<a>/`), or, with no attempt, the files of a run (or staging)
/// written before runs had versions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Folder {
    staging: bool,
    run_id: String,
    attempt: Option<String>,
}

impl Folder {
    fn path(&self) -> String {
        let run = if self.staging {
            format!("{STAGING_DIR}/{}/", self.run_id)
        } else {
            format!("{}/", OutputFolder::run_dir(&self.run_id))
        };
        match &self.attempt {
            Some(attempt) => format!("{run}{ATTEMPT_PREFIX}{attempt}/"),
            None => run,
        }
    }
}

impl RunEntry {
    fn new(folder: &Folder, last_modified: DateTime<Utc>) -> RunEntry {
        RunEntry {
            run_id: folder.run_id.clone(),
            status: RunStatus::Incomplete,
            version: None,
            path: folder.path(),
            table_files: Vec::new(),
            files: 0,
            bytes: 0,
            last_modified,
            latest: false,
        }
    }

    fn count(&mut self, object: &object_store::ObjectMeta) {
        self.files += 1;
        self.bytes += object.size;
        self.last_modified = self.last_modified.max(object.last_modified);
    }
}

enum RunObject<'a> {
    Commit {
        run_id: &'a str,
        version: u64,
    },
    Success {
        run_id: &'a str,
    },
    InFolder(Folder),
    /// A file in a table's partition of a run, of the version (or attempt) it names.
    TableFile(Folder),
}

/// What a file of the output folder is to its run; `None` for anything else (a table's
/// `_SUCCESS`, `_LATEST.json`).
fn classify(name: &str) -> Option<RunObject<'_>> {
    if let Some((run_id, attempt)) = table_file_run(name) {
        return Some(RunObject::TableFile(Folder {
            staging: false,
            run_id: run_id.to_string(),
            attempt: Some(attempt.to_string()),
        }));
    }
    let (staging, rest) = match name.strip_prefix(&format!("{STAGING_DIR}/")) {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let (dir, rest) = rest.split_once('/')?;
    let run_id = if staging {
        dir
    } else {
        dir.strip_prefix(RUN_DIR_PREFIX)?
    };
    if !staging {
        if rest == SUCCESS_MARKER {
            return Some(RunObject::Success { run_id });
        }
        if let Some(commit) = rest.strip_prefix(&format!("{COMMITS_DIR}/")) {
            return version_of(commit).map(|version| RunObject::Commit { run_id, version });
        }
    }
    let attempt = rest
        .strip_prefix(ATTEMPT_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .map(|(attempt, _)| attempt.to_string());
    Some(RunObject::InFolder(Folder {
        staging,
        run_id: run_id.to_string(),
        attempt,
    }))
}
