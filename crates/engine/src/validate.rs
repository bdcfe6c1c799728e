//! Validate steps: each check compiled to SQL, quarantined rows set aside with their reasons.
//!
//! Row-level checks become two columns of one query over the input, a failure flag and a
//! readable reason (`__segflow_fail_<i>`, `__segflow_reason_<i>`), so the input is read
//! once and every row's verdicts are known together; each check's failures are counted
//! as the flagged rows are written. The step's output is the input minus rows failing a quarantine check: a view
//! over the flagged rows rather than a second copy of a table that may be larger than
//! memory. The failing rows go to the rejects table, once each, with the names of the checks
//! they failed and why. Table-level checks (row_count, freshness, schema, sql) run as their
//! own small queries.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use segflow_pipeline::{Check, CheckKind, ColumnType, Severity, Validate, column_type_name};
use segflow_plan::PlannedStep;

use crate::report::{CheckReport, StepReport};
use crate::{EngineError, Result};

const SAMPLES: usize = 5;

/// The flagged table's column telling whether a row fails a quarantine check.
const QUARANTINED: &str = "__segflow_quarantined";

const ANNOTATED_PREFIX: &str = "__segflow_annotated_";

/// The table of a validate step's quarantined rows with their flags, set aside while flagging.
const ASIDE_PREFIX: &str = "__segflow_aside_";

/// The table holding a validate step's input with its flags; the step's output is a view
/// over it.
fn annotated_table(step: &str) -> String {
    format!("{ANNOTATED_PREFIX}{step}")
}

/// For a scan of a validate step's flagged table (which a plan reading the step's output
/// shows once the view is inlined), the step's name.
pub fn validated_step(table: &str) -> Option<&str> {
    table.strip_prefix(ANNOTATED_PREFIX)
}

/// Whether `column` is one a validate step adds to flag rows, not one of its input's.
pub fn is_flag_column(column: &str) -> bool {
    column.starts_with("__segflow_")
}

/// A validate step's rejected rows, registered as `table`: `step`, `checks`, `reasons`,
/// then the input's columns.
#[derive(Debug)]
pub struct Rejects {
    pub step: String,
    pub table: String,
    pub rows: u64,
}

/// The query flagging every row: the input's columns, then per row-level check a failure
/// flag and a reason. Also used by `check` to plan the checks against schemas.
pub fn annotated_sql(validate: &Validate, input_columns: &[String]) -> String {
    let input = quote(&validate.input);
    let mut select: Vec<String> = input_columns
        .iter()
        .map(|column| format!("i.{}", quote(column)))
        .collect();
    let mut joins = String::new();
    for (index, check) in validate.checks.iter().enumerate() {
        let Some((fail, reason)) = row_condition(check, index, &mut joins) else {
            continue;
        };
        select.push(format!("coalesce({fail}, false) AS __segflow_fail_{index}"));
        select.push(format!(
            "CASE WHEN coalesce({fail}, false) THEN {reason} END AS __segflow_reason_{index}"
        ));
    }
    format!("SELECT {} FROM {input} i{joins}", select.join(", "))
}

/// (fail condition, reason expression) for a row-level check; None for table-level ones.
fn row_condition(check: &Check, index: usize, joins: &mut String) -> Option<(String, String)> {
    let value = |column: &str| format!("CAST(i.{} AS VARCHAR)", quote(column));
    let condition = match &check.kind {
        CheckKind::NotNull { column } => (
            format!("i.{} IS NULL", quote(column)),
            literal(&format!("{column} is null")),
        ),
        CheckKind::Unique { columns } => {
            let partition: Vec<String> =
                columns.iter().map(|c| format!("i.{}", quote(c))).collect();
            let values: Vec<String> = columns
                .iter()
                .map(|c| format!("coalesce({}, 'null')", value(c)))
                .collect();
            (
                format!("count(*) OVER (PARTITION BY {}) > 1", partition.join(", ")),
                format!(
                    "concat({}, ' (', {}, ') appears more than once')",
                    literal(&columns.join(", ")),
                    values.join(", ', ', ")
                ),
            )
        }
        CheckKind::AcceptedValues { column, values } => {
            let list: Vec<String> = values.iter().map(|v| v.to_sql()).collect();
            let shown: Vec<String> = values.iter().map(|v| v.display()).collect();
            (
                format!(
                    "i.{} IS NOT NULL AND i.{} NOT IN ({})",
                    quote(column),
                    quote(column),
                    list.join(", ")
                ),
                format!(
                    "concat({}, {}, {})",
                    literal(&format!("{column} ")),
                    value(column),
                    literal(&format!(" is not one of {}", shown.join(", ")))
                ),
            )
        }
        CheckKind::Range {
            column,
            min,
            max,
            min_inclusive,
            max_inclusive,
        } => {
            let col = format!("i.{}", quote(column));
            let below = min.as_ref().map(|min| {
                let op = if *min_inclusive { "<" } else { "<=" };
                let bound = if *min_inclusive {
                    "below the minimum"
                } else {
                    "not above"
                };
                (
                    format!("{col} {op} {}", min.to_sql()),
                    literal(&format!(" is {bound} {}", min.display())),
                )
            });
            let above = max.as_ref().map(|max| {
                let op = if *max_inclusive { ">" } else { ">=" };
                let bound = if *max_inclusive {
                    "above the maximum"
                } else {
                    "not below"
                };
                (
                    format!("{col} {op} {}", max.to_sql()),
                    literal(&format!(" is {bound} {}", max.display())),
                )
            });
            let prefix = format!(
                "concat({}, {}",
                literal(&format!("{column} ")),
                value(column)
            );
            match (below, above) {
                (Some((low, why_low)), Some((high, why_high))) => (
                    format!("({low} OR {high})"),
                    format!("{prefix}, CASE WHEN {low} THEN {why_low} ELSE {why_high} END)"),
                ),
                (Some((low, why)), None) => (low, format!("{prefix}, {why})")),
                (None, Some((high, why))) => (high, format!("{prefix}, {why})")),
                (None, None) => return None,
            }
        }
        CheckKind::Pattern { column, regex } => (
            format!(
                "i.{} IS NOT NULL AND i.{} !~ {}",
                quote(column),
                quote(column),
                literal(regex)
            ),
            format!(
                "concat({}, {}, {})",
                literal(&format!("{column} ")),
                value(column),
                literal(&format!(" does not match {regex}"))
            ),
        ),
        CheckKind::Relationships { column, to, field } => {
            let alias = format!("__segflow_ref_{index}");
            joins.push_str(&format!(
                " LEFT JOIN (SELECT DISTINCT {} AS v FROM {}) {alias} ON i.{} = {alias}.v",
                quote(field),
                quote(to),
                quote(column)
            ));
            (
                format!("i.{} IS NOT NULL AND {alias}.v IS NULL", quote(column)),
                format!(
                    "concat({}, {}, {})",
                    literal(&format!("{column} ")),
                    value(column),
                    literal(&format!(" is not in {to}.{field}"))
                ),
            )
        }
        _ => return None,
    };
    Some(condition)
}

/// Runs a validate step; returns its report, its rejects (none without quarantine checks)
/// and the file scans of its flagging query. With `streamed_input`, the input is that
/// step's query, which runs as part of the flagging query: the scans are its, and an
/// error running the flagging query is reported as its (the checks' SQL is generated and
/// planned; the step's SQL is what fails on bad data).
pub async fn run_validate(
    ctx: &SessionContext,
    planned: &PlannedStep,
    validate: &Validate,
    settings: crate::steps::StepsSettings<'_>,
    streamed_input: Option<&PlannedStep>,
) -> Result<(StepReport, Option<Rejects>, Vec<crate::steps::Scan>)> {
    let step = &planned.step;
    let started = Instant::now();
    let failed = |message: String| EngineError::Segment(format!("step `{}`: {message}", step.name));
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
    let annotated_name = annotated_table(&step.name);
    let sample_key: Vec<String> = if validate.sample_key.is_empty() {
        columns.iter().take(1).cloned().collect()
    } else {
        validate.sample_key.clone()
    };
    // The input's columns the flagged table holds: those later steps read and those the
    // reports of its checks read (sample keys, table-level checks' columns). On a cluster,
    // the rejects are found in the stored result, so it keeps them all.
    let held_columns: Vec<String> = match settings.read_columns.of(&step.name) {
        Some(read) if !settings.results.stores_results() => {
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
    // flag is true as that table, when the result is held here (on a cluster, the rejects
    // are found in the stored result); the last value says whether they were. With
    // `only_input`, the table holds only those of the input's columns, and the flags.
    let materialise = |name: String,
                       sql: String,
                       tally: Vec<String>,
                       aside: Option<String>,
                       only_input: Option<Vec<String>>| async move {
        let frame = ctx
            .sql_with_options(&sql, crate::steps::query_only())
            .await?;
        let tally: Vec<&str> = tally.iter().map(String::as_str).collect();
        if settings.results.stores_results() {
            let watch = (step.name.as_str(), settings.progress);
            let (done, ran) = settings
                .results
                .store(ctx, &name, frame, &tally, watch)
                .await?;
            let profile = match settings.profile {
                true => Some(format!(
                    "-- {name}\n{}",
                    crate::steps::executed_profile(ctx, &ran).await
                )),
                false => None,
            };
            return Ok((done, profile, Vec::new(), false));
        }
        let plan = frame.create_physical_plan().await?;
        let set_aside = aside.as_deref().map(|table| (QUARANTINED, table));
        let schema = plan.schema();
        let held: Option<Vec<&str>> = only_input.as_ref().map(|input| {
            let fields = schema.fields().iter().map(|field| field.name().as_str());
            fields
                .filter(|column| is_flag_column(column) || input.iter().any(|c| c == column))
                .collect()
        });
        let done = settings
            .progress
            .watch(
                &step.name,
                &plan,
                settings.results.materialise_setting_aside(
                    ctx,
                    &name,
                    plan.clone(),
                    &tally,
                    set_aside,
                    held.as_deref(),
                ),
            )
            .await?;
        let profile = settings
            .profile
            .then(|| format!("-- {name}\n{}", crate::steps::profile(plan.as_ref())));
        let scans = crate::steps::source_scans(plan.as_ref(), settings.results);
        Ok::<_, datafusion::error::DataFusionError>((done, profile, scans, set_aside.is_some()))
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
            .map(|i| format!("__segflow_fail_{i}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    // Flagging the rows also counts each check's failures and the quarantined rows, so the
    // flagged table (as large as the input) is not read again to count them.
    let mut tally: Vec<String> = row_checks
        .iter()
        .map(|i| format!("__segflow_fail_{i}"))
        .collect();
    tally.push(QUARANTINED.to_string());
    let aside_name = format!("{ASIDE_PREFIX}{}", step.name);
    let (annotated, annotated_profile, scans, set_aside) = materialise(
        annotated_name.clone(),
        format!(
            "SELECT *, {quarantined_condition} AS {QUARANTINED} FROM ({})",
            annotated_sql(validate, &columns)
        ),
        tally,
        (!quarantine.is_empty()).then(|| aside_name.clone()),
        (held_columns.len() < columns.len()).then(|| held_columns.clone()),
    )
    .await
    .map_err(|error| match streamed_input {
        Some(input) => EngineError::Step {
            step: input.step.name.clone(),
            origin: input.step.sql_origin(),
            error: Box::new(error),
        },
        None => sql_error(error),
    })?;
    let rows_in = annotated.rows;
    let (rows_quarantined_flagged, failing) = annotated
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
                "SELECT {} FROM {annotated_name} WHERE NOT {QUARANTINED}",
                held_list.join(", ")
            ),
            crate::steps::query_only(),
        )
        .await
        .map_err(sql_error)?;
    settings
        .results
        .register_view(ctx, &step.name, output, &annotated_name)
        .map_err(sql_error)?;

    let input_list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let rejects = if quarantine.is_empty() {
        None
    } else {
        let names: Vec<String> = quarantine
            .iter()
            .map(|&i| {
                format!(
                    "CASE WHEN __segflow_fail_{i} THEN {} END",
                    literal(&validate.checks[i].name)
                )
            })
            .collect();
        let reasons: Vec<String> = quarantine
            .iter()
            .map(|i| format!("__segflow_reason_{i}"))
            .collect();
        // The quarantined rows, set aside while flagging when the flagged rows are held here
        // (with every column of the input's, whichever the flagged table holds).
        let flagged = match set_aside {
            true => &aside_name,
            false => &annotated_name,
        };
        let sql = format!(
            "SELECT {} AS step, concat_ws(', ', {}) AS checks, concat_ws('; ', {}) AS reasons, {} FROM {flagged} WHERE {QUARANTINED}",
            literal(&step.name),
            names.join(", "),
            reasons.join(", "),
            input_list.join(", ")
        );
        let table = format!("__segflow_rejects_{}", step.name);
        let (rejected, _, _, _) = materialise(table.clone(), sql, Vec::new(), None, None)
            .await
            .map_err(sql_error)?;
        if set_aside {
            settings.results.release(ctx, &aside_name);
        }
        Some(Rejects {
            step: step.name.clone(),
            table,
            rows: rejected.rows,
        })
    };
    let rows_quarantined: u64 = rejects.as_ref().map_or(0, |r| r.rows);
    if rows_in != rows_out + rows_quarantined {
        return Err(failed(format!(
            "row accounting does not hold: {rows_in} rows in, {rows_out} passed on, {rows_quarantined} quarantined"
        )));
    }

    let mut checks = Vec::with_capacity(validate.checks.len());
    for (index, check) in validate.checks.iter().enumerate() {
        let report = if let Some(&failing) = failing.get(&index) {
            row_check_report(ctx, &annotated_name, index, check, failing, &sample_key)
                .await
                .map_err(sql_error)?
        } else {
            table_check_report(ctx, &annotated_name, check, &input_schema, rows_in)
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
        spilled: annotated.spilled,
        streamed_into: None,
        duration_ms: started.elapsed().as_millis() as u64,
        profile: annotated_profile,
    };
    Ok((report, rejects, scans))
}

async fn row_check_report(
    ctx: &SessionContext,
    annotated: &str,
    index: usize,
    check: &Check,
    failing: u64,
    sample_key: &[String],
) -> datafusion::error::Result<CheckReport> {
    let samples = if failing == 0 {
        Vec::new()
    } else {
        let keys: Vec<String> = sample_key.iter().map(|c| quote(c)).collect();
        let rows = collect(
            ctx,
            &format!(
                "SELECT {} FROM {annotated} WHERE __segflow_fail_{index} LIMIT {SAMPLES}",
                keys.join(", ")
            ),
        )
        .await?;
        format_rows(&rows)
    };
    Ok(check_report(check, failing, samples, None))
}

/// A table-level check's report. `annotated` holds the input's rows (flagged), so a check
/// reading them does not run the input's query again when it was streamed.
async fn table_check_report(
    ctx: &SessionContext,
    annotated: &str,
    check: &Check,
    input_schema: &Schema,
    rows: u64,
) -> datafusion::error::Result<CheckReport> {
    let (failing, detail, samples) = match &check.kind {
        CheckKind::RowCount { min, max } => {
            let low = min.is_some_and(|min| rows < min);
            let high = max.is_some_and(|max| rows > max);
            let bounds = match (min, max) {
                (Some(min), Some(max)) => format!("between {min} and {max}"),
                (Some(min), None) => format!("at least {min}"),
                (None, Some(max)) => format!("at most {max}"),
                (None, None) => String::new(),
            };
            (
                u64::from(low || high),
                Some(format!("{rows} rows; expected {bounds}")),
                Vec::new(),
            )
        }
        CheckKind::Freshness {
            column,
            max_age,
            max_age_seconds,
            as_of,
        } => {
            let sql = format!(
                "SELECT max(CAST({col} AS TIMESTAMP)), \
                 coalesce(max(CAST({col} AS TIMESTAMP)) < CAST({as_of} AS TIMESTAMP) - INTERVAL '{max_age_seconds} seconds', true) \
                 FROM {input}",
                col = quote(column),
                as_of = literal(as_of),
                input = annotated
            );
            let batch = &collect(ctx, &sql).await?[0];
            let stale = batch.column(1).as_boolean().value(0);
            let newest = format_rows(&[batch.project(&[0])?])
                .pop()
                .unwrap_or_else(|| "null".to_string());
            (
                u64::from(stale),
                Some(format!(
                    "newest {column} is {newest}; must be within {max_age} before {as_of}"
                )),
                Vec::new(),
            )
        }
        CheckKind::Schema { expect } => {
            let mut problems = Vec::new();
            for column in expect {
                match input_schema.field_with_name(&column.name) {
                    Err(_) => problems.push(format!("missing column {}", column.name)),
                    Ok(found) if !type_matches(found.data_type(), column.data_type) => problems
                        .push(format!(
                            "{} is {}, expected {}",
                            column.name,
                            found.data_type(),
                            column_type_name(column.data_type)
                        )),
                    Ok(_) => {}
                }
            }
            let detail = (!problems.is_empty()).then(|| problems.join("; "));
            (problems.len() as u64, detail, Vec::new())
        }
        CheckKind::Sql { sql } => {
            let rows = collect(ctx, sql).await?;
            let count = rows.iter().map(|b| b.num_rows() as u64).sum();
            let samples = format_rows(&rows).into_iter().take(SAMPLES).collect();
            (count, None, samples)
        }
        _ => (0, None, Vec::new()),
    };
    Ok(check_report(check, failing, samples, detail))
}

/// Whether a column's Arrow type is what the pipeline calls `declared`. The pipeline's
/// names are logical: a timestamp of any unit, or any string encoding, is what the user meant.
fn type_matches(found: &DataType, declared: ColumnType) -> bool {
    match declared {
        ColumnType::String => matches!(
            found,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        ColumnType::Int32 => found == &DataType::Int32,
        ColumnType::Int64 => found == &DataType::Int64,
        ColumnType::Float64 => found == &DataType::Float64,
        ColumnType::Boolean => found == &DataType::Boolean,
        ColumnType::Date => found == &DataType::Date32,
        ColumnType::Timestamp => matches!(found, DataType::Timestamp(_, _)),
    }
}

fn check_report(
    check: &Check,
    failing: u64,
    samples: Vec<String>,
    detail: Option<String>,
) -> CheckReport {
    let status = match (failing, check.severity) {
        (0, _) => "pass",
        (_, Severity::Error) => "fail",
        (_, Severity::Warn) => "warn",
        (_, Severity::Quarantine) => "quarantined",
    };
    CheckReport {
        name: check.name.clone(),
        check_type: check.kind.type_name().to_string(),
        severity: check.severity.as_str().to_string(),
        status: status.to_string(),
        failing_rows: failing,
        samples,
        detail,
    }
}

/// The query's rows, without the empty batches a distributed run may hand back.
async fn collect(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<Vec<RecordBatch>> {
    let mut batches = ctx
        .sql_with_options(sql, crate::steps::query_only())
        .await?
        .collect()
        .await?;
    batches.retain(|batch| batch.num_rows() > 0);
    Ok(batches)
}

/// Each row as `a=1, b=x`, for samples.
fn format_rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("null");
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .filter_map(|column| ArrayFormatter::try_new(column.as_ref(), &options).ok())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .zip(schema.fields())
                .map(|(formatter, field)| {
                    if batch.num_columns() == 1 {
                        formatter.value(row).to_string()
                    } else {
                        format!("{}={}", field.name(), formatter.value(row))
                    }
                })
                .collect();
            rows.push(cells.join(", "));
        }
    }
    rows
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
