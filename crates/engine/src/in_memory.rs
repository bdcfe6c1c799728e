//! Runs steps on a handful of rows given in memory, for `segflow test`: no store is
//! registered and no source file is read, so a test sees only the rows it gives.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::datasource::empty::EmptyTable;
use segflow_pipeline::{Pipeline, Segment, Value, value_columns};
use segflow_plan::StepGraph;

use crate::baseline::Baseline;
use crate::columns::ReadColumns;
use crate::execution::InProcess;
use crate::progress::Progress;
use crate::report::StepReport;
use crate::results::StepResults;
use crate::sources::arrow_schema;
use crate::sql::query_only;
use crate::{EngineError, Result, segment, session, steps, value};

/// The schema of every table that can be planned without reading data: sources with a
/// declared schema, and the steps that read only such tables. Others are absent.
pub async fn known_schemas(
    pipeline: &Pipeline,
    graph: &StepGraph,
) -> Result<HashMap<String, SchemaRef>> {
    let ctx = session::planning_session()?;
    let mut schemas = HashMap::new();
    for source in &pipeline.sources {
        if let Some(columns) = &source.schema {
            let schema = Arc::new(arrow_schema(columns));
            if ctx
                .register_table(
                    source.name.as_str(),
                    Arc::new(EmptyTable::new(schema.clone())),
                )
                .is_ok()
            {
                schemas.insert(source.name.clone(), schema);
            }
        }
    }
    for planned in &graph.steps {
        if !planned
            .reads
            .iter()
            .all(|table| schemas.contains_key(table))
        {
            continue;
        }
        let step = &planned.step;
        let schema = match &step.validate {
            // A validate step passes its input's rows on unchanged.
            Some(validate) => schemas.get(&validate.input).cloned(),
            None => match ctx.sql_with_options(&step.sql, query_only()).await {
                Ok(frame) => Some(Arc::new(frame.schema().as_arrow().clone())),
                Err(_) => None,
            },
        };
        if let Some(schema) = schema
            && ctx
                .register_table(
                    step.name.as_str(),
                    Arc::new(EmptyTable::new(schema.clone())),
                )
                .is_ok()
        {
            schemas.insert(step.name.clone(), schema);
        }
    }
    Ok(schemas)
}

/// What running steps on given rows produced.
#[derive(Debug, Default)]
pub struct InMemoryRun {
    /// Every table the run holds: the given ones and each step's result.
    pub tables: HashMap<String, Vec<RecordBatch>>,
    /// Per validate step with quarantine checks, its rejects.
    pub rejects: HashMap<String, Vec<RecordBatch>>,
    /// The segment stage's rows, when it ran.
    pub segments: Option<Vec<RecordBatch>>,
    /// The value stage's rows (as a pipeline without segments publishes them in
    /// `values/`), when it ran.
    pub values: Option<Vec<RecordBatch>>,
    pub reports: Vec<StepReport>,
}

/// Runs the named steps (in plan order) on `given` tables alone, then the value stage when
/// `value` is given and the segment stage when `segment` is.
pub async fn run_in_memory(
    graph: &StepGraph,
    steps: &[String],
    given: Vec<(String, RecordBatch)>,
    value: Option<&Value>,
    segment: Option<&Segment>,
) -> Result<InMemoryRun> {
    let ctx = session::planning_session()?;
    let mut run = InMemoryRun::default();
    let mut rows = HashMap::new();
    for (name, batch) in given {
        rows.insert(name.clone(), batch.num_rows() as u64);
        let table = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]])
            .map_err(|error| EngineError::table(&name, error))?;
        ctx.register_table(name.as_str(), Arc::new(table))
            .map_err(|error| EngineError::table(&name, error))?;
        run.tables.insert(name, vec![batch]);
    }
    let wanted: HashSet<&str> = steps.iter().map(String::as_str).collect();
    let selected: Vec<_> = graph
        .steps
        .iter()
        .filter(|planned| wanted.contains(planned.step.name.as_str()))
        .collect();
    let results = StepResults::new(&ctx, None)
        .map_err(|error| EngineError::Resources(format!("scratch folder: {error}")))?;
    let settings = steps::StepsSettings {
        results: &results,
        execution: &InProcess,
        max_concurrent: 1,
        keep: None,
        read_columns: &ReadColumns::default(),
        profile: false,
        progress: &Progress::default(),
        // Rows given by a test are no run of the pipeline: nothing to compare them with.
        baseline: &Baseline::default(),
    };
    let outcome = steps::run_steps(&ctx, &selected, settings, rows).await?;
    for planned in &selected {
        let name = &planned.step.name;
        let batches = ctx
            .table(name.as_str())
            .await
            .map_err(|error| EngineError::table(name, error))?
            .collect()
            .await
            .map_err(|error| EngineError::step(&planned.step, error))?;
        run.tables.insert(name.clone(), batches);
    }
    for rejects in outcome.rejects {
        let batches = ctx
            .table(rejects.table.as_str())
            .await
            .map_err(|error| EngineError::table(&rejects.table, error))?
            .collect()
            .await
            .map_err(|error| EngineError::table(&rejects.table, error))?;
        run.rejects.insert(rejects.step, batches);
    }
    run.reports = outcome.reports;
    if let Some(value) = value {
        value::run_value(&ctx, value).await?;
        value::register_values_view(&ctx, value).await?;
        let values = ctx
            .table(value::VALUES_VIEW)
            .await
            .and_then(|frame| frame.select_columns(&value_table_columns(value)))
            .map_err(|error| EngineError::Value(error.to_string()))?
            .collect()
            .await
            .map_err(|error| EngineError::Value(error.to_string()))?;
        run.values = Some(values);
    }
    if let Some(segment) = segment {
        let segment = match value {
            Some(value) => value::extend_segment_input(&ctx, value, segment).await?,
            None => segment.clone(),
        };
        run.segments = Some(segment::segments_in_memory(&ctx, &segment).await?);
    }
    Ok(run)
}

/// The key and the value columns: what a test compares, without the history it gave.
fn value_table_columns(value: &Value) -> Vec<&str> {
    let mut columns = vec![value.key.as_str()];
    columns.extend(value_columns(value.spend_model));
    columns
}
