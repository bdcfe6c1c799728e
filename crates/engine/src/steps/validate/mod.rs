//! Validate steps: each check compiled to SQL, quarantined rows set aside with their reasons.
//!
//! Row-level checks become two columns of one query over the input, a failure flag and a
//! readable reason ([`sql`]), so the input is read once and every row's verdicts are known
//! together; each check's failures are counted as the flagged rows are written. The step's
//! output is the input minus rows failing a quarantine check: a view over the flagged rows
//! rather than a second copy of a table that may be larger than memory. The failing rows go
//! to the rejects table, once each, with the names of the checks they failed and why.
//! Table-level checks (row_count, freshness, schema, sql) run as their own small queries
//! ([`report`]).

mod report;
mod sql;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use std::time::Instant;

use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use segflow_pipeline::{Severity, Validate};
use segflow_plan::PlannedStep;

pub use sql::flagging_sql;

use super::settings::StepsSettings;
use crate::execution::{Query, Ran, Scan};
use crate::report::StepReport;
use crate::sql::{
    QUARANTINED, fail_column, flagged_table, is_flag_column, literal, query_only, quote,
    reason_column, rejects_table, set_aside_table,
};
use crate::{EngineError, Result};
use report::{TableCheckInput, measure_table_check, row_check_report, table_check_report};

/// A validate step's rejected rows, registered as `table`: `step`, `checks`, `reasons`,
/// then the input's columns.
#[derive(Debug)]
pub struct Rejects {
    pub step: String,
    pub table: String,
    pub rows: u64,
}

/// Runs a validate step; returns its report, its rejects (none without quarantine checks),
/// the file scans of its flagging query and what its table-level checks measured. With `streamed_input`, the input is that
/// step's query, which runs as part of the flagging query: the scans are its, and an
/// error running the flagging query is reported as its (the checks' SQL is generated and
/// planned; the step's SQL is what fails on bad data).
pub async fn run_validate(
    ctx: &SessionContext,
    planned: &PlannedStep,
    validate: &Validate,
    settings: StepsSettings<'_>,
    streamed_input: Option<&PlannedStep>,
) -> Result<(StepReport, Option<Rejects>, Vec<Scan>, TableMeasures)> {
    let step = &planned.step;
    let started = Instant::now();
    let sql_error = |error| EngineError::Step {
        step: step.name.clone(),
        origin: step.key.clone(),
        error: Box::new(error),
    };

    let input = ctx
        .table(validate.input.as_str())
        .await
        .map_err(sql_error)?;
    let input_schema = Arc::new(input.schema().as_arrow().clone());
    let columns: Vec<String> = input_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let flagged_name = flagged_table(&step.name);
    let sample_key: Vec<String> = if validate.sample_key.is_empty() {
        columns.iter().take(1).cloned().collect()
    } else {
        validate.sample_key.clone()
    };
    // The input's columns the flagged table holds: those later steps read and those the
    // reports of its checks read (sample keys, table-level checks' columns). Where rows
    // cannot be set aside while flagging, the rejects are found in the flagged table
    // afterwards, so it keeps them all.
    let held_columns: Vec<String> = match settings.read_columns.of(&step.name) {
        Some(read) if settings.execution.sets_aside() => {
            let mut needed: HashSet<&str> = read.iter().map(String::as_str).collect();
            needed.extend(sample_key.iter().map(String::as_str));
            // Row-level checks are flagged before; the others read the flagged table.
            for check in validate.checks.iter().filter(|c| !c.kind.is_row_level()) {
                needed.extend(check.kind.input_columns());
            }
            let held = |column: &&String| needed.contains(column.as_str());
            columns.iter().filter(held).cloned().collect()
        }
        _ => columns.clone(),
    };
    // Materialises `sql` as the table `name`. With `aside`, also the rows whose quarantined
    // flag is true as that table, where the execution sets rows aside (`Ran::set_aside`
    // says whether it did). With `only_input`, the table holds only those of the input's
    // columns, and the flags.
    let materialise = |name: String,
                       sql: String,
                       tally: Vec<String>,
                       aside: Option<String>,
                       only_input: Option<Vec<String>>| async move {
        let frame = ctx.sql_with_options(&sql, query_only()).await?;
        let held: Option<Vec<String>> = only_input.map(|input| {
            let fields = frame.schema().fields().iter().map(|field| field.name());
            fields
                .filter(|column| is_flag_column(column) || input.contains(column))
                .cloned()
                .collect()
        });
        let held: Option<Vec<&str>> = held
            .as_ref()
            .map(|columns| columns.iter().map(String::as_str).collect());
        let tally: Vec<&str> = tally.iter().map(String::as_str).collect();
        let aside = aside.as_deref().map(|table| (QUARANTINED, table));
        let query = Query {
            name: &name,
            frame,
            tally: &tally,
            aside,
            held: held.as_deref(),
            step: &step.name,
            progress: settings.progress,
            profile: settings.profile,
        };
        let ran = settings
            .execution
            .materialise(ctx, settings.results, query)
            .await?;
        Ok::<_, DataFusionError>(Ran {
            profile: ran.profile.map(|profile| format!("-- {name}\n{profile}")),
            ..ran
        })
    };

    let row_checks: Vec<usize> = validate
        .checks
        .iter()
        .enumerate()
        .filter(|(_, check)| check.kind.is_row_level())
        .map(|(index, _)| index)
        .collect();
    let quarantine: Vec<usize> = row_checks
        .iter()
        .copied()
        .filter(|&i| validate.checks[i].severity == Severity::Quarantine)
        .collect();
    let quarantined_condition = if quarantine.is_empty() {
        "false".to_string()
    } else {
        quarantine
            .iter()
            .map(|&i| fail_column(i))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    // Flagging the rows also counts each check's failures and the quarantined rows, so the
    // flagged table (as large as the input) is not read again to count them.
    let mut tally: Vec<String> = row_checks.iter().map(|&i| fail_column(i)).collect();
    tally.push(QUARANTINED.to_string());
    let aside_name = set_aside_table(&step.name);
    let flagged = materialise(
        flagged_name.clone(),
        format!(
            "SELECT *, {quarantined_condition} AS {QUARANTINED} FROM ({})",
            flagging_sql(validate, &columns)
        ),
        tally,
        (!quarantine.is_empty()).then(|| aside_name.clone()),
        (held_columns.len() < columns.len()).then(|| held_columns.clone()),
    )
    .await
    .map_err(|error| match streamed_input {
        Some(input) => EngineError::step(&input.step, error),
        None => sql_error(error),
    })?;
    let rows_in = flagged.materialised.rows;
    let (rows_quarantined_flagged, failing) = flagged
        .materialised
        .trues
        .split_last()
        .expect("the quarantined rows are tallied");
    let rows_out = rows_in - rows_quarantined_flagged;
    let failing: HashMap<usize, u64> = row_checks
        .iter()
        .copied()
        .zip(failing.iter().copied())
        .collect();

    // The output is not written again: the steps reading it filter the flagged rows.
    let held_list: Vec<String> = held_columns.iter().map(|c| quote(c)).collect();
    let output = ctx
        .sql_with_options(
            &format!(
                "SELECT {} FROM {flagged_name} WHERE NOT {QUARANTINED}",
                held_list.join(", ")
            ),
            query_only(),
        )
        .await
        .map_err(sql_error)?;
    settings
        .results
        .register_view(ctx, &step.name, output, &flagged_name)
        .map_err(sql_error)?;

    let input_list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let rejects = if quarantine.is_empty() {
        None
    } else {
        let names: Vec<String> = quarantine
            .iter()
            .map(|&i| {
                format!(
                    "CASE WHEN {} THEN {} END",
                    fail_column(i),
                    literal(&validate.checks[i].name)
                )
            })
            .collect();
        let reasons: Vec<String> = quarantine.iter().map(|&i| reason_column(i)).collect();
        // The quarantined rows, set aside while flagging when the flagged rows are held here
        // (with every column of the input's, whichever the flagged table holds).
        let read_from = match flagged.set_aside {
            true => &aside_name,
            false => &flagged_name,
        };
        let sql = format!(
            "SELECT {} AS step, concat_ws(', ', {}) AS checks, concat_ws('; ', {}) AS reasons, {} FROM {read_from} WHERE {QUARANTINED}",
            literal(&step.name),
            names.join(", "),
            reasons.join(", "),
            input_list.join(", ")
        );
        let table = rejects_table(&step.name);
        let rejected = materialise(table.clone(), sql, Vec::new(), None, None)
            .await
            .map_err(sql_error)?;
        if flagged.set_aside {
            settings.results.release(ctx, &aside_name);
        }
        Some(Rejects {
            step: step.name.clone(),
            table,
            rows: rejected.materialised.rows,
        })
    };
    let rows_quarantined: u64 = rejects.as_ref().map_or(0, |r| r.rows);
    if rows_in != rows_out + rows_quarantined {
        return Err(EngineError::RowAccounting {
            at: format!("step `{}`", step.name),
            rows_in,
            rows_out,
            rows_quarantined,
        });
    }

    let mut measured = TableMeasures {
        step: step.name.clone(),
        schema: input_schema.clone(),
        checks: Vec::new(),
    };
    for (index, check) in validate.checks.iter().enumerate() {
        if failing.contains_key(&index) {
            continue;
        }
        if let Some(batches) = measure_table_check(ctx, &flagged_name, check)
            .await
            .map_err(sql_error)?
        {
            measured.checks.push((index, batches));
        }
    }
    let mut checks = Vec::with_capacity(validate.checks.len());
    for (index, check) in validate.checks.iter().enumerate() {
        let report = if let Some(&failing) = failing.get(&index) {
            let counts = (failing, rows_in);
            row_check_report(ctx, &flagged_name, index, check, counts, &sample_key)
                .await
                .map_err(sql_error)?
        } else {
            let input = TableCheckInput {
                step: &step.name,
                table: &validate.input,
                schema: &input_schema,
                rows: rows_in,
                baseline: settings.baseline,
            };
            table_check_report(ctx, &input, (index, check), measured.of(index))
                .await
                .map_err(sql_error)?
        };
        checks.push(report);
    }
    let report = StepReport {
        name: step.name.clone(),
        kind: step.kind.as_str().to_string(),
        sql: step.key.clone(),
        reads: planned.reads.clone(),
        rows_in,
        rows_out,
        rows_removed: None,
        rows_quarantined,
        checks,
        spilled: flagged.materialised.spilled,
        streamed_into: None,
        duration_ms: started.elapsed().as_millis() as u64,
        profile: flagged.profile,
    };
    Ok((report, rejects, flagged.scans, measured))
}

/// A validate step that ran once per bucket (`parts`, in bucket order, with `measures`,
/// what each run's table-level checks measured) as one report: rows summed, each
/// row-level check's failing rows summed and its status judged on the sums (its samples
/// the first buckets'), each table-level check judged on every bucket's measures together,
/// so that the report is the one a single run over all the rows gives.
pub async fn over_buckets(
    ctx: &SessionContext,
    planned: &PlannedStep,
    parts: Vec<StepReport>,
    measures: &[TableMeasures],
    baseline: &crate::baseline::Baseline,
) -> Result<StepReport> {
    let step = &planned.step;
    let validate = step
        .validate
        .as_ref()
        .expect("over_buckets is given a validate step");
    let per_check: Vec<Vec<crate::report::CheckReport>> =
        parts.iter().map(|part| part.checks.clone()).collect();
    let mut report = StepReport::summed(parts);
    let schema = match measures.first() {
        Some(measured) => measured.schema.clone(),
        None => return Ok(report),
    };
    let mut checks = Vec::with_capacity(validate.checks.len());
    for (index, check) in validate.checks.iter().enumerate() {
        let judged = if check.kind.is_row_level() {
            let failing = per_check.iter().map(|part| part[index].failing_rows).sum();
            let samples = per_check
                .iter()
                .flat_map(|part| part[index].samples.iter().cloned())
                .take(report::SAMPLES)
                .collect();
            report::row_check_outcome(check, (failing, report.rows_in), samples)
        } else {
            let measured: Vec<RecordBatch> = measures
                .iter()
                .flat_map(|measured| measured.of(index).iter().cloned())
                .collect();
            let input = TableCheckInput {
                step: &step.name,
                table: &validate.input,
                schema: &schema,
                rows: report.rows_in,
                baseline,
            };
            table_check_report(ctx, &input, (index, check), &measured)
                .await
                .map_err(|error| EngineError::step(step, error))?
        };
        checks.push(judged);
    }
    report.checks = checks;
    Ok(report)
}

/// What a validate step's table-level checks measured of its input's rows (one row per
/// check, [`report::measure_table_check`]), kept so a step run bucket by bucket can
/// judge them on every bucket's measures together.
#[derive(Debug, Clone)]
pub struct TableMeasures {
    pub step: String,
    /// The input's schema, for `schema` checks.
    pub schema: SchemaRef,
    /// By check index; checks that need no rows measure nothing.
    pub checks: Vec<(usize, Vec<RecordBatch>)>,
}

impl TableMeasures {
    fn of(&self, index: usize) -> &[RecordBatch] {
        self.checks
            .iter()
            .find(|(measured, _)| *measured == index)
            .map_or(&[], |(_, batches)| batches.as_slice())
    }
}
