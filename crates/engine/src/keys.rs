//! Whether a key column identifies one row per customer, as the segment and value stages
//! require of their inputs. A leaf.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, make_comparator};
use arrow::compute::SortOptions;
use arrow::datatypes::Int64Type;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::prelude::SessionContext;
use rayon::slice::ParallelSliceMut;

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

/// [`key_problems`] of a key column already in memory, without a query: the keys' hashes
/// sorted, so that equal ones are next to each other, and the rows of a hash that repeats
/// told apart by value (distinct keys seldom share a 64-bit hash, but may). A sort of
/// hashes costs a fraction of a grouping of millions of keys.
pub fn key_problems_in(keys: &ArrayRef) -> datafusion::error::Result<(i64, i64)> {
    let mut hashes = vec![0u64; keys.len()];
    create_hashes([keys], &RandomState::with_seed(0), &mut hashes)?;
    // Hashes alone sort fastest; the rows of a hash that repeats are looked for after.
    let mut sorted: Vec<u64> = match keys.logical_nulls() {
        None => hashes.clone(),
        Some(nulls) => hashes
            .iter()
            .zip(nulls.iter())
            .filter(|&(_, valid)| valid)
            .map(|(&hash, _)| hash)
            .collect(),
    };
    sorted.par_sort_unstable();
    let repeated_hashes: HashSet<u64> = sorted
        .chunk_by(|a, b| a == b)
        .filter(|same| same.len() > 1)
        .map(|same| same[0])
        .collect();
    if repeated_hashes.is_empty() {
        return Ok((keys.null_count() as i64, 0));
    }
    let mut rows_of: HashMap<u64, Vec<usize>> = HashMap::new();
    for (row, hash) in hashes.iter().enumerate() {
        if keys.is_valid(row) && repeated_hashes.contains(hash) {
            rows_of.entry(*hash).or_default().push(row);
        }
    }
    let compare = make_comparator(keys.as_ref(), keys.as_ref(), SortOptions::default())?;
    let mut repeated = 0;
    for rows in rows_of.values_mut() {
        rows.sort_by(|&a, &b| compare(a, b));
        repeated += rows
            .chunk_by(|&a, &b| compare(a, b).is_eq())
            .filter(|same_key| same_key.len() > 1)
            .count() as i64;
    }
    Ok((keys.null_count() as i64, repeated))
}

/// The message for a key that does not identify one customer per row.
pub fn key_message(table: &str, key: &str, (nulls, repeated): (i64, i64)) -> String {
    format!(
        "key `{key}` of `{table}` must identify one customer per row: {nulls} row(s) have a null key, {repeated} key value(s) appear more than once"
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::datasource::MemTable;

    use super::*;

    /// The check in memory counts what the query counts.
    #[tokio::test]
    async fn keys_in_memory_have_the_problems_the_query_finds() {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![
                Some(3),
                None,
                Some(3),
                Some(7),
                Some(3),
                Some(8),
                Some(8),
                None,
            ])),
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                None,
                Some("b"),
                Some("c"),
                Some("a"),
                Some("d"),
                Some("e"),
            ])),
            Arc::new(Int64Array::from_iter_values(0..8)),
        ];
        let ctx = SessionContext::new();
        for keys in columns {
            let batch = RecordBatch::try_from_iter([("key", keys.clone())]).unwrap();
            let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
            ctx.deregister_table("keys").unwrap();
            ctx.register_table("keys", Arc::new(table)).unwrap();
            let queried = key_problems(&ctx, "keys", "key").await.unwrap();
            assert_eq!(key_problems_in(&keys).unwrap(), queried);
        }
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![Some(3), None, Some(3), Some(7)]));
        assert_eq!(key_problems_in(&ints).unwrap(), (1, 1));
    }
}
