//! segflow-publish: puts a run's outputs where a warehouse loader will find them, whole.
//!
//! The layout of an output folder:
//!
//! ```text
//! <output>/_staging/<run_id>/…            files of a run in progress (or of a dead one)
//! <output>/run_id=<run_id>/…              a published run: its tables,
//! <output>/run_id=<run_id>/_MANIFEST.json   what they hold,
//! <output>/run_id=<run_id>/_SUCCESS         and, written last, the sign it is complete
//! <output>/_LATEST.json                   names the run published most recently
//! ```
//!
//! Files are first written under the staging folder. Only when every file of the run is
//! written does [`Staging::publish`] clear the run's published folder (a rerun of the same
//! run id replaces it), move the staged files into it, write the manifest and then
//! `_SUCCESS` with a put-if-absent. A loader that waits for `_SUCCESS` never reads a
//! half-written or mixed result, and other run ids are never touched.
//!
//! This file is longer than the others on purpose: the protocol above and the code that
//! carries it out (`OutputFolder`, `Staging`, `TableWriter`) are kept together, so that a
//! change to one is seen beside the other.

mod manifest;
mod runs;
mod store_errors;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::async_reader::MetadataFetch;
use parquet::arrow::{AsyncArrowWriter, parquet_to_arrow_schema};
use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::WriterProperties;

pub use manifest::{Manifest, ManifestColumn, ManifestFile, ManifestTable, RunInfo};
pub use runs::{Latest, RunEntry, RunStatus};
pub use store_errors::{explain, find_store_error};

pub type Result<T, E = PublishError> = std::result::Result<T, E>;

pub const SUCCESS_MARKER: &str = "_SUCCESS";
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
    #[error(
        "run `{run_id}` was published by another process while this one was publishing it ({url} already exists); its output is that process's"
    )]
    PublishedConcurrently { run_id: String, url: String },
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

/// A file the run wrote, relative to the run's folder.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenFile {
    /// e.g. `segments/part-00000.parquet`.
    pub name: String,
    /// For a Parquet file: the table it belongs to (e.g. `segments`), its rows and schema.
    pub table: Option<TableFile>,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableFile {
    pub table: String,
    pub rows: u64,
    pub schema: SchemaRef,
}

impl WrittenFile {
    pub fn rows(&self) -> Option<u64> {
        self.table.as_ref().map(|table| table.rows)
    }
}

/// A published run: where it is and what it holds.
#[derive(Debug, Clone)]
pub struct Published {
    /// The run's folder URL, ending in `/`.
    pub url: String,
    pub files: Vec<WrittenFile>,
    pub manifest: Manifest,
}

/// An output folder on a store: `root` is the folder's path in the store, `url` its URL
/// (for messages and reports), ending in `/`.
#[derive(Clone)]
pub struct OutputFolder {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    pub url: String,
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
        OutputFolder { store, root, url }
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

    /// Starts a run's staging area; nothing in the published location changes until
    /// [`Staging::publish`]. A staging folder left by an earlier attempt with the same run
    /// id is cleared first, so none of its files can be published with this run.
    pub async fn stage(&self, run_id: &str) -> Result<Staging> {
        let staging = Staging {
            folder: self.clone(),
            run_id: run_id.to_string(),
            prefix: format!("{STAGING_DIR}/{run_id}"),
            files: Vec::new(),
        };
        staging.discard().await?;
        Ok(staging)
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

/// Files written for one run, not yet visible to loaders.
#[derive(Debug)]
pub struct Staging {
    folder: OutputFolder,
    run_id: String,
    prefix: String,
    files: Vec<WrittenFile>,
}

impl Staging {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The staging folder's URL, ending in `/`. Files written under it by others (a run's
    /// scratch tables) are not published, and go when it is discarded.
    pub fn url(&self) -> String {
        self.folder.url_of(&format!("{}/", self.prefix))
    }

    pub fn files(&self) -> &[WrittenFile] {
        &self.files
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
        let writer = BufWriter::new(self.folder.store.clone(), self.folder.path(&staged));
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let schema = plain_schema(&schema);
        let mut writer = AsyncArrowWriter::try_new(writer, schema.clone(), Some(properties))
            .map_err(parquet_error)?;
        let mut rows = 0;
        for batch in batches {
            rows += batch.num_rows() as u64;
            let batch = plain_batch(batch, &schema).map_err(|error| parquet_error(error.into()))?;
            writer.write(&batch).await.map_err(parquet_error)?;
        }
        writer.close().await.map_err(parquet_error)?;
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
                rows,
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
        let writer = BufWriter::new(self.folder.store.clone(), path.clone());
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let schema = plain_schema(&schema);
        let writer = AsyncArrowWriter::try_new(writer, schema.clone(), Some(properties)).map_err(
            |error| PublishError::Parquet {
                url: url.clone(),
                error,
            },
        )?;
        Ok(TableWriter {
            writer,
            table: table.to_string(),
            name: name.to_string(),
            url,
            path,
            schema,
            rows: 0,
        })
    }

    /// Records the Parquet files someone else wrote under `folder` (relative to the run's
    /// folder, e.g. `segments/` written by a cluster's executors) as the files of `table`.
    /// They are renamed `part-00000.parquet`, `part-00001.parquet`, ... in name order, so a
    /// published run's layout does not depend on what wrote it; their rows and schema are
    /// read from their footers. Returns the rows they hold.
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
            let name = format!("{folder}/part-{part:05}.parquet");
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
            let file_rows = file.num_rows() as u64;
            rows += file_rows;
            self.files.push(WrittenFile {
                name,
                table: Some(TableFile {
                    table: table.to_string(),
                    rows: file_rows,
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

    /// Makes the staged files the run's published output, in an order that keeps loaders
    /// safe at every step: withdraw the run's `_SUCCESS`, delete whatever else its folder
    /// held, move the staged files in, write `_MANIFEST.json`, write `_SUCCESS` (put-if-
    /// absent, so two processes publishing one run id cannot both succeed), and only then
    /// point `_LATEST.json` at the run.
    pub async fn publish(self, info: &RunInfo) -> Result<Published> {
        let folder = &self.folder;
        let run_dir = OutputFolder::run_dir(&self.run_id);
        let manifest = self.manifest(info);
        let manifest_json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");

        folder
            .delete_if_present(&format!("{run_dir}/{SUCCESS_MARKER}"))
            .await?;
        folder.delete_all(&format!("{run_dir}/")).await?;
        for file in &self.files {
            let to = format!("{run_dir}/{}", file.name);
            folder
                .store
                .rename(
                    &folder.path(&format!("{}/{}", self.prefix, file.name)),
                    &folder.path(&to),
                )
                .await
                .map_err(PublishError::store(
                    "moving a staged file to",
                    folder.url_of(&to),
                ))?;
        }
        folder
            .put(
                &format!("{run_dir}/{MANIFEST_FILE}"),
                manifest_json,
                PutMode::Overwrite,
            )
            .await?;
        let success = format!("{run_dir}/{SUCCESS_MARKER}");
        match folder.put(&success, Vec::new(), PutMode::Create).await {
            Err(PublishError::Store {
                error: object_store::Error::AlreadyExists { .. },
                ..
            }) => {
                return Err(PublishError::PublishedConcurrently {
                    run_id: self.run_id.clone(),
                    url: folder.url_of(&success),
                });
            }
            other => other?,
        }
        runs::point_latest_at(folder, &manifest).await?;
        self.discard().await?;
        Ok(Published {
            url: folder.run_url(&self.run_id),
            files: self.files,
            manifest,
        })
    }

    fn manifest(&self, info: &RunInfo) -> Manifest {
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
                });
            table.rows += part.rows;
        }
        Manifest {
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
                .map(|file| ManifestFile {
                    path: file.name.clone(),
                    table: file.table.as_ref().map(|part| part.table.clone()),
                    rows: file.rows(),
                    bytes: file.bytes,
                })
                .collect(),
        }
    }

    /// Deletes whatever this run staged; the published location is untouched.
    pub async fn discard(&self) -> Result<()> {
        self.folder.delete_all(&format!("{}/", self.prefix)).await?;
        Ok(())
    }
}

/// `schema` with string and binary views as plain strings and binaries. Engines choose
/// views or not as they see fit (DataFusion does locally, Ballista does not); the files a
/// warehouse loads keep one schema whichever ran the pipeline.
fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    let plain = |data_type: &DataType| match data_type {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    };
    if !schema
        .fields()
        .iter()
        .any(|f| plain(f.data_type()).is_some())
    {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match plain(field.data_type()) {
            Some(data_type) => field.as_ref().clone().with_data_type(data_type),
            None => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` cast to `schema` (see [`plain_schema`]).
fn plain_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
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
        let batch = plain_batch(batch, &self.schema).map_err(|error| PublishError::Parquet {
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
        self.writer
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
                rows: self.rows,
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
