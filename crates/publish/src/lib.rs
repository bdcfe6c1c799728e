//! segflow-publish: puts a run's outputs where a warehouse loader will find them, whole.
//!
//! The layout of an output folder:
//!
//! ```text
//! <output>/_staging/<run_id>/attempt=<a>/…                  files of an attempt in progress (or a dead one)
//! <output>/<table>/run_id=<run_id>/part-NNNNN-<a>.parquet   a table's rows in a run: one folder per table,
//!                                                           partitioned by run (see `layout.rs`)
//! <output>/<table>/run_id=<run_id>/_SUCCESS                 the table's part of the newest commit
//! <output>/run_id=<run_id>/attempt=<a>/_MANIFEST.json       a version of a run: what it holds (every file),
//! <output>/run_id=<run_id>/attempt=<a>/model.json, …        and its files that are not tables
//! <output>/run_id=<run_id>/_commits/<N>.json                version N committed: names its attempt
//! <output>/run_id=<run_id>/_SUCCESS                         a copy of the newest commit
//! <output>/_LATEST.json                                     names the latest run in run order
//! ```
//!
//! Every table's rows carry the run's `run_id` (and `as_of`) as columns too
//! (`table_schema.rs`), so a file loaded on its own still says which run it is.
//!
//! Every attempt at a run (each `segflow run`) has an id of its own and stages in a folder
//! of its own; [`OutputFolder::stage`] also notes the run's newest version at that moment.
//! [`Staging::publish`] then, in this order:
//!
//! 1. moves the staged table files to their tables' partitions of the run, under names that
//!    carry the attempt (beside, never over, the files of the version they are to replace),
//!    and the other files to the attempt's version folder; writes its manifest, which lists
//!    every file. Nothing segflow or a waiting loader follows names these files yet;
//! 2. commits: writes `_commits/<N + 1>.json` with a put-if-absent, N being the version
//!    noted at the start. Of two attempts racing for one run id, exactly one succeeds; the
//!    other deletes its files and fails with [`PublishError::PublishedConcurrently`];
//! 3. points `_SUCCESS` at the commit (an overwrite: a reader sees the old pointer or the
//!    new one, never none), writes each table's `<table>/run_id=<id>/_SUCCESS` (the commit
//!    and that table's files), with `format: delta` commits each table's Delta log
//!    (`delta.rs`: the run's partition replaced), then points `_LATEST.json` at the run,
//!    unless it names a run later in run order ([`compare_run_ids`]: a backfill of an old
//!    day leaves it where it is);
//! 4. only then deletes the versions the commit superseded (their table files first, then
//!    their folders), and its staging folder.
//!
//! So a reader that reads `_SUCCESS` (the run's or a table's) and then the files it names
//! sees, at every moment, either the old complete version or the new complete one, on a
//! local folder and on an object store alike. A reader that globs a table's files
//! (`segments/*/*.parquet`) without waiting sees, between steps 1 and 4 of a rerun of a run
//! id, the files of both versions of that run; and a crash between 1 and 2 leaves files no
//! commit names until `segflow gc` removes them (listed as `incomplete` by `segflow
//! runs`). A crash between 2 and 3 leaves `_SUCCESS` on the old version (still whole, as
//! nothing was deleted); the next publish of the run id or `segflow gc` moves it on.
//! [`OutputFolder::stale_runs`] finds dead attempts and superseded versions; the published
//! version is never among them.
//!
//! Runs published before tables had folders of their own (schema version 3 manifests and
//! older) keep their tables inside their version folder; [`OutputFolder::table_files`]
//! reads both.
//!
//! This file is longer than the others on purpose: the protocol above and the code that
//! carries it out (`OutputFolder`, `Staging`, `TableWriter`) are kept together, so that a
//! change to one is seen beside the other. The commit records are in `commits.rs`.

mod commits;
#[cfg(feature = "delta")]
mod delta;
mod layout;
mod manifest;
mod run_files;
mod runs;
mod store_errors;
mod table_schema;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::async_reader::MetadataFetch;
use parquet::arrow::{AsyncArrowWriter, parquet_to_arrow_schema};
use parquet::basic::Compression;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;

pub use commits::{ATTEMPT_PREFIX, COMMITS_DIR, Commit, TableCommit};
pub use layout::{table_name_problem, table_partition};
pub use manifest::{
    MANIFEST_SCHEMA_VERSION, Manifest, ManifestColumn, ManifestFile, ManifestInput, ManifestMetric,
    ManifestTable, RunInfo, TABLE_FOLDERS_SINCE, columns as manifest_columns, type_name,
};
pub use run_files::{RunFiles, RunFilesError};
pub use runs::{Latest, RunEntry, RunStatus, compare_run_ids};
pub use store_errors::{explain, find_store_error};
pub use table_schema::{AS_OF_COLUMN, AsOf, RUN_ID_COLUMN, RunColumns, warehouse_type};

pub type Result<T, E = PublishError> = std::result::Result<T, E>;

pub const SUCCESS_MARKER: &str = "_SUCCESS";
/// Whether this build can keep tables as Delta tables (`format: delta`, feature `delta`).
pub const DELTA_SUPPORTED: bool = cfg!(feature = "delta");
pub const MANIFEST_FILE: &str = "_MANIFEST.json";
pub const LATEST_FILE: &str = "_LATEST.json";
pub const STAGING_DIR: &str = "_staging";
/// Published runs live in Hive-style folders, so engines that read partitioned folders see
/// `run_id` as a column.
pub const RUN_DIR_PREFIX: &str = "run_id=";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    // The underlying error is summarised into the message (not a `source`), so that a
    // report of the whole chain says it once, on one line.
    #[error("{operation} {url}: {}", explain(error))]
    Store {
        operation: &'static str,
        url: String,
        error: object_store::Error,
    },
    #[error("writing Parquet to {url}: {}", explain_parquet(error))]
    Parquet {
        url: String,
        error: parquet::errors::ParquetError,
    },
    #[error("{url}: {message}")]
    Corrupt { url: String, message: String },
    #[error("table `{table}` {message}")]
    Table { table: String, message: String },
    #[error(
        "run `{run_id}` was published as version {version} by another attempt while this one was running ({url} already exists); its output is that attempt's, and this one's was removed"
    )]
    PublishedConcurrently {
        run_id: String,
        version: u64,
        url: String,
    },
}

impl PublishError {
    fn store(operation: &'static str, url: String) -> impl FnOnce(object_store::Error) -> Self {
        move |error| PublishError::Store {
            operation,
            url,
            error,
        }
    }
}

/// A Parquet write fails mostly on its store; say that in the store's terms.
fn explain_parquet(error: &parquet::errors::ParquetError) -> String {
    match find_store_error(error) {
        Some(store_error) => explain(store_error),
        None => error.to_string(),
    }
}

/// A file the run wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenFile {
    /// Staged: relative to the attempt's staging folder, e.g. `segments/part-00000.parquet`.
    /// Published: relative to the output folder, e.g.
    /// `segments/run_id=<id>/part-00000-<attempt>.parquet` or
    /// `run_id=<id>/attempt=<attempt>/model.json`.
    pub name: String,
    /// For a Parquet file: the table it belongs to (e.g. `segments`), its rows and schema.
    pub table: Option<TableFile>,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableFile {
    pub table: String,
    /// The Hive folders its rows are in within the run's partition of the table (e.g.
    /// `country=UK/`), for a table partitioned by some of its columns; empty otherwise.
    pub partition: String,
    pub rows: u64,
    pub schema: SchemaRef,
    /// Nulls per column of `schema`, from the file's statistics (`None` for a nested
    /// column, or a file written without statistics).
    pub nulls: Vec<Option<u64>>,
}

/// Nulls per top-level column of `schema`, summed over the row groups' statistics. A flat
/// column is one leaf of the file's schema; a nested one has several and no single count.
fn null_counts(footer: &ParquetMetaData, schema: &Schema) -> Vec<Option<u64>> {
    let leaves = footer.file_metadata().schema_descr();
    schema
        .fields()
        .iter()
        .map(|field| {
            let mut of_field = (0..leaves.num_columns())
                .filter(|&leaf| leaves.column(leaf).path().parts()[0] == *field.name());
            let leaf = of_field.next()?;
            if of_field.next().is_some() {
                return None;
            }
            footer
                .row_groups()
                .iter()
                .map(|group| group.column(leaf).statistics()?.null_count_opt())
                .sum()
        })
        .collect()
}

impl WrittenFile {
    pub fn rows(&self) -> Option<u64> {
        self.table.as_ref().map(|table| table.rows)
    }
}

/// A published run: where it is and what it holds.
#[derive(Debug, Clone)]
pub struct Published {
    /// The version's folder URL, ending in `/`.
    pub url: String,
    /// The run's folder URL (where `_SUCCESS` is), ending in `/`.
    pub run_url: String,
    /// The output folder's URL, ending in `/`: the files' names are relative to it.
    pub output_url: String,
    pub commit: Commit,
    pub files: Vec<WrittenFile>,
    pub manifest: Manifest,
    /// The run `_LATEST.json` names now: this one, or a later one when this run is a
    /// backfill (`None` when a newer version of this run was committed meanwhile).
    pub latest: Option<String>,
    /// What could not be cleaned up after the commit (a superseded version, the staging
    /// folder): the run is published all the same, and `segflow gc` removes them later.
    pub left_behind: Vec<String>,
}

/// An output folder on a store: `root` is the folder's path in the store, `url` its URL
/// (for messages and reports), ending in `/`.
#[derive(Clone)]
pub struct OutputFolder {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    pub url: String,
    /// `format: delta`: each table is also a Delta table, committed once per run.
    pub delta: bool,
}

impl std::fmt::Debug for OutputFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputFolder({})", self.url)
    }
}

impl OutputFolder {
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, url: &str) -> OutputFolder {
        let url = if url.ends_with('/') {
            url.to_string()
        } else {
            format!("{url}/")
        };
        OutputFolder {
            store,
            root,
            url,
            delta: false,
        }
    }

    /// The folder with its tables kept as Delta tables too (`format: delta`); fails when
    /// this segflow was built without the `delta` feature.
    pub fn with_delta(mut self) -> Result<OutputFolder> {
        if !DELTA_SUPPORTED {
            return Err(PublishError::Corrupt {
                url: self.url.clone(),
                message: "`format: delta` needs segflow built with Delta Lake support: `cargo build --features delta` (or `cargo install --path crates/cli --features delta`)".to_string(),
            });
        }
        self.delta = true;
        Ok(self)
    }

    /// Brings each table's Delta log along to `commit` (whose manifest is `manifest`), if
    /// the table has one (a publish with `format: delta` creates it).
    pub(crate) async fn keep_delta_tables_at(
        &self,
        commit: &Commit,
        manifest: &Manifest,
        create: bool,
    ) -> Result<()> {
        #[cfg(feature = "delta")]
        return self.commit_delta_tables(commit, manifest, create).await;
        #[cfg(not(feature = "delta"))]
        {
            let _ = (commit, manifest, create);
            Ok(())
        }
    }

    /// The footer of the Parquet file `name`, read from its end alone.
    #[cfg_attr(not(feature = "delta"), allow(dead_code))]
    async fn parquet_footer(&self, name: &str) -> Result<ParquetMetaData> {
        let path = self.path(name);
        let url = self.url_of(name);
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(PublishError::store("reading the size of", url.clone()))?;
        ParquetMetaDataReader::new()
            .load_and_finish(
                ObjectRanges {
                    store: self.store.clone(),
                    path,
                },
                meta.size,
            )
            .await
            .map_err(|error| PublishError::Parquet { url, error })
    }

    fn path(&self, name: &str) -> Path {
        join(&self.root, name)
    }

    fn url_of(&self, name: &str) -> String {
        format!("{}{name}", self.url)
    }

    /// `run_id=<run_id>`: the published folder of a run, relative to the output folder.
    pub fn run_dir(run_id: &str) -> String {
        format!("{RUN_DIR_PREFIX}{run_id}")
    }

    /// The URL of a run's published folder, ending in `/`.
    pub fn run_url(&self, run_id: &str) -> String {
        self.url_of(&format!("{}/", Self::run_dir(run_id)))
    }

    /// Starts an attempt at a run: its own staging folder, and the run's newest version
    /// now, which its commit is to follow. Nothing in the published location changes until
    /// [`Staging::publish`].
    pub async fn stage(&self, columns: RunColumns) -> Result<Staging> {
        let run_id = columns.run_id.as_str();
        let base_version = self
            .commit_versions(run_id)
            .await?
            .last()
            .copied()
            .unwrap_or(0);
        let attempt = attempt_id();
        Ok(Staging {
            folder: self.clone(),
            run_id: run_id.to_string(),
            prefix: format!("{STAGING_DIR}/{run_id}/{ATTEMPT_PREFIX}{attempt}"),
            attempt,
            base_version,
            files: Vec::new(),
            columns,
        })
    }

    /// Every object under `prefix` (relative to the folder), with its metadata.
    async fn list(&self, prefix: &str) -> Result<Vec<object_store::ObjectMeta>> {
        self.store
            .list(Some(&self.path(prefix)))
            .try_collect()
            .await
            .map_err(PublishError::store("listing", self.url_of(prefix)))
    }

    /// `path` relative to the folder.
    fn relative(&self, path: &Path) -> String {
        let full = path.as_ref();
        full.strip_prefix(self.root.as_ref())
            .unwrap_or(full)
            .trim_start_matches('/')
            .to_string()
    }

    async fn delete_all(&self, prefix: &str) -> Result<usize> {
        let objects = self.list(prefix).await?;
        for object in &objects {
            let name = self.relative(&object.location);
            self.delete_if_present(&name).await?;
        }
        Ok(objects.len())
    }

    async fn delete_if_present(&self, name: &str) -> Result<()> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(PublishError::store("deleting", self.url_of(name))(error)),
        }
    }

    async fn put(&self, name: &str, bytes: Vec<u8>, mode: PutMode) -> Result<()> {
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&self.path(name), PutPayload::from(bytes), options)
            .await
            .map(|_| ())
            .map_err(PublishError::store("writing", self.url_of(name)))
    }
}

/// Files written for one attempt at a run, not yet visible to loaders.
#[derive(Debug)]
pub struct Staging {
    folder: OutputFolder,
    run_id: String,
    attempt: String,
    /// The run's newest committed version when the attempt started (0: none).
    base_version: u64,
    prefix: String,
    files: Vec<WrittenFile>,
    /// What every table of the run carries as its last columns.
    columns: RunColumns,
}

/// A new attempt's id: the time it started (so that ids sort by it) and a random part (so
/// that two attempts started in the same millisecond differ).
fn attempt_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ"),
        &random[..8]
    )
}

impl Staging {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn attempt(&self) -> &str {
        &self.attempt
    }

    /// The staging folder's URL, ending in `/`. Files written under it by others (a run's
    /// scratch tables) are not published, and go when it is discarded.
    pub fn url(&self) -> String {
        self.folder.url_of(&format!("{}/", self.prefix))
    }

    pub fn files(&self) -> &[WrittenFile] {
        &self.files
    }

    /// The columns every table of the run ends in: what a table written by others (see
    /// [`Staging::adopt_parquet`]) must add itself.
    pub fn run_columns(&self) -> &RunColumns {
        &self.columns
    }

    /// The schema a table of `schema` is published with ([`RunColumns::published_schema`]).
    pub fn published_schema(&self, table: &str, schema: &SchemaRef) -> Result<SchemaRef> {
        if let Some(message) = table_name_problem(table) {
            return Err(PublishError::Table {
                table: table.to_string(),
                message,
            });
        }
        self.columns
            .published_schema(schema)
            .map_err(|message| PublishError::Table {
                table: table.to_string(),
                message,
            })
    }

    /// Writes `batches` as one Snappy-compressed Parquet file named `name` (relative to the
    /// run's folder) holding rows of `table`, streaming through a multipart upload.
    pub async fn write_parquet(
        &mut self,
        table: &str,
        name: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<&WrittenFile> {
        let staged = format!("{}/{name}", self.prefix);
        let url = self.folder.url_of(&staged);
        let parquet_error = |error| PublishError::Parquet {
            url: url.clone(),
            error,
        };
        let schema = self.published_schema(table, &schema)?;
        let writer = BufWriter::new(self.folder.store.clone(), self.folder.path(&staged));
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut writer = AsyncArrowWriter::try_new(writer, schema.clone(), Some(properties))
            .map_err(parquet_error)?;
        let mut rows = 0;
        for batch in batches {
            rows += batch.num_rows() as u64;
            let batch = self
                .columns
                .published_batch(batch, &schema)
                .map_err(|error| parquet_error(error.into()))?;
            writer.write(&batch).await.map_err(parquet_error)?;
        }
        let footer = writer.close().await.map_err(parquet_error)?;
        let meta = self
            .folder
            .store
            .head(&self.folder.path(&staged))
            .await
            .map_err(PublishError::store("reading the size of", url.clone()))?;
        self.files.push(WrittenFile {
            name: name.to_string(),
            table: Some(TableFile {
                table: table.to_string(),
                partition: String::new(),
                rows,
                nulls: null_counts(&footer, &schema),
                schema,
            }),
            bytes: meta.size,
        });
        Ok(self.files.last().expect("just pushed"))
    }

    /// Opens a Parquet file of `table` to write batch by batch (a table too large to hold
    /// in memory at once); [`TableWriter::finish`] records it with this run.
    pub fn table_writer(&self, table: &str, name: &str, schema: SchemaRef) -> Result<TableWriter> {
        let staged = format!("{}/{name}", self.prefix);
        let url = self.folder.url_of(&staged);
        let path = self.folder.path(&staged);
        let schema = self.published_schema(table, &schema)?;
        let writer = BufWriter::new(self.folder.store.clone(), path.clone());
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let writer = AsyncArrowWriter::try_new(writer, schema.clone(), Some(properties)).map_err(
            |error| PublishError::Parquet {
                url: url.clone(),
                error,
            },
        )?;
        Ok(TableWriter {
            writer,
            columns: self.columns.clone(),
            table: table.to_string(),
            name: name.to_string(),
            url,
            path,
            schema,
            rows: 0,
        })
    }

    /// Records the Parquet files someone else wrote under `folder` (relative to the run's
    /// folder, e.g. `segments/` written by a cluster's executors) as the files of `table`,
    /// each in the Hive folders (`country=UK/`) it was written in, if any. They are renamed
    /// `part-00000.parquet`, `part-00001.parquet`, ... in name order, so a published run's
    /// layout does not depend on what wrote it; their rows and schema are read from their
    /// footers, which must end in [`Staging::run_columns`]. Returns the rows they hold.
    pub async fn adopt_parquet(&mut self, table: &str, folder: &str) -> Result<u64> {
        let folder = folder.trim_end_matches('/');
        let staged = format!("{}/{folder}/", self.prefix);
        let mut written: Vec<object_store::ObjectMeta> = self
            .folder
            .list(&staged)
            .await?
            .into_iter()
            .filter(|meta| meta.location.as_ref().ends_with(".parquet"))
            .collect();
        written.sort_by(|a, b| a.location.cmp(&b.location));
        let mut rows = 0;
        for (part, meta) in written.into_iter().enumerate() {
            let relative = self.folder.relative(&meta.location);
            let within = relative
                .strip_prefix(&format!("{}/{folder}/", self.prefix))
                .unwrap_or_default();
            let partition = match within.rsplit_once('/') {
                Some((dirs, _)) => format!("{dirs}/"),
                None => String::new(),
            };
            let name = format!("{folder}/{partition}part-{part:05}.parquet");
            let path = self.folder.path(&format!("{}/{name}", self.prefix));
            let url = self.folder.url_of(&format!("{}/{name}", self.prefix));
            if meta.location != path {
                self.folder
                    .store
                    .rename(&meta.location, &path)
                    .await
                    .map_err(PublishError::store(
                        "renaming a written file to",
                        url.clone(),
                    ))?;
            }
            let parquet_error = |error| PublishError::Parquet {
                url: url.clone(),
                error,
            };
            let ranges = ObjectRanges {
                store: self.folder.store.clone(),
                path,
            };
            let footer = ParquetMetaDataReader::new()
                .load_and_finish(ranges, meta.size)
                .await
                .map_err(parquet_error)?;
            let file = footer.file_metadata();
            let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
                .map_err(parquet_error)?;
            if !self.columns.ends_schema(&schema) {
                return Err(PublishError::Corrupt {
                    url,
                    message: "was written without the run's columns (`run_id`, `as_of`) last"
                        .to_string(),
                });
            }
            let file_rows = file.num_rows() as u64;
            rows += file_rows;
            self.files.push(WrittenFile {
                name,
                table: Some(TableFile {
                    table: table.to_string(),
                    partition,
                    rows: file_rows,
                    nulls: null_counts(&footer, &schema),
                    schema: Arc::new(schema),
                }),
                bytes: meta.size,
            });
        }
        Ok(rows)
    }

    /// Writes a small file that is not a table (e.g. `model.json`) in one put.
    pub async fn write_bytes(&mut self, name: &str, bytes: Vec<u8>) -> Result<&WrittenFile> {
        let size = bytes.len() as u64;
        self.folder
            .put(
                &format!("{}/{name}", self.prefix),
                bytes,
                PutMode::Overwrite,
            )
            .await?;
        self.files.push(WrittenFile {
            name: name.to_string(),
            table: None,
            bytes: size,
        });
        Ok(self.files.last().expect("just pushed"))
    }

    /// `run_id=<id>/attempt=<a>`: where this attempt's files that are not tables go.
    fn version_dir(&self) -> String {
        format!(
            "{}/{ATTEMPT_PREFIX}{}",
            OutputFolder::run_dir(&self.run_id),
            self.attempt
        )
    }

    /// The staged files as a reader of the published run will find them: under their
    /// published names, with the manifest `publish` would write now (for a report of the
    /// run, written into the run before it is published).
    pub fn run_files(&self, info: &RunInfo) -> RunFiles {
        let version_dir = self.version_dir();
        let destinations = self.destinations(&version_dir);
        let manifest = self.manifest(info, &destinations);
        let located = destinations
            .into_iter()
            .zip(&self.files)
            .map(|(published, file)| (published, format!("{}/{}", self.prefix, file.name)))
            .collect();
        RunFiles::staged(
            self.folder.clone(),
            manifest,
            format!("{version_dir}/"),
            located,
        )
    }

    /// Makes the staged files the run's published version, by the protocol at the top of
    /// this file. Before the commit, a failure removes what the attempt wrote; after it,
    /// the run is published and cleanup problems are reported in
    /// [`Published::left_behind`].
    pub async fn publish(mut self, info: &RunInfo) -> Result<Published> {
        let mut steps = PublishSteps::from_environment();
        steps.hold();
        let version_dir = self.version_dir();
        #[cfg(feature = "delta")]
        if self.folder.delta
            && let Err(error) = self.folder.check_delta_columns(&self.files).await
        {
            let _ = self.discard().await;
            return Err(error);
        }
        let destinations = self.destinations(&version_dir);
        let manifest = self.manifest(info, &destinations);
        let commit = Commit {
            run_id: self.run_id.clone(),
            version: self.base_version + 1,
            attempt: self.attempt.clone(),
            path: format!("{version_dir}/"),
            committed_at: manifest.ended_at.clone(),
        };
        if let Err(error) = self
            .commit(&version_dir, &destinations, &manifest, &commit, &mut steps)
            .await
        {
            // Nothing names the attempt's files (their names are its own): they can go,
            // whatever went wrong.
            for name in &destinations {
                let _ = self.folder.delete_if_present(name).await;
            }
            let _ = self.folder.delete_all(&format!("{version_dir}/")).await;
            let _ = self.discard().await;
            return Err(error);
        }
        for (file, name) in self.files.iter_mut().zip(destinations) {
            file.name = name;
        }
        let folder = &self.folder;
        let pointed = folder.point_success_at(&commit).await?;
        steps.done("pointed _SUCCESS at the commit");
        let latest = if pointed.version == commit.version {
            for marker in commits::table_commits(&commit, &self.files) {
                folder.point_table_success_at(&marker).await?;
                steps.done("pointed a table's _SUCCESS at the commit");
            }
            if folder.delta {
                folder
                    .keep_delta_tables_at(&commit, &manifest, true)
                    .await?;
                steps.done("committed the tables' Delta logs");
            }
            let latest = runs::point_latest_at(folder, &manifest, &commit).await?;
            steps.done("pointed _LATEST.json at the run");
            Some(latest)
        } else {
            None
        };
        let mut left_behind = Vec::new();
        match folder.superseded_versions(&commit).await {
            Ok(superseded) => {
                for version in superseded {
                    if let Err(error) = folder.remove_superseded(&self.run_id, version).await {
                        left_behind.push(error.to_string());
                    }
                    steps.done("deleted a superseded version");
                }
            }
            Err(error) => left_behind.push(error.to_string()),
        }
        if commit.version == 1 {
            // A run published before versions (its files beside `_SUCCESS`) is version 0.
            let run_dir = format!("{}/", OutputFolder::run_dir(&self.run_id));
            if let Err(error) = folder.remove_unversioned(&run_dir).await {
                left_behind.push(error.to_string());
            }
        }
        if let Err(error) = self.discard().await {
            left_behind.push(error.to_string());
        }
        steps.done("deleted the staging folder");
        Ok(Published {
            url: folder.url_of(&commit.path),
            run_url: folder.run_url(&self.run_id),
            output_url: folder.url.clone(),
            commit,
            files: self.files,
            manifest,
            latest,
            left_behind,
        })
    }

    /// Where each staged file is published, relative to the output folder: a table's
    /// files in its partition of the run, numbered in the order they were written; the
    /// other files in the version folder `version_dir`.
    fn destinations(&self, version_dir: &str) -> Vec<String> {
        let mut parts: BTreeMap<&str, usize> = BTreeMap::new();
        self.files
            .iter()
            .map(|file| match &file.table {
                Some(part) => {
                    let number = parts.entry(part.table.as_str()).or_default();
                    let name = format!(
                        "{}{}{}",
                        table_partition(&part.table, &self.run_id),
                        part.partition,
                        layout::part_name(*number, &self.attempt)
                    );
                    *number += 1;
                    name
                }
                None => format!("{version_dir}/{}", file.name),
            })
            .collect()
    }

    /// Step 1 and 2 of the protocol: the files to where they are published, the manifest,
    /// then the commit.
    async fn commit(
        &self,
        version_dir: &str,
        destinations: &[String],
        manifest: &Manifest,
        commit: &Commit,
        steps: &mut PublishSteps,
    ) -> Result<()> {
        let folder = &self.folder;
        for (file, to) in self.files.iter().zip(destinations) {
            folder
                .store
                .rename(
                    &folder.path(&format!("{}/{}", self.prefix, file.name)),
                    &folder.path(to),
                )
                .await
                .map_err(PublishError::store(
                    "moving a staged file to",
                    folder.url_of(to),
                ))?;
            steps.done("moved a staged file");
        }
        let manifest_json = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
        folder
            .put(
                &format!("{version_dir}/{MANIFEST_FILE}"),
                manifest_json,
                PutMode::Overwrite,
            )
            .await?;
        steps.done("wrote the manifest");
        let name = commits::commit_name(&self.run_id, commit.version);
        let json = serde_json::to_vec_pretty(commit).expect("a commit serialises");
        match folder.put(&name, json, PutMode::Create).await {
            Err(PublishError::Store {
                error: object_store::Error::AlreadyExists { .. },
                ..
            }) => Err(PublishError::PublishedConcurrently {
                run_id: self.run_id.clone(),
                version: commit.version,
                url: folder.url_of(&name),
            }),
            other => other,
        }?;
        steps.done("committed");
        Ok(())
    }

    fn manifest(&self, info: &RunInfo, destinations: &[String]) -> Manifest {
        let mut tables: BTreeMap<&str, ManifestTable> = BTreeMap::new();
        for file in &self.files {
            let Some(part) = &file.table else {
                continue;
            };
            let table = tables
                .entry(part.table.as_str())
                .or_insert_with(|| ManifestTable {
                    name: part.table.clone(),
                    rows: 0,
                    columns: manifest::columns(&part.schema),
                    partition_by: part
                        .partition
                        .split('/')
                        .filter_map(|folder| Some(folder.split_once('=')?.0.to_string()))
                        .collect(),
                });
            table.rows += part.rows;
            for (column, nulls) in table.columns.iter_mut().zip(&part.nulls) {
                column.null_count = match (column.null_count, nulls) {
                    // The first file of the table starts the count at 0.
                    (Some(sum), Some(nulls)) => Some(sum + nulls),
                    _ => None,
                };
            }
        }
        Manifest {
            schema_version: manifest::MANIFEST_SCHEMA_VERSION,
            run_id: self.run_id.clone(),
            pipeline: info.pipeline.clone(),
            pipeline_hash: info.pipeline_hash.clone(),
            segflow_version: env!("CARGO_PKG_VERSION").to_string(),
            vars: info.vars.clone(),
            started_at: manifest::timestamp(info.started_at),
            ended_at: manifest::timestamp(chrono::Utc::now()),
            tables: tables.into_values().collect(),
            files: self
                .files
                .iter()
                .zip(destinations)
                .map(|(file, path)| ManifestFile {
                    path: path.clone(),
                    table: file.table.as_ref().map(|part| part.table.clone()),
                    rows: file.rows(),
                    bytes: file.bytes,
                })
                .collect(),
            metrics: info.metrics.clone(),
            inputs: info.inputs.clone(),
            segment_model: info.segment_model.clone(),
        }
    }

    /// Deletes whatever this attempt staged; the published location is untouched.
    pub async fn discard(&self) -> Result<()> {
        self.folder.delete_all(&format!("{}/", self.prefix)).await?;
        Ok(())
    }

    /// What deletes this attempt's staging folder without the `Staging` itself: for a
    /// process stopped by a signal while the run still holds it.
    pub fn leftover(&self) -> StagingLeftover {
        StagingLeftover {
            folder: self.folder.clone(),
            prefix: format!("{}/", self.prefix),
        }
    }
}

/// An attempt's staging folder, to delete when its run is stopped; see
/// [`Staging::leftover`].
#[derive(Debug, Clone)]
pub struct StagingLeftover {
    folder: OutputFolder,
    prefix: String,
}

impl StagingLeftover {
    pub fn url(&self) -> String {
        self.folder.url_of(&self.prefix)
    }

    /// Deletes the staging folder's files, returning how many went.
    pub async fn remove(&self) -> Result<usize> {
        self.folder.delete_all(&self.prefix).await
    }
}

/// Test hooks for the fault tests. With `SEGFLOW_TEST_ABORT_AFTER_PUBLISH_STEP=N` the
/// process aborts right after the N-th store write of a publish, leaving the output folder
/// as a crash (or a `kill -9`) there would: the tests check what a reader sees after every
/// step. With `SEGFLOW_TEST_HOLD_PUBLISH_UNTIL=FILE` a publish waits (up to a minute) for
/// FILE to exist, so that a test can start racing attempts that have all staged.
struct PublishSteps {
    done: usize,
    abort_after: Option<usize>,
    hold_until: Option<std::path::PathBuf>,
}

impl PublishSteps {
    fn from_environment() -> PublishSteps {
        PublishSteps {
            done: 0,
            abort_after: std::env::var("SEGFLOW_TEST_ABORT_AFTER_PUBLISH_STEP")
                .ok()
                .and_then(|step| step.parse().ok()),
            hold_until: std::env::var_os("SEGFLOW_TEST_HOLD_PUBLISH_UNTIL").map(Into::into),
        }
    }

    /// A blocking wait is fine here: only a test sets the hook, and nothing else of the
    /// run is under way while it publishes.
    fn hold(&self) {
        let Some(file) = &self.hold_until else {
            return;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !file.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    // Straight to stderr: the process aborts next, before a logger could flush.
    #[allow(clippy::print_stderr)]
    fn done(&mut self, step: &str) {
        self.done += 1;
        if self.abort_after == Some(self.done) {
            eprintln!(
                "segflow: test hook: aborting after publish step {} ({step})",
                self.done
            );
            std::process::abort();
        }
    }
}

/// Byte ranges of one stored object, for reading a Parquet footer without the whole file.
struct ObjectRanges {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl MetadataFetch for ObjectRanges {
    fn fetch(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|error| parquet::errors::ParquetError::External(Box::new(error)))
        })
    }
}

/// A Parquet file being written batch by batch; see [`Staging::table_writer`].
pub struct TableWriter {
    writer: AsyncArrowWriter<BufWriter>,
    columns: RunColumns,
    table: String,
    name: String,
    url: String,
    path: Path,
    schema: SchemaRef,
    rows: u64,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableWriter({}, {} rows)", self.url, self.rows)
    }
}

impl TableWriter {
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let batch = self
            .columns
            .published_batch(batch, &self.schema)
            .map_err(|error| PublishError::Parquet {
                url: self.url.clone(),
                error: error.into(),
            })?;
        self.writer
            .write(&batch)
            .await
            .map_err(|error| PublishError::Parquet {
                url: self.url.clone(),
                error,
            })
    }

    /// Closes the file and records it with `staging`.
    pub async fn finish(self, staging: &mut Staging) -> Result<()> {
        let url = self.url;
        let footer = self
            .writer
            .close()
            .await
            .map_err(|error| PublishError::Parquet {
                url: url.clone(),
                error,
            })?;
        let meta = staging
            .folder
            .store
            .head(&self.path)
            .await
            .map_err(PublishError::store("reading the size of", url))?;
        staging.files.push(WrittenFile {
            name: self.name,
            table: Some(TableFile {
                table: self.table,
                partition: String::new(),
                rows: self.rows,
                nulls: null_counts(&footer, &self.schema),
                schema: self.schema,
            }),
            bytes: meta.size,
        });
        Ok(())
    }
}

fn join(root: &Path, name: &str) -> Path {
    name.split('/')
        .filter(|part| !part.is_empty())
        .fold(root.clone(), |path, part| path.join(part))
}

#[cfg(test)]
mod tests;
