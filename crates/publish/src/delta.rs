//! `format: delta`: each table folder is also a Delta Lake table, its `_delta_log/` beside
//! the run partitions, for Spark, Databricks, DuckDB and Polars to read without segflow's
//! conventions.
//!
//! The files are the ones the publish protocol already put in place
//! (`<table>/run_id=<id>/part-NNNNN-<attempt>.parquet`, `run_id` the partition column); a
//! Delta commit only names them. Per table, once the run is committed, one Delta commit
//! removes the files the log has for the run's partition and adds the new version's: a
//! replace of the partition, atomic for Delta readers. It comes before the superseded
//! version's files are deleted, so the log never names a deleted file; a crash between the
//! run's commit and a table's leaves that table on the run's previous version, whole, until
//! the next publish of the id or `segflow gc` commits it. delta-rs is used without
//! DataFusion: segflow writes the Parquet, delta-rs writes the log.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake_core::DeltaTable;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::kernel::transaction::{CommitBuilder, TableReference};
use deltalake_core::kernel::{Action, Add, Remove, StructType};
use deltalake_core::logstore::{StorageConfig, default_logstore};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;

use crate::{
    Commit, Manifest, OutputFolder, PublishError, RUN_DIR_PREFIX, RUN_ID_COLUMN, Result,
    TABLE_FOLDERS_SINCE,
};

impl OutputFolder {
    /// Commits the files `commit`'s version has of each table (its `manifest` says which) to
    /// the table's Delta log, creating the table on its first run when `create` (a publish
    /// asks for it; `gc` only brings along tables that already have a log).
    pub(crate) async fn commit_delta_tables(
        &self,
        commit: &Commit,
        manifest: &Manifest,
        create: bool,
    ) -> Result<()> {
        if manifest.schema_version < TABLE_FOLDERS_SINCE {
            return Ok(());
        }
        for table in &manifest.tables {
            let files: Vec<(&str, u64)> = manifest
                .files
                .iter()
                .filter(|file| file.table.as_deref() == Some(table.name.as_str()))
                .map(|file| (file.path.as_str(), file.bytes))
                .collect();
            let Some(&(first, _)) = files.first() else {
                continue;
            };
            self.commit_delta_table(&table.name, commit, first, &files, create)
                .await
                .map_err(|message| PublishError::Table {
                    table: table.name.clone(),
                    message: format!("could not be committed to its Delta log: {message}"),
                })?;
        }
        Ok(())
    }

    /// Before the run commits: each staged table whose folder already has a Delta log has
    /// the log's columns, as a Delta table keeps those of its first run.
    pub(crate) async fn check_delta_columns(&self, files: &[crate::WrittenFile]) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for part in files.iter().filter_map(|file| file.table.as_ref()) {
            if !seen.insert(part.table.as_str()) {
                continue;
            }
            let failed = |message: String| PublishError::Table {
                table: part.table.clone(),
                message,
            };
            let Some(delta) = self.open_delta_table(&part.table).await.map_err(failed)? else {
                continue;
            };
            let logged: Vec<String> = delta
                .snapshot()
                .map_err(|e| failed(e.to_string()))?
                .schema()
                .fields()
                .map(|field| field.name().clone())
                .collect();
            let staged: Vec<String> = part
                .schema
                .fields()
                .iter()
                .map(|field| field.name().clone())
                .collect();
            if logged != staged {
                return Err(failed(format!(
                    "has the columns {} and its Delta table {}: a Delta table keeps the columns of its first run (start a new output folder, or a new table name, for the new ones)",
                    staged.join(", "),
                    logged.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The Delta table over the folder of `table`, not loaded. delta-rs picks a log store
    /// by URL scheme and knows only `file` and `memory` without its cloud crates; its
    /// default log store over segflow's own object store commits with a put-if-absent,
    /// which every store segflow publishes to already provides for segflow's own commits.
    fn delta_table(&self, table: &str) -> std::result::Result<DeltaTable, String> {
        let url = url::Url::parse(&format!("{}{table}/", self.url)).map_err(|e| e.to_string())?;
        let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(
            self.store.clone(),
            self.path(&format!("{table}/")),
        ));
        let log_store = default_logstore(
            prefixed,
            self.store.clone(),
            &url,
            &StorageConfig::default(),
        );
        Ok(DeltaTable::new(log_store))
    }

    /// The Delta table in the folder of `table`, loaded; `None` when it has no log.
    async fn open_delta_table(
        &self,
        table: &str,
    ) -> std::result::Result<Option<DeltaTable>, String> {
        let text = |error: deltalake_core::DeltaTableError| error.to_string();
        let mut delta = self.delta_table(table)?;
        if !delta.verify_deltatable_existence().await.map_err(text)? {
            return Ok(None);
        }
        delta.load().await.map_err(text)?;
        Ok(Some(delta))
    }

    async fn commit_delta_table(
        &self,
        table: &str,
        commit: &Commit,
        first_file: &str,
        files: &[(&str, u64)],
        create: bool,
    ) -> std::result::Result<(), String> {
        let text = |error: deltalake_core::DeltaTableError| error.to_string();
        let delta = match self.open_delta_table(table).await? {
            Some(delta) => delta,
            None if create => self.create_delta_table(table, first_file).await?,
            None => return Ok(()),
        };
        let partition = format!("{RUN_DIR_PREFIX}{}/", commit.run_id);
        let now = chrono::Utc::now().timestamp_millis();
        let values: HashMap<String, Option<String>> =
            [(RUN_ID_COLUMN.to_string(), Some(commit.run_id.clone()))].into();
        let adds: Vec<(String, u64)> = files
            .iter()
            .map(|(path, bytes)| {
                let relative = path.strip_prefix(&format!("{table}/")).unwrap_or(path);
                (relative.to_string(), *bytes)
            })
            .collect();
        let current: Vec<_> = delta
            .get_active_add_actions_by_partitions(&[])
            .try_collect()
            .await
            .map_err(text)?;
        let mut actions: Vec<Action> = Vec::new();
        let mut unchanged = true;
        for file in current
            .iter()
            .filter(|file| file.path().starts_with(&partition))
        {
            unchanged &= adds.iter().any(|(path, _)| *path == file.path());
            actions.push(Action::Remove(Remove {
                path: file.path().into_owned(),
                data_change: true,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(values.clone()),
                size: Some(file.size()),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            }));
        }
        if unchanged && actions.len() == adds.len() && !adds.is_empty() {
            // Already committed (a `gc` after a publish that got this far).
            return Ok(());
        }
        for (path, bytes) in adds {
            actions.push(Action::Add(Add {
                path,
                partition_values: values.clone(),
                size: bytes as i64,
                modification_time: now,
                data_change: true,
                stats: None,
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
                clustering_provider: None,
            }));
        }
        let snapshot = delta.snapshot().map_err(text)?;
        CommitBuilder::default()
            .with_actions(actions)
            .build(
                Some(snapshot as &dyn TableReference),
                delta.log_store(),
                DeltaOperation::Write {
                    mode: SaveMode::Overwrite,
                    partition_by: Some(vec![RUN_ID_COLUMN.to_string()]),
                    predicate: Some(format!("{RUN_ID_COLUMN} = '{}'", commit.run_id)),
                },
            )
            .await
            .map_err(|error| error.to_string())?;
        Ok(())
    }

    /// A new Delta table over the folder of `table`, its schema that of `first_file` (the
    /// run's columns included), partitioned by `run_id`.
    async fn create_delta_table(
        &self,
        table: &str,
        first_file: &str,
    ) -> std::result::Result<DeltaTable, String> {
        let delta = self.delta_table(table)?;
        let footer = self
            .parquet_footer(first_file)
            .await
            .map_err(|e| e.to_string())?;
        let file = footer.file_metadata();
        let schema =
            parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
                .map_err(|e| e.to_string())?;
        let columns: StructType = (&schema).try_into_kernel().map_err(|e| e.to_string())?;
        CreateBuilder::new()
            .with_log_store(delta.log_store())
            .with_columns(columns.fields().cloned())
            .with_partition_columns([RUN_ID_COLUMN])
            .with_save_mode(SaveMode::ErrorIfExists)
            .await
            .map_err(|e| e.to_string())
    }
}
