//! Which version of a run is its published one: the commits and the `_SUCCESS` pointer.
//!
//! A run id's versions are numbered 1, 2, ... in the order they were committed. Committing
//! version N is one put-if-absent of `run_id=<id>/_commits/<N>.json`, so of two attempts
//! that both started from version N - 1 exactly one commits; the other's put fails. The
//! newest commit is the truth; `_SUCCESS` is a copy of it, kept for readers (and
//! schedulers' sensors) that wait on one fixed file.

use object_store::{ObjectStoreExt, PutMode};
use serde::{Deserialize, Serialize};

use crate::{
    Manifest, OutputFolder, PublishError, Result, SUCCESS_MARKER, WrittenFile, table_partition,
};

pub const COMMITS_DIR: &str = "_commits";
/// A version's folder inside its run's folder is `attempt=<attempt id>`.
pub const ATTEMPT_PREFIX: &str = "attempt=";

/// One committed version of a run; `_SUCCESS` holds the newest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub run_id: String,
    /// 1 for a run id's first publish, one more for each rerun. Version 0 is a run
    /// published before runs had versions: its files are in the run's folder itself, and
    /// its `_SUCCESS` is empty.
    pub version: u64,
    /// The attempt whose files this version is (empty for version 0).
    pub attempt: String,
    /// The version's folder, relative to the output folder, ending in `/`:
    /// `run_id=<id>/attempt=<attempt>/`.
    pub path: String,
    /// RFC 3339, UTC.
    pub committed_at: String,
}

impl Commit {
    fn legacy(run_id: &str) -> Commit {
        Commit {
            run_id: run_id.to_string(),
            version: 0,
            attempt: String::new(),
            path: format!("{}/", OutputFolder::run_dir(run_id)),
            committed_at: String::new(),
        }
    }
}

/// `<table>/run_id=<id>/_SUCCESS`: the commit that published the table's files in the
/// partition, and which they are, for a loader that waits on its table's partition alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableCommit {
    pub table: String,
    #[serde(flatten)]
    pub commit: Commit,
    /// The table's files of the version, relative to the partition (the folder of this
    /// `_SUCCESS`): during a rerun the partition also holds the files of the version
    /// being replaced, which a loader reading these never sees.
    pub files: Vec<String>,
}

/// One [`TableCommit`] per table among `files` (published names), in table order.
pub(crate) fn table_commits(commit: &Commit, files: &[WrittenFile]) -> Vec<TableCommit> {
    let tables = files.iter().filter_map(|file| {
        let part = file.table.as_ref()?;
        Some((part.table.as_str(), file.name.as_str()))
    });
    commits_of_tables(commit, tables)
}

/// One [`TableCommit`] per table of `files` (table, published name), in table order.
fn commits_of_tables<'a>(
    commit: &Commit,
    files: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<TableCommit> {
    let mut tables: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (table, name) in files {
        let partition = table_partition(table, &commit.run_id);
        let name = name.strip_prefix(&partition).unwrap_or(name);
        tables.entry(table).or_default().push(name.to_string());
    }
    tables
        .into_iter()
        .map(|(table, files)| TableCommit {
            table: table.to_string(),
            commit: commit.clone(),
            files,
        })
        .collect()
}

/// `run_id=<id>/_commits/<version>.json`, zero-padded so that names sort as numbers.
pub(crate) fn commit_name(run_id: &str, version: u64) -> String {
    format!(
        "{}/{COMMITS_DIR}/{version:020}.json",
        OutputFolder::run_dir(run_id)
    )
}

/// The version a commit file's name stands for.
pub(crate) fn version_of(commit_file: &str) -> Option<u64> {
    commit_file.strip_suffix(".json")?.parse().ok()
}

impl OutputFolder {
    /// The versions committed for `run_id`, oldest first.
    pub(crate) async fn commit_versions(&self, run_id: &str) -> Result<Vec<u64>> {
        let dir = format!("{}/{COMMITS_DIR}/", OutputFolder::run_dir(run_id));
        let mut versions: Vec<u64> = self
            .list(&dir)
            .await?
            .iter()
            .filter_map(|meta| version_of(meta.location.filename()?))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    pub(crate) async fn read_commit(&self, run_id: &str, version: u64) -> Result<Commit> {
        let name = commit_name(run_id, version);
        let bytes = self
            .read(&name)
            .await?
            .ok_or_else(|| PublishError::Corrupt {
                url: self.url_of(&name),
                message: "listed but gone: was the run's folder deleted meanwhile?".to_string(),
            })?;
        serde_json::from_slice(&bytes).map_err(|error| PublishError::Corrupt {
            url: self.url_of(&name),
            message: format!("not a segflow commit: {error}"),
        })
    }

    /// The published version of `run_id`: its newest commit, or version 0 for a run
    /// published before runs had versions; `None` when the run was never published.
    pub async fn published(&self, run_id: &str) -> Result<Option<Commit>> {
        if let Some(&newest) = self.commit_versions(run_id).await?.last() {
            return self.read_commit(run_id, newest).await.map(Some);
        }
        let success = format!("{}/{SUCCESS_MARKER}", OutputFolder::run_dir(run_id));
        Ok(self.read(&success).await?.map(|_| Commit::legacy(run_id)))
    }

    /// Points `run_id=<id>/_SUCCESS` at `commit`; then, should a newer version have been
    /// committed meanwhile, at that one, so the pointer never ends on a version its
    /// publisher may already be deleting. Returns the commit `_SUCCESS` names.
    pub(crate) async fn point_success_at(&self, commit: &Commit) -> Result<Commit> {
        let success = format!("{}/{SUCCESS_MARKER}", OutputFolder::run_dir(&commit.run_id));
        let json = serde_json::to_vec_pretty(commit).expect("a commit serialises");
        self.put(&success, json, PutMode::Overwrite).await?;
        let newest = self.commit_versions(&commit.run_id).await?;
        match newest.last() {
            Some(&version) if version > commit.version => {
                let newer = self.read_commit(&commit.run_id, version).await?;
                let json = serde_json::to_vec_pretty(&newer).expect("a commit serialises");
                self.put(&success, json, PutMode::Overwrite).await?;
                Ok(newer)
            }
            _ => Ok(commit.clone()),
        }
    }

    /// Writes `<table>/run_id=<id>/_SUCCESS` for `marker`.
    pub(crate) async fn point_table_success_at(&self, marker: &TableCommit) -> Result<()> {
        let name = format!(
            "{}{SUCCESS_MARKER}",
            table_partition(&marker.table, &marker.commit.run_id)
        );
        let json = serde_json::to_vec_pretty(marker).expect("a commit serialises");
        self.put(&name, json, PutMode::Overwrite).await
    }

    /// Points every table's `_SUCCESS` at `commit`, from its `manifest` (a version published
    /// before tables had folders has none to point): what a crash between the run's
    /// `_SUCCESS` and the tables' left undone, before the version they name is deleted.
    pub(crate) async fn point_tables_at(&self, commit: &Commit, manifest: &Manifest) -> Result<()> {
        if manifest.schema_version < crate::TABLE_FOLDERS_SINCE {
            return Ok(());
        }
        let files = manifest
            .files
            .iter()
            .filter_map(|file| Some((file.table.as_deref()?, file.path.as_str())));
        for marker in commits_of_tables(commit, files) {
            self.point_table_success_at(&marker).await?;
        }
        Ok(())
    }

    /// Whether `run_id=<id>/_SUCCESS` names the run's newest commit (a crash between a
    /// commit and the pointer leaves it on the version before).
    pub(crate) async fn success_lags(&self, run_id: &str) -> Result<Option<Commit>> {
        let Some(&newest) = self.commit_versions(run_id).await?.last() else {
            return Ok(None);
        };
        let success = format!("{}/{SUCCESS_MARKER}", OutputFolder::run_dir(run_id));
        let pointed: Option<Commit> = self
            .read(&success)
            .await?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if pointed.is_some_and(|commit| commit.version == newest) {
            return Ok(None);
        }
        self.read_commit(run_id, newest).await.map(Some)
    }

    /// The bytes of `name`, or `None` when there is no such file.
    pub(crate) async fn read(&self, name: &str) -> Result<Option<bytes::Bytes>> {
        let got = match self.store.get(&self.path(name)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(PublishError::store("reading", self.url_of(name))(error)),
        };
        got.bytes()
            .await
            .map(Some)
            .map_err(PublishError::store("reading", self.url_of(name)))
    }
}
