//! How many buckets a run splits its sources into: `buckets: N` as written, or for
//! `auto` as many as the input's size needs for one bucket's rows to stay in memory while
//! the steps work on them.

use datafusion::prelude::SessionContext;
use segflow_pipeline::{Buckets, Format, Pipeline};

use crate::{EngineError, Result};

/// Of the memory limit, the share one bucket's rows may take in memory: the steps hold a
/// bucket's rows, hash tables over them (the de-duplication) and their results, and the
/// results kept from earlier buckets take their part of the pool too. Measured on the
/// bench's export at 2 GB: buckets of 2.1M lines (an estimated 110 MB) run without
/// spilling, buckets of 5M lines spill.
const BUCKET_SHARE_OF_MEMORY: u64 = 16;

/// However much memory there is, a bucket of at most this much: smaller hash tables are
/// faster too (10M lines in 4 buckets took 4.9 s against 6.2 s whole with 12 GB to spare),
/// and the run's peak memory is a bucket's, not the input's.
const BUCKET_BYTES_AT_MOST: u64 = 128 << 20;

/// However little memory there is, a bucket of at least this much: buckets are for inputs
/// larger than memory, and each costs every step a plan and a result of its own; an input
/// this small runs whole, and a limit too small for it fails as it would anyway.
const BUCKET_BYTES_AT_LEAST: u64 = 32 << 20;

/// The buckets for `asked`, with `memory_limit` bytes: `auto` sizes them from the files of
/// the sources that name a partition key.
pub async fn bucket_count(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    asked: Buckets,
    memory_limit: u64,
) -> Result<usize> {
    if let Buckets::Count(count) = asked {
        return Ok(count.get());
    }
    let mut in_memory = 0u64;
    for source in &pipeline.sources {
        if source.partition_key.is_none() && pipeline.partition_key.is_none() {
            continue;
        }
        let bytes = crate::sources::listed_bytes(ctx, source)
            .await
            .map_err(|error| EngineError::of_source(pipeline, source, error))?;
        in_memory += bytes.saturating_mul(in_memory_per_file_byte(source.format));
    }
    Ok(buckets_for(in_memory, memory_limit))
}

/// Bytes in memory per byte of file, by format: Parquet is compressed and encoded (about
/// five times smaller than the Arrow arrays it decodes to, measured on the bench's
/// exports); text formats are about as large as their columns, counted twice for offsets
/// and the numbers parsed from them.
fn in_memory_per_file_byte(format: Format) -> u64 {
    match format {
        Format::Parquet => 5,
        _ => 2,
    }
}

fn buckets_for(in_memory: u64, memory_limit: u64) -> usize {
    let per_bucket =
        (memory_limit / BUCKET_SHARE_OF_MEMORY).clamp(BUCKET_BYTES_AT_LEAST, BUCKET_BYTES_AT_MOST);
    in_memory.div_ceil(per_bucket).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_input_is_one_bucket() {
        assert_eq!(buckets_for(0, 2 << 30), 1);
        // The example's 3 MB of CSV.
        assert_eq!(buckets_for(3_000_000 * 2, 2 << 30), 1);
    }

    #[test]
    fn a_larger_input_gets_buckets_of_a_sixteenth_of_memory_at_most_128_mib() {
        let parquet = |bytes: u64| bytes * in_memory_per_file_byte(Format::Parquet);
        // 100M invoice lines as Parquet (1.1 GB) at 2 GiB: 2.4M lines a bucket.
        assert_eq!(buckets_for(parquet(1_100_000_000), 2 << 30), 41);
        // 10M lines (103 MB) with 12 GiB: 2.5M lines a bucket.
        assert_eq!(buckets_for(parquet(103_000_000), 12 << 30), 4);
        // Little memory: smaller buckets, down to 32 MiB.
        assert_eq!(buckets_for(parquet(103_000_000), 512 << 20), 16);
        assert_eq!(buckets_for(parquet(103_000_000), 64 << 20), 16);
        // The example's lines with a limit of a few megabytes: whole.
        assert_eq!(buckets_for(3_000_000 * 2, 5 << 20), 1);
    }
}
