//! Whether a key column identifies one row per customer, as the segment and value stages
//! require of their inputs. A leaf.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;

use crate::sql::quote;
use crate::{EngineError, Result};

/// Rows of `table` with a null `key`, and key values that appear more than once.
pub async fn key_problems(ctx: &SessionContext, table: &str, key: &str) -> Result<(i64, i64)> {
    let quoted = quote(key);
    let from = quote(table);
    let sql = format!(
        "SELECT count(*) - count({quoted}) AS null_keys, \
         (SELECT count(*) FROM (SELECT {quoted} FROM {from} WHERE {quoted} IS NOT NULL GROUP BY {quoted} HAVING count(*) > 1)) AS repeated_keys \
         FROM {from}"
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|error| EngineError::table(table, error))?
        .collect()
        .await
        .map_err(|error| EngineError::table(table, error))?;
    // A distributed run may hand back empty batches before the one row.
    let batch = batches
        .iter()
        .find(|batch| batch.num_rows() == 1)
        .ok_or_else(|| EngineError::Segment(format!("checking the keys of `{table}`: no row")))?;
    Ok((
        batch.column(0).as_primitive::<Int64Type>().value(0),
        batch.column(1).as_primitive::<Int64Type>().value(0),
    ))
}

/// The message for a key that does not identify one customer per row.
pub fn key_message(table: &str, key: &str, (nulls, repeated): (i64, i64)) -> String {
    format!(
        "key `{key}` of `{table}` must identify one customer per row: {nulls} row(s) have a null key, {repeated} key value(s) appear more than once"
    )
}
