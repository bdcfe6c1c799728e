//! Runs the SQL steps in plan order. Each result is materialised (in memory, or on disk when
//! it does not fit: see [`StepResults`]) and registered under the step's name, so later
//! steps (and the segment stage) read it without running its SQL again, and its row count
//! is exact. A result no step still to run reads is released.
//!
//! One exception: a step whose only reader is the validate step checking it is streamed
//! into that step ([`streamed_steps`]). The validate step writes its input once, flagged,
//! whatever it is; materialising the input first would write a table as large as the
//! input twice. Its rows are the validate step's rows in, so its count stays exact.

mod settings;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use segflow_pipeline::{CheckKind, StepKind};
use segflow_plan::PlannedStep;

pub use settings::StepsSettings;

use crate::execution::{Query, Scan};
use crate::report::StepReport;
use crate::results::StepResults;
use crate::sql::{only_columns, query_only};
use crate::{EngineError, Result, contract};
use arrow::array::AsArray;
use validate::{Rejects, TableMeasures, run_validate};

/// What the steps did: their reports (in plan order), their rejects, and the file scans
/// they ran (to count the rows read from each source).
#[derive(Debug, Default)]
pub struct StepsOutcome {
    pub reports: Vec<StepReport>,
    pub rejects: Vec<Rejects>,
    pub scans: Vec<Scan>,
    /// What the validate steps' table-level checks measured, to judge them again on
    /// several runs' measures together (a step run bucket by bucket).
    pub measures: Vec<TableMeasures>,
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
    let streamed = streamed_steps(steps, settings.keep);
    let mut step_rows = table_rows;
    let mut outcome = StepsOutcome::default();
    let mut ran = 0;
    for level in levels.into_values() {
        ran += level.len();
        let done: Vec<StepDone> = futures::stream::iter(level.into_iter().map(|planned| {
            let streamed_input = streamed_input(planned, steps, &streamed);
            run_step(
                ctx,
                planned,
                settings,
                &step_rows,
                &streamed,
                streamed_input,
            )
        }))
        .buffered(settings.max_concurrent.max(1))
        .try_collect()
        .await?;
        for (report, rejects, scans, measures) in done {
            outcome.measures.extend(measures);
            // A streamed step is reported once its reader has run.
            let Some(report) = report else {
                continue;
            };
            let streamed_input = streamed_input(step_named(steps, &report.name), steps, &streamed);
            if let Some(input) = streamed_input {
                let input = streamed_report(input, &report, &scans, &step_rows, settings);
                step_rows.insert(input.name.clone(), input.rows_out);
                outcome.reports.push(input);
            }
            step_rows.insert(report.name.clone(), report.rows_out);
            outcome.reports.push(report);
            outcome.rejects.extend(rejects);
            outcome.scans.extend(scans);
        }
        if let Some(keep) = settings.keep {
            release_unread(ctx, settings.results, steps, ran, keep, &streamed);
        }
    }
    let order = |name: &str| steps.iter().position(|p| p.step.name == name);
    outcome.reports.sort_by_key(|report| order(&report.name));
    Ok(outcome)
}

enum NullsOr {
    Query(datafusion::error::DataFusionError),
    Found(EngineError),
}

/// Fails when the result `step` holds nulls in a column its contract says holds none: one
/// query over the held result, counting every such column at once.
async fn count_contract_nulls(
    ctx: &SessionContext,
    step: &str,
    columns: &[&str],
) -> std::result::Result<(), NullsOr> {
    let counts: Vec<String> = columns
        .iter()
        .map(|column| format!("count(*) - count({})", crate::sql::quote(column)))
        .collect();
    let sql = format!(
        "SELECT {} FROM {}",
        counts.join(", "),
        crate::sql::quote(step)
    );
    let batches = crate::sql::collect(ctx, &sql)
        .await
        .map_err(NullsOr::Query)?;
    let row = &batches[0];
    let problems: Vec<String> = columns
        .iter()
        .enumerate()
        .filter_map(|(index, column)| {
            let nulls = arrow::compute::cast(row.column(index), &arrow::datatypes::DataType::Int64)
                .ok()?
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0);
            (nulls > 0).then(|| {
                format!("column `{column}` holds {nulls} nulls; the contract says it holds none")
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(NullsOr::Found(EngineError::ContractBroken {
            table: step.to_string(),
            problems,
        }))
    }
}

/// Steps streamed into their reader rather than materialised, each with that reader: the
/// steps (not `keep`, the result read after the steps) read by one step only, a validate
/// step checking them whose checks read nothing but its input and the flagged rows. A
/// relationship or SQL check may read the input again by name, which would run its SQL
/// a second time. Without `keep`, the caller reads every result, so none is streamed.
fn streamed_steps<'a>(
    steps: &[&'a PlannedStep],
    keep: Option<&[&str]>,
) -> HashMap<&'a str, &'a str> {
    let Some(keep) = keep else {
        return HashMap::new();
    };
    let mut streamed = HashMap::new();
    for planned in steps {
        let name = planned.step.name.as_str();
        // A contract's nulls are counted on the step's materialised result.
        let counts_nulls = planned
            .step
            .contract
            .as_ref()
            .is_some_and(|c| !contract::non_null_columns(c).is_empty());
        if keep.contains(&name) || planned.step.validate.is_some() || counts_nulls {
            continue;
        }
        let mut readers = steps
            .iter()
            .filter(|later| later.reads.iter().any(|table| table == name));
        let (Some(reader), None) = (readers.next(), readers.next()) else {
            continue;
        };
        let checks_only_its_input = reader.step.validate.as_ref().is_some_and(|validate| {
            validate.input == name
                && validate.checks.iter().all(|check| {
                    !matches!(
                        check.kind,
                        CheckKind::Relationships { .. } | CheckKind::Sql { .. }
                    )
                })
        });
        if checks_only_its_input {
            streamed.insert(name, reader.step.name.as_str());
        }
    }
    streamed
}

/// The step streamed into `planned` (a validate step), if any.
fn streamed_input<'a>(
    planned: &PlannedStep,
    steps: &[&'a PlannedStep],
    streamed: &HashMap<&str, &str>,
) -> Option<&'a PlannedStep> {
    let validate = planned.step.validate.as_ref()?;
    let input = validate.input.as_str();
    (streamed.get(input) == Some(&planned.step.name.as_str())).then(|| step_named(steps, input))
}

fn step_named<'a>(steps: &[&'a PlannedStep], name: &str) -> &'a PlannedStep {
    steps
        .iter()
        .find(|planned| planned.step.name == name)
        .expect("reports are of the steps that ran")
}

/// The report of a step streamed into `reader`: its rows out are the reader's rows in, and
/// the reader's scans are its own (the reader reads nothing else). Its time is part of the
/// reader's.
fn streamed_report(
    planned: &PlannedStep,
    reader: &StepReport,
    reader_scans: &[Scan],
    step_rows: &HashMap<String, u64>,
    settings: StepsSettings<'_>,
) -> StepReport {
    // On the live display the step took as long as the reader it ran inside.
    settings
        .progress
        .step_done(&planned.step.name, reader.rows_in, reader.duration_ms);
    StepReport {
        streamed_into: Some(reader.name.clone()),
        profile: settings.profile.then(|| {
            format!(
                "streamed into {}: its operators are in that step's profile",
                reader.name
            )
        }),
        ..sql_step_report(planned, reader_scans, step_rows, reader.rows_in)
    }
}

/// The report of a clean or merge step that read `scans` from sources and the results of
/// `step_rows` and produced `rows_out` rows; not spilled, no time, no profile.
fn sql_step_report(
    planned: &PlannedStep,
    scans: &[Scan],
    step_rows: &HashMap<String, u64>,
    rows_out: u64,
) -> StepReport {
    let step = &planned.step;
    let rows_in = scans.iter().map(|scan| scan.rows).sum::<u64>()
        + planned
            .reads
            .iter()
            .filter_map(|table| step_rows.get(table))
            .sum::<u64>();
    StepReport {
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
        spilled: false,
        streamed_into: None,
        duration_ms: 0,
        profile: None,
    }
}

/// Releases the results of steps that ran (the first `ran` in level order) and that no
/// step still to run reads, except `keep`. A streamed step's reader reads what it reads.
fn release_unread(
    ctx: &SessionContext,
    results: &StepResults,
    steps: &[&PlannedStep],
    ran: usize,
    keep: &[&str],
    streamed: &HashMap<&str, &str>,
) {
    let mut by_level: Vec<&PlannedStep> = steps.to_vec();
    by_level.sort_by_key(|planned| planned.level);
    let (done, to_run) = by_level.split_at(ran);
    let reads = |planned: &PlannedStep| -> Vec<String> {
        let mut reads = planned.reads.clone();
        for table in &planned.reads {
            if streamed.contains_key(table.as_str()) {
                reads.extend(step_named(steps, table).reads.iter().cloned());
            }
        }
        reads
    };
    for planned in done {
        let name = planned.step.name.as_str();
        let still_read = to_run
            .iter()
            .any(|later| reads(later).iter().any(|table| table == name));
        if !keep.contains(&name) && !still_read {
            results.release(ctx, name);
        }
    }
}

/// Runs one step; `step_rows` holds the row counts of the steps that ran before it. A
/// streamed step is only planned and registered (its reader runs it), and has no report yet.
async fn run_step(
    ctx: &SessionContext,
    planned: &PlannedStep,
    settings: StepsSettings<'_>,
    step_rows: &HashMap<String, u64>,
    streamed: &HashMap<&str, &str>,
    streamed_input: Option<&PlannedStep>,
) -> Result<StepDone> {
    let step = &planned.step;
    settings.progress.step_started(&step.name);
    if let Some(validate) = &step.validate {
        let (report, rejects, scans, measures) =
            run_validate(ctx, planned, validate, settings, streamed_input).await?;
        settings
            .progress
            .step_done(&step.name, report.rows_out, report.duration_ms);
        return Ok((Some(report), rejects, scans, Some(measures)));
    }
    let started = Instant::now();
    let sql_error = |error| EngineError::step(step, error);
    tracing::info!(step = %step.name, reads = ?planned.reads, "running step");
    let mut frame = ctx
        .sql_with_options(&step.sql, query_only())
        .await
        .map_err(sql_error)?;
    if let Some(reader) = streamed.get(step.name.as_str()) {
        tracing::info!(step = %step.name, into = reader, "streamed into its reader");
        settings
            .progress
            .step_state(&step.name, &format!("streams into {reader}"));
        settings
            .results
            .register_query(ctx, &step.name, frame)
            .map_err(sql_error)?;
        return Ok((None, None, Vec::new(), None));
    }
    let non_null: Vec<&str> = step
        .contract
        .as_ref()
        .map(contract::non_null_columns)
        .unwrap_or_default();
    if let Some(columns) = settings.read_columns.of(&step.name) {
        // The columns whose nulls the contract counts are held too, read later or not.
        let mut held = columns.to_vec();
        held.extend(
            non_null
                .iter()
                .filter(|column| !columns.iter().any(|c| c == *column))
                .map(|column| column.to_string()),
        );
        frame = only_columns(ctx, frame, &held).map_err(sql_error)?;
    }
    let query = Query {
        name: &step.name,
        frame,
        tally: &[],
        aside: None,
        held: None,
        step: &step.name,
        progress: settings.progress,
        profile: settings.profile,
    };
    let ran = settings
        .execution
        .materialise(ctx, settings.results, query)
        .await
        .map_err(sql_error)?;
    let (materialised, scans) = (ran.materialised, ran.scans);
    let rows_out = materialised.rows;
    if !non_null.is_empty() {
        count_contract_nulls(ctx, &step.name, &non_null)
            .await
            .map_err(|error| match error {
                NullsOr::Query(error) => sql_error(error),
                NullsOr::Found(error) => error,
            })?;
    }
    let report = StepReport {
        spilled: materialised.spilled,
        duration_ms: started.elapsed().as_millis() as u64,
        profile: ran.profile,
        ..sql_step_report(planned, &scans, step_rows, rows_out)
    };
    tracing::info!(step = %step.name, rows_in = report.rows_in, rows_out, spilled = report.spilled, "step done");
    settings
        .progress
        .step_done(&step.name, rows_out, report.duration_ms);
    Ok((Some(report), None, scans, None))
}

/// What one step left: its report (none yet for a streamed step), rejects, file scans and
/// a validate step's measures.
type StepDone = (
    Option<StepReport>,
    Option<Rejects>,
    Vec<Scan>,
    Option<TableMeasures>,
);
