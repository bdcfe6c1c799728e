//! Runs the SQL steps in plan order. Each result is materialised in memory and registered
//! under the step's name, so later steps (and the segment stage) read it without running
//! its SQL again, and its row count is exact.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use datafusion::datasource::MemTable;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::context::SQLOptions;
use datafusion::physical_plan::{ExecutionPlan, collect_partitioned};
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use segflow_pipeline::StepKind;
use segflow_plan::PlannedStep;

use crate::report::StepReport;
use crate::validate::{Rejects, run_validate};
use crate::{EngineError, Result};

/// What the steps did: their reports (in plan order), their rejects, and the file scans
/// they ran (to count the rows read from each source).
#[derive(Debug, Default)]
pub struct StepsOutcome {
    pub reports: Vec<StepReport>,
    pub rejects: Vec<Rejects>,
    pub scans: Vec<Scan>,
}

/// One file scan of a step's plan: the files it read and the rows it produced.
#[derive(Debug)]
pub struct Scan {
    pub files: Vec<String>,
    pub rows: u64,
}

/// Runs `steps` (in plan order) level by level: steps on one level do not read each other,
/// so up to `max_concurrent` of them run at once. `table_rows` holds the row counts of
/// in-memory tables the steps may read (quarantining sources).
pub async fn run_steps(
    ctx: &SessionContext,
    steps: &[&PlannedStep],
    max_concurrent: usize,
    table_rows: HashMap<String, u64>,
) -> Result<StepsOutcome> {
    let mut levels: BTreeMap<usize, Vec<&PlannedStep>> = BTreeMap::new();
    for planned in steps {
        levels.entry(planned.level).or_default().push(planned);
    }
    let mut step_rows = table_rows;
    let mut outcome = StepsOutcome::default();
    for level in levels.into_values() {
        let done: Vec<(StepReport, Option<Rejects>, Vec<Scan>)> = futures::stream::iter(
            level
                .into_iter()
                .map(|planned| run_step(ctx, planned, &step_rows)),
        )
        .buffered(max_concurrent)
        .try_collect()
        .await?;
        for (report, rejects, scans) in done {
            step_rows.insert(report.name.clone(), report.rows_out);
            outcome.reports.push(report);
            outcome.rejects.extend(rejects);
            outcome.scans.extend(scans);
        }
    }
    let order = |name: &str| steps.iter().position(|p| p.step.name == name);
    outcome.reports.sort_by_key(|report| order(&report.name));
    Ok(outcome)
}

/// Runs one step; `step_rows` holds the row counts of the steps that ran before it.
async fn run_step(
    ctx: &SessionContext,
    planned: &PlannedStep,
    step_rows: &HashMap<String, u64>,
) -> Result<(StepReport, Option<Rejects>, Vec<Scan>)> {
    let step = &planned.step;
    if let Some(validate) = &step.validate {
        let (report, rejects) = run_validate(ctx, planned, validate).await?;
        return Ok((report, rejects, Vec::new()));
    }
    let started = Instant::now();
    let sql_error = |error| EngineError::Step {
        step: step.name.clone(),
        origin: step.sql_origin(),
        error: Box::new(error),
    };
    tracing::info!(step = %step.name, reads = ?planned.reads, "running step");
    let frame = ctx
        .sql_with_options(&step.sql, query_only())
        .await
        .map_err(sql_error)?;
    let physical = frame.create_physical_plan().await.map_err(sql_error)?;
    let partitions = collect_partitioned(physical.clone(), ctx.task_ctx())
        .await
        .map_err(sql_error)?;
    let rows_out = partitions
        .iter()
        .flatten()
        .map(|batch| batch.num_rows() as u64)
        .sum();
    let table = MemTable::try_new(physical.schema(), partitions).map_err(sql_error)?;
    ctx.register_table(step.name.as_str(), Arc::new(table))
        .map_err(sql_error)?;
    let mut scans = Vec::new();
    collect_scans(physical.as_ref(), &mut scans);
    let rows_in = scans.iter().map(|scan| scan.rows).sum::<u64>()
        + planned
            .reads
            .iter()
            .filter_map(|table| step_rows.get(table))
            .sum::<u64>();
    let report = StepReport {
        name: step.name.clone(),
        kind: step.kind.as_str().to_string(),
        sql: step.sql_origin(),
        reads: planned.reads.clone(),
        rows_in,
        rows_out,
        // A clean step filters one table: what it did not pass on, its SQL removed.
        rows_removed: (step.kind == StepKind::Clean && planned.reads.len() == 1)
            .then(|| rows_in.saturating_sub(rows_out)),
        rows_quarantined: 0,
        checks: Vec::new(),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    tracing::info!(step = %step.name, rows_in = report.rows_in, rows_out, "step done");
    Ok((report, None, scans))
}

/// The planner already allows only queries; this also refuses DDL/DML should one slip by.
pub fn query_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The plan's file scans: what the step read from sources. (Earlier steps' results are
/// in-memory tables, which keep no scan metrics; the caller counts those.)
fn collect_scans(plan: &dyn ExecutionPlan, scans: &mut Vec<Scan>) {
    if let Some(exec) = plan.downcast_ref::<DataSourceExec>() {
        if let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() {
            scans.push(Scan {
                files: config
                    .file_groups
                    .iter()
                    .flat_map(|group| group.files())
                    .map(|file| file.object_meta.location.to_string())
                    .collect(),
                rows: plan
                    .metrics()
                    .and_then(|metrics| metrics.output_rows())
                    .unwrap_or(0) as u64,
            });
        }
        return;
    }
    for child in plan.children() {
        collect_scans(child.as_ref(), scans);
    }
}
