//! `segflow show`: the first rows of steps and sources, from a real run of what they read.
//! Nothing is staged or published, and a failing check does not stop the preview: it is
//! what an analyst looks at the rows to understand.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use segflow_pipeline::Pipeline;
use segflow_plan::{Chosen, PlannedStep};

use crate::baseline::Baseline;
use crate::columns::ReadColumns;
use crate::execution::InProcess;
use crate::progress::Progress;
use crate::results::StepResults;
use crate::session::RunResources;
use crate::sql::{query_only, quote};
use crate::steps::StepsOutcome;
use crate::{EngineError, Result, check, session, sources, steps, stores};

/// What `segflow show` asks for besides which tables.
#[derive(Debug, Clone, Default)]
pub struct PreviewOptions {
    /// At most this many rows per table.
    pub limit: usize,
    /// A SQL condition the rows shown must meet (`--where`).
    pub filter: Option<String>,
    pub resources: segflow_pipeline::Resources,
    pub progress: Progress,
}

/// The first rows of one source or step.
#[derive(Debug)]
pub struct Preview {
    pub name: String,
    /// `source`, or the step's kind.
    pub kind: String,
    pub schema: SchemaRef,
    pub rows: Vec<RecordBatch>,
    /// A step's rows (meeting the filter, if any); unknown for a source, whose files
    /// would be read whole to count them.
    pub total_rows: Option<u64>,
}

/// Previews of what `chosen` picks (sources first, then steps in plan order), and the
/// checks of severity `error` that failed on the way (which would have stopped a run).
#[derive(Debug)]
pub struct Previewed {
    pub tables: Vec<Preview>,
    pub failed_checks: Vec<String>,
}

pub async fn preview(
    pipeline: &Pipeline,
    chosen: &Chosen,
    options: &PreviewOptions,
) -> Result<Previewed> {
    preview_inner(pipeline, chosen, options)
        .await
        .map_err(|error| error.blaming_variables(pipeline))
}

async fn preview_inner(
    pipeline: &Pipeline,
    chosen: &Chosen,
    options: &PreviewOptions,
) -> Result<Previewed> {
    let graph = check::check(pipeline).await?;
    let needed = chosen.with_inputs(&graph)?;
    let ran = run_unpublished(pipeline, &needed, &options.resources, &options.progress).await?;
    let (ctx, outcome) = (&ran.ctx, &ran.outcome);

    let mut tables = Vec::new();
    for name in &chosen.sources {
        tables.push(first_rows(ctx, name, "source".into(), None, options).await?);
    }
    for name in &chosen.steps {
        let report = outcome.reports.iter().find(|report| &report.name == name);
        let kind = graph.step(name).map_or_else(String::new, |planned| {
            planned.step.kind.as_str().to_string()
        });
        let rows = report.map(|report| report.rows_out);
        tables.push(first_rows(ctx, name, kind, rows, options).await?);
    }
    Ok(Previewed {
        tables,
        failed_checks: crate::run::validation_failures(&outcome.reports),
    })
}

/// A session of its own in which `steps` (in plan order, with everything they read) ran
/// in this process, nothing staged, every result kept for the caller to read.
pub(crate) struct Unpublished {
    pub ctx: SessionContext,
    pub outcome: StepsOutcome,
    /// Holds the results the session's tables read (in memory or spilled).
    _results: StepResults,
}

/// Runs `steps` as a run would, but for a caller that reads their results (`show`, a
/// test's starting rows) rather than publishing them.
pub(crate) async fn run_unpublished(
    pipeline: &Pipeline,
    steps: &[&PlannedStep],
    asked: &segflow_pipeline::Resources,
    progress: &Progress,
) -> Result<Unpublished> {
    let resources = RunResources::new(&pipeline.resources, asked);
    let ctx = session::session(&resources)?;
    let results = session::step_results(&ctx, &resources)?;
    stores::register_stores(&ctx, pipeline)?;
    stores::preflight(&ctx, &pipeline.stores).await?;
    let source_rejects = sources::register_sources(&ctx, &pipeline.sources)
        .await?
        .rejects;
    let table_rows = source_rejects
        .iter()
        .map(|rejects| (rejects.source.clone(), rejects.rows_out))
        .collect();
    let settings = steps::StepsSettings {
        results: &results,
        execution: &InProcess,
        max_concurrent: crate::RunOptions::default().max_concurrent_steps,
        // Every result is read after the steps.
        keep: None,
        read_columns: &ReadColumns::default(),
        profile: false,
        progress,
        // Nothing runs here that will be published: nothing to compare with.
        baseline: &Baseline::default(),
    };
    match steps::run_steps(&ctx, steps, settings, table_rows).await {
        Ok(outcome) => Ok(Unpublished {
            ctx,
            outcome,
            _results: results,
        }),
        Err(error) => Err(sources::name_the_source(&ctx, pipeline, steps, error).await),
    }
}

/// The first rows of the registered table `name`; with a filter, the step's count is of
/// the rows meeting it.
async fn first_rows(
    ctx: &SessionContext,
    name: &str,
    kind: String,
    rows: Option<u64>,
    options: &PreviewOptions,
) -> Result<Preview> {
    let failed = |error: DataFusionError| EngineError::Step {
        step: name.to_string(),
        origin: match options.filter {
            Some(_) => "segflow show --where".to_string(),
            None => "segflow show".to_string(),
        },
        error: Box::new(error),
    };
    let condition = options
        .filter
        .as_deref()
        .map(|filter| format!(" WHERE {filter}"))
        .unwrap_or_default();
    let table = quote(name);
    // Options that allow only a query: the condition is the user's SQL.
    let frame = ctx
        .sql_with_options(
            &format!("SELECT * FROM {table}{condition} LIMIT {}", options.limit),
            query_only(),
        )
        .await
        .map_err(failed)?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(failed)?;
    let total_rows = match (rows, &options.filter) {
        (Some(_), Some(_)) => Some(
            count(ctx, &format!("{table}{condition}"))
                .await
                .map_err(failed)?,
        ),
        (rows, _) => rows,
    };
    Ok(Preview {
        name: name.to_string(),
        kind,
        schema,
        rows: batches,
        total_rows,
    })
}

async fn count(ctx: &SessionContext, from: &str) -> datafusion::error::Result<u64> {
    let batches = ctx
        .sql_with_options(&format!("SELECT count(*) FROM {from}"), query_only())
        .await?
        .collect()
        .await?;
    let counted = batches
        .first()
        .and_then(|batch| {
            batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
        })
        .map_or(0, |counts| counts.value(0));
    Ok(u64::try_from(counted).unwrap_or(0))
}
