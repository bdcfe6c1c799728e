//! Reading an earlier published run back: its model (to fit in the same units and keep its
//! segment ids) and its segments (to count how customers moved between segments).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use segflow_cluster::PreviousModel;
use segflow_pipeline::{Segment, WarmStart};
use segflow_publish::{OutputFolder, RunStatus};

use super::model_file::ModelFile;
use crate::sql::quote;
use crate::{EngineError, Result};

/// An earlier run as the segment stage needs it.
#[derive(Debug, Clone)]
pub struct PreviousRun {
    pub run_id: String,
    pub model: PreviousModel,
    /// By segment id.
    pub names: BTreeMap<u32, String>,
    /// `key` and `segment_id` of every customer it segmented (none when only a model file
    /// was given).
    pub segments: Vec<RecordBatch>,
    /// Customers per segment id, from its model file (when the file records them).
    pub sizes: Option<BTreeMap<u32, u64>>,
}

/// The run `segment.warm_start` names, read from `folder`; `None` when it asks for the
/// previous run and there is none yet (the first run fits from scratch).
pub async fn load_previous(
    ctx: &SessionContext,
    folder: &OutputFolder,
    segment: &Segment,
    run_id: &str,
) -> Result<Option<PreviousRun>> {
    let Some(warm_start) = &segment.warm_start else {
        return Ok(None);
    };
    let failed = |message: String| EngineError::Segment(format!("warm start: {message}"));
    if let WarmStart::Model(location) = warm_start {
        let url = location.url.to_string();
        let store = datafusion::datasource::listing::ListingTableUrl::parse(&url)
            .and_then(|parsed| ctx.runtime_env().object_store(parsed.object_store()))
            .map_err(|error| failed(format!("{url}: {error}")))?;
        let path = StorePath::from_url_path(location.url.path())
            .map_err(|error| failed(format!("{url}: {error}")))?;
        let bytes = async { store.get(&path).await?.bytes().await }
            .await
            .map_err(|error| {
                failed(format!(
                    "reading {url}: {}",
                    segflow_publish::explain(&error)
                ))
            })?;
        let file: ModelFile = serde_json::from_slice(&bytes)
            .map_err(|error| failed(format!("{url} is not a segflow model: {error}")))?;
        let sizes = file.sizes_by_id();
        let (model, names) = file
            .into_previous(segment)
            .map_err(|message| failed(format!("{url}: {message}")))?;
        return Ok(Some(PreviousRun {
            run_id: format!("model {url}"),
            model,
            names,
            segments: Vec::new(),
            sizes,
        }));
    }
    let previous_id = match warm_start {
        // The run before this one in run order: a rerun does not start from itself, and a
        // backfill of an old day starts from the day before it, not from the newest.
        WarmStart::Previous => match folder
            .previous_published(run_id)
            .await
            .map_err(|error| failed(error.to_string()))?
        {
            Some(run) => run.run_id,
            None => {
                tracing::info!(output = %folder.url, "no earlier published run: fitting from scratch");
                return Ok(None);
            }
        },
        WarmStart::Model(_) => unreachable!("read above"),
        WarmStart::Run(id) => {
            let runs = folder
                .runs()
                .await
                .map_err(|error| failed(error.to_string()))?;
            let mut published = runs.iter().filter(|run| run.status == RunStatus::Published);
            if !published.any(|run| &run.run_id == id) {
                return Err(failed(format!(
                    "no published run `{id}` in {} (see `segflow runs`)",
                    folder.url
                )));
            }
            id.clone()
        }
    };
    let version = folder
        .published(&previous_id)
        .await
        .map_err(|error| failed(error.to_string()))?
        .ok_or_else(|| failed(format!("run `{previous_id}` is no longer published")))?;
    let model_path = child(&folder.root, &[version.path.as_str(), "model.json"]);
    let model_url = format!("{}{}model.json", folder.url, version.path);
    let bytes = async { folder.store.get(&model_path).await?.bytes().await }
        .await
        .map_err(|error| {
            failed(format!(
                "reading {model_url}: {}",
                segflow_publish::explain(&error)
            ))
        })?;
    let file: ModelFile = serde_json::from_slice(&bytes)
        .map_err(|error| failed(format!("{model_url} is not a segflow model: {error}")))?;
    let sizes = file.sizes_by_id();
    let model = file
        .into_previous(segment)
        .map_err(|message| failed(format!("{model_url}: {message}")))?;
    let segments = read_segments(folder, &version, &segment.key)
        .await
        .map_err(failed)?;
    tracing::info!(run = %previous_id, "warm start from an earlier run");
    Ok(Some(PreviousRun {
        run_id: previous_id,
        names: model.1,
        model: model.0,
        segments,
        sizes,
    }))
}

/// `root` joined with `parts`, each of which may hold several `/`-separated segments.
fn child(root: &StorePath, parts: &[&str]) -> StorePath {
    parts
        .iter()
        .flat_map(|part| part.split('/'))
        .filter(|segment| !segment.is_empty())
        .fold(root.clone(), |path, segment| path.join(segment))
}

/// The key and segment id of every customer of the published version `version`, from
/// the files its manifest lists (or, for a run published before tables had folders of
/// their own, its `segments/` folder).
async fn read_segments(
    folder: &OutputFolder,
    version: &segflow_publish::Commit,
    key: &str,
) -> std::result::Result<Vec<RecordBatch>, String> {
    let files: Vec<StorePath> = folder
        .table_files(version, "segments")
        .await
        .map_err(|error| error.to_string())?
        .iter()
        .map(|name| child(&folder.root, &[name.as_str()]))
        .collect();
    let mut batches = Vec::new();
    for file in &files {
        let bytes = async { folder.store.get(file).await?.bytes().await }
            .await
            .map_err(|error| format!("reading {file}: {}", segflow_publish::explain(&error)))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|builder| builder.build())
            .map_err(|error| format!("reading {file}: {error}"))?;
        for batch in reader {
            let batch = batch.map_err(|error| format!("reading {file}: {error}"))?;
            let schema = batch.schema();
            let columns = [key, segflow_cluster::SEGMENT_ID]
                .iter()
                .map(|name| {
                    schema
                        .index_of(name)
                        .map_err(|_| format!("{file} has no column `{name}`"))
                })
                .collect::<std::result::Result<Vec<usize>, String>>()?;
            batches.push(batch.project(&columns).map_err(|error| error.to_string())?);
        }
    }
    Ok(batches)
}

/// `migration.parquet`: per (previous segment, segment) pair, how many customers; a null
/// previous segment counts customers new in this run, a null segment those who are gone.
pub async fn migration(
    ctx: &SessionContext,
    previous: &PreviousRun,
    current: &[RecordBatch],
    key: &str,
    names: &BTreeMap<u32, String>,
) -> Result<RecordBatch> {
    let failed = |error: datafusion::error::DataFusionError| {
        EngineError::Segment(format!("counting migration: {error}"))
    };
    // Both tables are batches in this process's memory, so the count runs here whatever
    // engine ran the steps (a cluster's executors could not read them).
    let ctx = &SessionContext::new_with_config_rt(ctx.copied_config(), ctx.runtime_env());
    let register = |name: &str, batches: &[RecordBatch]| -> Result<()> {
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .ok_or_else(|| EngineError::Segment("counting migration: no segments".to_string()))?;
        let table = MemTable::try_new(schema, vec![batches.to_vec()]).map_err(failed)?;
        ctx.register_table(name, Arc::new(table)).map_err(failed)?;
        Ok(())
    };
    let projected: Vec<RecordBatch> = current
        .iter()
        .map(|batch| {
            let schema = batch.schema();
            let columns = [key, segflow_cluster::SEGMENT_ID].map(|name| {
                schema
                    .index_of(name)
                    .expect("segments hold key and segment_id")
            });
            batch.project(&columns).expect("columns exist")
        })
        .collect();
    register("__segflow_previous_segments", &previous.segments)?;
    register("__segflow_current_segments", &projected)?;
    let key = quote(key);
    let sql = format!(
        "SELECT p.segment_id AS previous_segment_id, c.segment_id AS segment_id, count(*) AS customers \
         FROM __segflow_previous_segments p FULL OUTER JOIN __segflow_current_segments c ON p.{key} = c.{key} \
         GROUP BY p.segment_id, c.segment_id \
         ORDER BY previous_segment_id NULLS FIRST, segment_id NULLS FIRST"
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    for table in ["__segflow_previous_segments", "__segflow_current_segments"] {
        let _ = ctx.deregister_table(table);
    }
    let schema = batches.first().map(RecordBatch::schema);
    let batch = match schema {
        Some(schema) => arrow::compute::concat_batches(&schema, &batches)
            .map_err(|error| EngineError::Segment(error.to_string()))?,
        None => {
            return Err(EngineError::Segment(
                "counting migration: no rows".to_string(),
            ));
        }
    };
    with_names(batch, &previous.names, names)
}

/// Of a migration table: the customers in both runs, and those whose segment changed.
pub fn moved(migration: &RecordBatch) -> (u64, u64) {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type};
    let before = migration
        .column_by_name("previous_segment_id")
        .expect("a migration table")
        .as_primitive::<Int32Type>();
    let after = migration
        .column_by_name("segment_id")
        .expect("a migration table")
        .as_primitive::<Int32Type>();
    let customers = migration
        .column_by_name("customers")
        .expect("a migration table")
        .as_primitive::<Int64Type>();
    let (mut returning, mut moved) = (0, 0);
    for row in 0..migration.num_rows() {
        if before.is_null(row) || after.is_null(row) {
            continue;
        }
        let count = customers.value(row) as u64;
        returning += count;
        if before.value(row) != after.value(row) {
            moved += count;
        }
    }
    (returning, moved)
}

/// Adds `previous_name` and `name` beside the two id columns.
fn with_names(
    batch: RecordBatch,
    previous: &BTreeMap<u32, String>,
    current: &BTreeMap<u32, String>,
) -> Result<RecordBatch> {
    use arrow::array::{Array, AsArray, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};
    let name_of = |column: usize, names: &BTreeMap<u32, String>| -> StringArray {
        let ids = batch.column(column).as_primitive::<Int32Type>();
        (0..ids.len())
            .map(|i| {
                (!ids.is_null(i))
                    .then(|| names.get(&(ids.value(i) as u32)).cloned())
                    .flatten()
            })
            .collect()
    };
    let fields = vec![
        Field::new("previous_segment_id", DataType::Int32, true),
        Field::new("previous_name", DataType::Utf8, true),
        Field::new("segment_id", DataType::Int32, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("customers", DataType::Int64, false),
    ];
    let columns = vec![
        batch.column(0).clone(),
        Arc::new(name_of(0, previous)) as _,
        batch.column(1).clone(),
        Arc::new(name_of(1, current)) as _,
        batch.column(2).clone(),
    ];
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|error| EngineError::Segment(error.to_string()))
}
