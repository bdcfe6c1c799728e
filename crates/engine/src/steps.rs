//! Runs the SQL steps in plan order. Each result is materialised (in memory, or on disk when
//! it does not fit: see [`StepResults`]) and registered under the step's name, so later
//! steps (and the segment stage) read it without running its SQL again, and its row count
//! is exact. A result no step still to run reads is released.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::context::SQLOptions;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use segflow_pipeline::StepKind;
use segflow_plan::PlannedStep;

use crate::report::StepReport;
use crate::results::StepResults;
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

/// How the steps run, beyond which steps.
#[derive(Clone, Copy)]
pub struct StepsSettings<'a> {
    pub results: &'a StepResults,
    /// At most this many independent steps run at once (at least 1).
    pub max_concurrent: usize,
    /// Results kept after the last step reading them: the segment input, or every result
    /// (`None`) when the caller reads them all.
    pub keep: Option<&'a str>,
    /// Add each step's executed plan with its metrics to its report.
    pub profile: bool,
    pub progress: &'a crate::Progress,
}

/// Runs `steps` (in plan order) level by level: steps on one level do not read each other,
/// so up to `max_concurrent` of them run at once. `table_rows` holds the row counts of
/// in-memory tables the steps may read (quarantining sources).
pub async fn run_steps(
    ctx: &SessionContext,
    steps: &[&PlannedStep],
    settings: StepsSettings<'_>,
    table_rows: HashMap<String, u64>,
) -> Result<StepsOutcome> {
    let mut levels: BTreeMap<usize, Vec<&PlannedStep>> = BTreeMap::new();
    for planned in steps {
        levels.entry(planned.level).or_default().push(planned);
    }
    let mut step_rows = table_rows;
    let mut outcome = StepsOutcome::default();
    let mut ran = 0;
    for level in levels.into_values() {
        ran += level.len();
        let done: Vec<(StepReport, Option<Rejects>, Vec<Scan>)> = futures::stream::iter(
            level
                .into_iter()
                .map(|planned| run_step(ctx, planned, settings, &step_rows)),
        )
        .buffered(settings.max_concurrent.max(1))
        .try_collect()
        .await?;
        for (report, rejects, scans) in done {
            step_rows.insert(report.name.clone(), report.rows_out);
            outcome.reports.push(report);
            outcome.rejects.extend(rejects);
            outcome.scans.extend(scans);
        }
        if let Some(keep) = settings.keep {
            release_unread(ctx, settings.results, steps, ran, keep);
        }
    }
    let order = |name: &str| steps.iter().position(|p| p.step.name == name);
    outcome.reports.sort_by_key(|report| order(&report.name));
    Ok(outcome)
}

/// Releases the results of steps that ran (the first `ran` in level order) and that no
/// step still to run reads, except `keep`.
fn release_unread(
    ctx: &SessionContext,
    results: &StepResults,
    steps: &[&PlannedStep],
    ran: usize,
    keep: &str,
) {
    let mut by_level: Vec<&PlannedStep> = steps.to_vec();
    by_level.sort_by_key(|planned| planned.level);
    let (done, to_run) = by_level.split_at(ran);
    for planned in done {
        let name = planned.step.name.as_str();
        let still_read = to_run
            .iter()
            .any(|later| later.reads.iter().any(|table| table == name));
        if name != keep && !still_read {
            results.release(ctx, name);
        }
    }
}

/// Runs one step; `step_rows` holds the row counts of the steps that ran before it.
async fn run_step(
    ctx: &SessionContext,
    planned: &PlannedStep,
    settings: StepsSettings<'_>,
    step_rows: &HashMap<String, u64>,
) -> Result<(StepReport, Option<Rejects>, Vec<Scan>)> {
    let step = &planned.step;
    settings.progress.step_started(&step.name);
    if let Some(validate) = &step.validate {
        let (report, rejects) = run_validate(ctx, planned, validate, settings).await?;
        settings
            .progress
            .step_done(&step.name, report.rows_out, report.duration_ms);
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
    let (materialised, scans, profiled) = if settings.results.stores_results() {
        // The plan runs where the engine runs it; its metrics and scans stay there.
        let (stored, ran) = settings
            .results
            .store(ctx, &step.name, frame, &[], (&step.name, settings.progress))
            .await
            .map_err(sql_error)?;
        let profiled = match settings.profile {
            true => Some(executed_profile(ctx, &ran).await),
            false => None,
        };
        (stored, Vec::new(), profiled)
    } else {
        let physical = frame.create_physical_plan().await.map_err(sql_error)?;
        let materialised = settings
            .progress
            .watch(&step.name, &physical, async {
                settings
                    .results
                    .materialise(ctx, &step.name, physical.clone(), &[])
                    .await
            })
            .await
            .map_err(sql_error)?;
        let mut scans = Vec::new();
        collect_scans(physical.as_ref(), &mut scans);
        // A spilled step result is read as files too; its rows are counted as the step's
        // below.
        scans.retain(|scan| !scan.files.iter().any(|file| settings.results.holds(file)));
        let profiled = settings.profile.then(|| profile(physical.as_ref()));
        (materialised, scans, profiled)
    };
    let rows_out = materialised.rows;
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
        spilled: materialised.spilled,
        duration_ms: started.elapsed().as_millis() as u64,
        profile: profiled,
    };
    tracing::info!(step = %step.name, rows_in = report.rows_in, rows_out, spilled = report.spilled, "step done");
    settings
        .progress
        .step_done(&step.name, rows_out, report.duration_ms);
    Ok((report, None, scans))
}

/// The executed plan with each operator's metrics, as `EXPLAIN ANALYZE` shows it.
pub fn profile(plan: &dyn ExecutionPlan) -> String {
    datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan)
        .indent(true)
        .to_string()
}

/// The plan as it ran with its metrics: on a cluster, the stages the executors ran (asked
/// of the scheduler), else as [`profile`] shows it.
pub async fn executed_profile(ctx: &SessionContext, plan: &Arc<dyn ExecutionPlan>) -> String {
    #[cfg(feature = "ballista")]
    if let Some(executed) = crate::distributed::executed_plan(ctx, plan).await {
        return executed;
    }
    let _ = ctx;
    profile(plan.as_ref())
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
