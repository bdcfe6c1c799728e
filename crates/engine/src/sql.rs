//! Small pieces every part of the engine uses to write and plan SQL: quoting, the options
//! every query is planned with, column pruning, and the names segflow gives the tables and
//! columns it generates (all start with `__segflow_`, so they never clash with a user's).
//! A leaf: it imports nothing of the engine's.

use arrow::array::RecordBatch;
use datafusion::error::Result as DFResult;
use datafusion::execution::context::SQLOptions;
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::{OptimizerContext, OptimizerRule};
use datafusion::prelude::{DataFrame, SessionContext};

/// `identifier` as a quoted SQL identifier. Always quoted, unlike DataFusion's
/// `quote_identifier`, which leaves a lower-case name bare even when it is a keyword
/// (a column named `order` or `end`), and so would break the SQL generated over it.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// `text` as a SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The planner already allows only queries; this also refuses DDL/DML should one slip by.
pub fn query_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The query's rows, without the empty batches a distributed run may hand back.
pub async fn collect(ctx: &SessionContext, sql: &str) -> DFResult<Vec<RecordBatch>> {
    let mut batches = ctx
        .sql_with_options(sql, query_only())
        .await?
        .collect()
        .await?;
    batches.retain(|batch| batch.num_rows() > 0);
    Ok(batches)
}

/// `frame` with only `columns` of its output, and nothing computed for the others. The
/// unread outputs are pruned before DataFusion's optimiser runs: it rewrites a lone
/// `count(DISTINCT x)` into a grouping by `x` before it prunes, and a grouping it keeps
/// even when nothing reads the count.
pub fn only_columns(
    ctx: &SessionContext,
    frame: DataFrame,
    columns: &[String],
) -> DFResult<DataFrame> {
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let plan = frame.select_columns(&columns)?.into_unoptimized_plan();
    let pruned = OptimizeProjections::new().rewrite(plan, &OptimizerContext::new())?;
    Ok(DataFrame::new(ctx.state(), pruned.data))
}

/// The flagged table's column telling whether a row fails a quarantine check.
pub const QUARANTINED: &str = "__segflow_quarantined";

const FLAGGED_PREFIX: &str = "__segflow_annotated_";

/// The table holding a validate step's input with its flags; the step's output is a view
/// over it.
pub fn flagged_table(step: &str) -> String {
    format!("{FLAGGED_PREFIX}{step}")
}

/// For a scan of a validate step's flagged table (which a plan reading the step's output
/// shows once the view is inlined), the step's name.
pub fn validated_step(table: &str) -> Option<&str> {
    table.strip_prefix(FLAGGED_PREFIX)
}

/// The table of a validate step's quarantined rows with their flags, set aside while flagging.
pub fn set_aside_table(step: &str) -> String {
    format!("__segflow_aside_{step}")
}

/// The table of a validate step's rejects: `step`, `checks`, `reasons`, then its input's
/// columns.
pub fn rejects_table(step: &str) -> String {
    format!("__segflow_rejects_{step}")
}

/// The table a validate step's table-level check `index` is judged over: what was measured
/// of each part of its input, one row each.
pub fn measured_table(step: &str, index: usize) -> String {
    format!("__segflow_measured_{index}_{step}")
}

/// Bucket `bucket`'s part of `table`, held until every bucket has run.
pub fn bucket_table(table: &str, bucket: usize) -> String {
    format!("__segflow_bucket_{bucket}_{table}")
}

/// The flag column of a validate step's row-level check `index`: whether the row fails it.
pub fn fail_column(index: usize) -> String {
    format!("__segflow_fail_{index}")
}

/// The column with the reason a row fails check `index` (null when it passes).
pub fn reason_column(index: usize) -> String {
    format!("__segflow_reason_{index}")
}

/// Whether `column` is one a validate step adds to flag rows, not one of its input's.
pub fn is_flag_column(column: &str) -> bool {
    column.starts_with("__segflow_")
}
