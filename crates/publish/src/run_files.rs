//! A run's files as a reader of a whole run (the report) reads them: a published version,
//! found by its commit, or an attempt's staged files just before they are published, under
//! the names they are about to have. Both are read through the same manifest, so what is
//! rendered from a staged run is what a reader of the published run finds.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::manifest::TABLE_FOLDERS_SINCE;
use crate::{
    LATEST_FILE, MANIFEST_FILE, MANIFEST_SCHEMA_VERSION, Manifest, OutputFolder, PublishError,
    Result,
};

/// The files of one version of a run, by the names its manifest gives them.
#[derive(Debug)]
pub struct RunFiles {
    folder: OutputFolder,
    manifest: Manifest,
    /// The version's folder, relative to the output folder, ending in `/`.
    version_dir: String,
    /// Each table's files where they are now (relative to the output folder), in part order.
    tables: BTreeMap<String, Vec<String>>,
    /// A published name (relative to the output folder) to where the file is now: differs
    /// only for a staged run.
    located: BTreeMap<String, String>,
}

/// Why a run cannot be read whole.
#[derive(Debug, thiserror::Error)]
pub enum RunFilesError {
    #[error("no run is published in {output} (it has no {LATEST_FILE})")]
    NothingPublished { output: String },
    #[error("run `{run_id}` is not published in {output}: it has no `_SUCCESS`")]
    NotPublished { run_id: String, output: String },
    #[error("run `{run_id}` has no {MANIFEST_FILE} in {url}")]
    NoManifest { run_id: String, url: String },
    #[error(
        "run `{run_id}` was published by segflow {segflow_version} with manifest schema {schema_version}; this segflow ({}) reads schema {MANIFEST_SCHEMA_VERSION} and older",
        env!("CARGO_PKG_VERSION")
    )]
    NewerManifest {
        run_id: String,
        segflow_version: String,
        schema_version: u32,
    },
    #[error("run `{run_id}`: {what} is missing ({url})")]
    Missing {
        run_id: String,
        what: String,
        url: String,
    },
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl OutputFolder {
    /// The published version of `run_id`, as its `_SUCCESS` names it.
    pub async fn run_files(&self, run_id: &str) -> Result<RunFiles, RunFilesError> {
        let commit = self
            .published(run_id)
            .await?
            .ok_or_else(|| RunFilesError::NotPublished {
                run_id: run_id.to_string(),
                output: self.url.clone(),
            })?;
        let manifest =
            self.manifest_at(&commit)
                .await?
                .ok_or_else(|| RunFilesError::NoManifest {
                    run_id: run_id.to_string(),
                    url: self.url_of(&commit.path),
                })?;
        if manifest.schema_version > MANIFEST_SCHEMA_VERSION {
            return Err(RunFilesError::NewerManifest {
                run_id: run_id.to_string(),
                segflow_version: manifest.segflow_version,
                schema_version: manifest.schema_version,
            });
        }
        let mut tables = BTreeMap::new();
        for table in &manifest.tables {
            let files = if manifest.schema_version >= TABLE_FOLDERS_SINCE {
                table_files_of(&manifest, &table.name)
            } else {
                self.table_files(&commit, &table.name).await?
            };
            tables.insert(table.name.clone(), files);
        }
        Ok(RunFiles {
            folder: self.clone(),
            version_dir: commit.path.clone(),
            located: BTreeMap::new(),
            tables,
            manifest,
        })
    }
}

fn table_files_of(manifest: &Manifest, table: &str) -> Vec<String> {
    manifest
        .files
        .iter()
        .filter(|file| file.table.as_deref() == Some(table))
        .map(|file| file.path.clone())
        .collect()
}

impl RunFiles {
    /// A staged run: `manifest` is the one it is about to publish, `located` maps each
    /// published name to its staged one.
    pub(crate) fn staged(
        folder: OutputFolder,
        manifest: Manifest,
        version_dir: String,
        located: BTreeMap<String, String>,
    ) -> RunFiles {
        let tables = manifest
            .tables
            .iter()
            .map(|table| {
                let files = table_files_of(&manifest, &table.name)
                    .into_iter()
                    .map(|name| located.get(&name).cloned().unwrap_or(name))
                    .collect();
                (table.name.clone(), files)
            })
            .collect();
        RunFiles {
            folder,
            manifest,
            version_dir,
            tables,
            located,
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The URL of the version's folder (as published).
    pub fn url(&self) -> String {
        self.folder.url_of(&self.version_dir)
    }

    /// The version's folder relative to the output folder, `run_id=<id>/attempt=<a>/`.
    pub fn version_path(&self) -> &str {
        &self.version_dir
    }

    /// Whether the run has the table `name`.
    pub fn has_table(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }

    /// A file of the version that is not a table (`model.json`), by its name in the
    /// version's folder; `None` when the manifest does not list it.
    pub async fn file(&self, name: &str) -> Result<Option<Bytes>, RunFilesError> {
        let published = format!("{}{name}", self.version_dir);
        let listed = self.manifest.files.iter().any(|file| file.path == published)
            // Manifests before table folders named the version's files relative to it.
            || (self.manifest.schema_version < TABLE_FOLDERS_SINCE
                && self.manifest.files.iter().any(|file| file.path == name));
        if !listed {
            return Ok(None);
        }
        let at = self.located.get(&published).unwrap_or(&published);
        match self.folder.read(at).await? {
            Some(bytes) => Ok(Some(bytes)),
            None => Err(self.missing(name, at)),
        }
    }

    /// The rows of `table` (only `columns` of them, those the table has), in part order;
    /// `None` when the run has no such table.
    pub async fn table(
        &self,
        table: &str,
        columns: &[&str],
    ) -> Result<Option<Vec<RecordBatch>>, RunFilesError> {
        let Some(files) = self.tables.get(table) else {
            return Ok(None);
        };
        let mut batches = Vec::new();
        for name in files {
            let bytes = self
                .folder
                .read(name)
                .await?
                .ok_or_else(|| self.missing(&format!("table `{table}`"), name))?;
            let parquet_error = |error| PublishError::Parquet {
                url: self.folder.url_of(name),
                error,
            };
            let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(parquet_error)?;
            let schema = builder.parquet_schema();
            let wanted: Vec<usize> = builder
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, field)| columns.contains(&field.name().as_str()))
                .map(|(index, _)| index)
                .collect();
            let mask = ProjectionMask::roots(schema, wanted);
            let reader = builder
                .with_projection(mask)
                .build()
                .map_err(parquet_error)?;
            for batch in reader {
                batches.push(batch.map_err(|error| parquet_error(error.into()))?);
            }
        }
        Ok(Some(batches))
    }

    fn missing(&self, what: &str, at: &str) -> RunFilesError {
        RunFilesError::Missing {
            run_id: self.manifest.run_id.clone(),
            what: what.to_string(),
            url: self.folder.url_of(at),
        }
    }
}
