//! The report of each check of a validate step: failing rows and samples of row-level
//! checks (read from the flagged table), and table-level checks (row_count, freshness,
//! schema, sql) run as small queries of their own.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use segflow_pipeline::{
    Change, Check, CheckKind, ColumnType, Metric, Severity, Threshold, column_type_name,
};

use crate::baseline::{Baseline, Earlier};
use crate::report::{CheckReport, MetricReport};
use crate::sql::{collect, fail_column, literal, quote};

/// Failing rows shown per check.
pub(super) const SAMPLES: usize = 5;

pub(super) async fn row_check_report(
    ctx: &SessionContext,
    annotated: &str,
    index: usize,
    check: &Check,
    (failing, checked): (u64, u64),
    sample_key: &[String],
) -> datafusion::error::Result<CheckReport> {
    let samples = if failing == 0 {
        Vec::new()
    } else {
        let keys: Vec<String> = sample_key.iter().map(|c| quote(c)).collect();
        let rows = collect(
            ctx,
            &format!(
                "SELECT {} FROM {annotated} WHERE {} LIMIT {SAMPLES}",
                keys.join(", "),
                fail_column(index)
            ),
        )
        .await?;
        format_rows(&rows)
    };
    Ok(row_check_outcome(check, (failing, checked), samples))
}

/// A row-level check's report from its failing rows among `checked` and their samples.
pub(super) fn row_check_outcome(
    check: &Check,
    (failing, checked): (u64, u64),
    samples: Vec<String>,
) -> CheckReport {
    let status = row_check_status(check, failing, checked);
    CheckReport {
        rows_checked: Some(checked),
        failing_share: Some(failing as f64 / checked.max(1) as f64),
        warn_if: check.warn_if.map(|t| t.to_string()),
        error_if: check.error_if.map(|t| t.to_string()),
        ..check_report(check, failing, samples, None)
    }
    .with_status(status)
}

/// A row-level check fails the run past `error_if`, warns past `warn_if`, and otherwise
/// passes, or reports its set-aside rows.
fn row_check_status(check: &Check, failing: u64, checked: u64) -> &'static str {
    let crossed =
        |threshold: Option<Threshold>| threshold.is_some_and(|t| t.crossed(failing, checked));
    if crossed(check.error_if) {
        "fail"
    } else if crossed(check.warn_if) {
        "warn"
    } else if failing > 0 && check.severity == Severity::Quarantine {
        "quarantined"
    } else {
        "pass"
    }
}

/// Where a table-level check reads from besides its rows.
pub(super) struct TableCheckInput<'a> {
    /// The validate step whose checks these are.
    pub step: &'a str,
    /// The input's name: the table a `change` check's metric is recorded for.
    pub table: &'a str,
    pub schema: &'a Schema,
    pub rows: u64,
    pub baseline: &'a Baseline,
}

/// What a table-level check needs of the rows, measured by one small query of the flagged
/// rows `annotated` into one row, and judged by [`table_check_report`] on the measured
/// rows of every part of the input together: once for a whole table, once per bucket for a
/// table run bucket by bucket. So the two give one answer. `None` for a check that needs
/// no rows (row counts, schema) or runs its own query (sql).
pub(super) async fn measure_table_check(
    ctx: &SessionContext,
    annotated: &str,
    check: &Check,
) -> datafusion::error::Result<Option<Vec<RecordBatch>>> {
    let measures = match &check.kind {
        CheckKind::Freshness { column, .. } => {
            format!("max(CAST({} AS TIMESTAMP)) AS newest", quote(column))
        }
        CheckKind::Change {
            metric,
            column: Some(column),
            ..
        } => {
            let column = quote(column);
            match metric {
                Metric::RowCount => return Ok(None),
                Metric::NullShare => format!("count(*) AS n, count({column}) AS non_null"),
                Metric::Distinct => format!("count(DISTINCT {column}) AS distinct_values"),
                Metric::Sum => format!("sum({column}) AS total"),
                Metric::Mean => format!("sum({column}) AS total, count({column}) AS non_null"),
                Metric::Min => format!("min({column}) AS lowest"),
                Metric::Max => format!("max({column}) AS highest"),
            }
        }
        _ => return Ok(None),
    };
    collect(ctx, &format!("SELECT {measures} FROM {annotated}"))
        .await
        .map(Some)
}

/// A table-level check's report, judged on `measured`: what [`measure_table_check`]
/// measured of each part of the input.
pub(super) async fn table_check_report(
    ctx: &SessionContext,
    input: &TableCheckInput<'_>,
    (index, check): (usize, &Check),
    measured: &[RecordBatch],
) -> datafusion::error::Result<CheckReport> {
    let TableCheckInput {
        schema: input_schema,
        rows,
        ..
    } = *input;
    // The measured rows as one table, for the judging query: a few rows in this process,
    // judged here whichever engine ran the steps (a cluster cannot read them).
    let over_measured = |select: String| async move {
        let local = SessionContext::new();
        let table = crate::sql::measured_table(input.step, index);
        local.register_table(
            &table,
            local.read_batches(measured.iter().cloned())?.into_view(),
        )?;
        collect(&local, &select.replace("{measured}", &quote(&table))).await
    };
    if let CheckKind::Change {
        metric,
        column,
        max_increase,
        max_decrease,
    } = &check.kind
    {
        let value = match metric {
            Metric::RowCount => Some(rows as f64),
            metric => {
                let expression = match metric {
                    Metric::NullShare => {
                        "CAST(sum(n) - sum(non_null) AS DOUBLE) / CAST(greatest(sum(n), 1) AS DOUBLE)"
                    }
                    Metric::Distinct => "CAST(sum(distinct_values) AS DOUBLE)",
                    Metric::Sum => "CAST(sum(total) AS DOUBLE)",
                    Metric::Mean => "CAST(sum(total) AS DOUBLE) / CAST(sum(non_null) AS DOUBLE)",
                    Metric::Min => "CAST(min(lowest) AS DOUBLE)",
                    Metric::Max => "CAST(max(highest) AS DOUBLE)",
                    Metric::RowCount => unreachable!("counted above"),
                };
                let batches =
                    over_measured(format!("SELECT {expression} FROM {{measured}}")).await?;
                let values = batches[0].column(0).as_primitive::<Float64Type>();
                (!values.is_null(0) && values.value(0).is_finite()).then(|| values.value(0))
            }
        };
        let name = metric.id(column.as_deref());
        let earlier = input.baseline.earlier(input.table, &name);
        let (held, detail) = judge_change(&name, value, &earlier, *max_increase, *max_decrease);
        let (baseline_run, baseline) = match earlier {
            Earlier::Value { run_id, value } => (Some(run_id), Some(value)),
            Earlier::Missing(_) => (None, None),
        };
        return Ok(CheckReport {
            metric: Some(MetricReport {
                table: input.table.to_string(),
                metric: name,
                value,
                baseline_run,
                baseline,
            }),
            ..check_report(check, u64::from(!held), Vec::new(), Some(detail))
        });
    }
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
                "SELECT max(newest), \
                 coalesce(max(newest) < CAST({as_of} AS TIMESTAMP) - INTERVAL '{max_age_seconds} seconds', true) \
                 FROM {{measured}}",
                as_of = literal(as_of),
            );
            let batch = &over_measured(sql).await?[0];
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

/// A check's report, its status from its severity: a table-level check's (or, as
/// [`row_check_report`] refines it, a row-level one's).
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
        rows_checked: None,
        failing_share: None,
        warn_if: None,
        error_if: None,
        samples,
        detail,
        metric: None,
    }
}

/// Whether the metric moved within its bounds since the previous run, and a line saying
/// by how much. With nothing to compare with, the check holds and says why.
fn judge_change(
    name: &str,
    value: Option<f64>,
    earlier: &Earlier,
    max_increase: Option<Change>,
    max_decrease: Option<Change>,
) -> (bool, String) {
    let Some(value) = value else {
        return (
            true,
            format!("{name} has no value (no rows); nothing to compare"),
        );
    };
    let (run_id, before) = match earlier {
        Earlier::Value { run_id, value } => (run_id, *value),
        Earlier::Missing(why) => {
            return (
                true,
                format!("{name} is {}; no baseline: {why}", number(value)),
            );
        }
    };
    let moved = value - before;
    let relative = (before != 0.0).then(|| moved / before.abs());
    let change = match relative {
        Some(relative) => format!("{:+.1}%", 100.0 * relative),
        None => format!("{:+}", number(moved)),
    };
    // A bound crossed, and how it is written: a relative bound from a previous value of 0
    // is crossed by any move in its direction.
    let beyond = |bound: Option<Change>, amount: f64, word: &str| {
        let bound = bound?;
        let crossed = match bound {
            Change::Absolute(limit) => amount > limit,
            Change::Relative(limit) => match relative {
                Some(_) => amount / before.abs() > limit,
                None => amount > 0.0,
            },
        };
        crossed.then(|| format!("more than the {word} of {bound} allowed"))
    };
    let breach = beyond(max_increase, moved, "max_increase")
        .or_else(|| beyond(max_decrease, -moved, "max_decrease"));
    let line = format!(
        "{name} is {} against {} in run {run_id} ({change})",
        number(value),
        number(before)
    );
    match breach {
        Some(breach) => (false, format!("{line}: {breach}")),
        None => (true, line),
    }
}

/// Whole numbers without a fraction, others to 4 significant decimals.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
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
