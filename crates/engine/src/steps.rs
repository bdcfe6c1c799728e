//! Runs the SQL steps in plan order. Each result is materialised in memory and registered
//! under the step's name, so later steps (and the segment stage) read it without running
//! its SQL again, and its row count is exact.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::physical_plan::{ExecutionPlan, collect_partitioned};
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use segflow_plan::PlannedStep;

use crate::report::StepReport;
use crate::{EngineError, Result};

/// Runs `steps` (in plan order) level by level: steps on one level do not read each other,
/// so up to `max_concurrent` of them run at once. Reports come back in plan order.
pub async fn run_steps(
    ctx: &SessionContext,
    steps: &[&PlannedStep],
    max_concurrent: usize,
) -> Result<Vec<StepReport>> {
    let mut levels: BTreeMap<usize, Vec<&PlannedStep>> = BTreeMap::new();
    for planned in steps {
        levels.entry(planned.level).or_default().push(planned);
    }
    let mut step_rows = HashMap::new();
    let mut reports = Vec::with_capacity(steps.len());
    for level in levels.into_values() {
        let done: Vec<StepReport> = futures::stream::iter(
            level
                .into_iter()
                .map(|planned| run_step(ctx, planned, &step_rows)),
        )
        .buffered(max_concurrent)
        .try_collect()
        .await?;
        for report in done {
            step_rows.insert(report.name.clone(), report.rows_out);
            reports.push(report);
        }
    }
    let order = |name: &str| steps.iter().position(|p| p.step.name == name);
    reports.sort_by_key(|report| order(&report.name));
    Ok(reports)
}

/// Runs one step; `step_rows` holds the row counts of the steps that ran before it.
async fn run_step(
    ctx: &SessionContext,
    planned: &PlannedStep,
    step_rows: &HashMap<String, u64>,
) -> Result<StepReport> {
    let step = &planned.step;
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
    let report = StepReport {
        name: step.name.clone(),
        kind: step.kind.as_str().to_string(),
        sql: step.sql_origin(),
        reads: planned.reads.clone(),
        rows_in: rows_scanned(physical.as_ref())
            + planned
                .reads
                .iter()
                .filter_map(|table| step_rows.get(table))
                .sum::<u64>(),
        rows_out,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    tracing::info!(step = %step.name, rows_in = report.rows_in, rows_out, "step done");
    Ok(report)
}

/// The planner already allows only queries; this also refuses DDL/DML should one slip by.
pub fn query_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Rows the plan's file scans produced: what the step read from sources. (Earlier steps'
/// results are in-memory tables, which keep no scan metrics; the caller counts those.)
fn rows_scanned(plan: &dyn ExecutionPlan) -> u64 {
    let children = plan.children();
    if children.is_empty() {
        return plan
            .metrics()
            .and_then(|metrics| metrics.output_rows())
            .unwrap_or(0) as u64;
    }
    children
        .iter()
        .map(|child| rows_scanned(child.as_ref()))
        .sum()
}
