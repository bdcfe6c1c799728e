//! The report of each check of a validate step: failing rows and samples of row-level
//! checks (read from the flagged table), and table-level checks (row_count, freshness,
//! schema, sql) run as small queries of their own.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use segflow_pipeline::{Check, CheckKind, ColumnType, Severity, column_type_name};

use crate::report::CheckReport;
use crate::sql::{collect, fail_column, literal, quote};

/// Failing rows shown per check.
const SAMPLES: usize = 5;

pub(super) async fn row_check_report(
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
                "SELECT {} FROM {annotated} WHERE {} LIMIT {SAMPLES}",
                keys.join(", "),
                fail_column(index)
            ),
        )
        .await?;
        format_rows(&rows)
    };
    Ok(check_report(check, failing, samples, None))
}

/// A table-level check's report. `annotated` holds the input's rows (flagged), so a check
/// reading them does not run the input's query again when it was streamed.
pub(super) async fn table_check_report(
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
