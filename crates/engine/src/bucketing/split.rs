//! A source split into buckets by a hash of its customer key, written once to the run's
//! scratch space as Arrow IPC streams (one folder per bucket, one file per partition of
//! the read), as a grace hash join writes its partitions: each bucket is then read by the
//! steps that keep customers apart, one bucket at a time.
//!
//! Which bucket a row goes to must agree across sources and with what the steps compare:
//! equal keys (as SQL compares them) must land in one bucket. A key is hashed as an
//! integer wherever it is one or its text parses as one (Arrow's own cast, the one SQL's
//! `CAST(key AS BIGINT)` runs, so `"012"` and `"12"` and the integer 12 share a bucket),
//! as its bytes otherwise, and a null key goes to bucket 0, unless no step groups rows
//! without a key ([`super::Bucketing::spreads_null_keys`]): then they are dealt out over
//! the buckets in turn, as they would otherwise make one bucket far larger than the rest.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::kernels::cast::{CastOptions, cast_with_options};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::ExecutionPlanProperties;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::execution::{Scan, source_scans};
use crate::results::{StepResults, compact_views, make_dir_in_scratch, spill_compression};

/// Rows gathered for one bucket before they are written as one batch: a bucket's rows are
/// not written a few at a time, and its readers get batches of DataFusion's usual size.
/// (At 4096 rows, 100M lines at 2 GB took 52 s against 45 s; 16384 gained nothing more.)
const ROWS_PER_WRITE: usize = 8192;

/// A source written as buckets.
#[derive(Debug)]
pub struct SplitSource {
    pub source: String,
    pub schema: SchemaRef,
    /// Per bucket: the folder of its files and its rows.
    pub buckets: Vec<(PathBuf, u64)>,
    /// The source's files as the split read them, with their rows.
    pub scans: Vec<Scan>,
}

impl SplitSource {
    pub fn rows(&self) -> u64 {
        self.buckets.iter().map(|(_, rows)| rows).sum()
    }
}

/// Reads the table `source` once and writes its rows into `buckets` buckets by the hash of
/// `key`, under the run's scratch space.
pub async fn split(
    ctx: &SessionContext,
    results: &StepResults,
    source: &str,
    key: &str,
    buckets: usize,
    spread_null_keys: bool,
) -> Result<SplitSource> {
    let plan = ctx.table(source).await?.create_physical_plan().await?;
    let schema = plan.schema();
    let key_index = schema.index_of(key)?;
    let root = results.scratch_folder(&format!("buckets-{source}"))?;
    let dirs: Vec<PathBuf> = (0..buckets)
        .map(|bucket| {
            let dir = root.join(format!("{bucket:05}"));
            make_dir_in_scratch(&dir).map(|_| dir)
        })
        .collect::<std::io::Result<_>>()?;
    let compression = spill_compression(ctx);
    let task = ctx.task_ctx();
    let mut running = tokio::task::JoinSet::new();
    for partition in 0..plan.output_partitioning().partition_count() {
        let writers = dirs
            .iter()
            .map(|dir| {
                let file = File::create(dir.join(format!("part-{partition:05}.arrow")))?;
                let options = IpcWriteOptions::default().try_with_compression(compression)?;
                Ok(BucketWriter {
                    writer: StreamWriter::try_new_with_options(
                        BufWriter::new(file),
                        &schema,
                        options,
                    )?,
                    pending: Vec::new(),
                    pending_rows: 0,
                    rows: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut stream = plan.execute(partition, task.clone())?;
        let schema = schema.clone();
        let mut null_keys = match spread_null_keys {
            // Partitions start their turns at different buckets.
            true => NullKeys::Spread {
                next: (partition % buckets) as u32,
            },
            false => NullKeys::FirstBucket,
        };
        running.spawn(async move {
            let mut writers = writers;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let of_rows =
                    bucket_of_rows(batch.column(key_index), writers.len(), &mut null_keys)?;
                for (bucket, rows) in by_bucket(&batch, &of_rows, writers.len())? {
                    writers[bucket].push(&schema, rows)?;
                }
            }
            writers
                .into_iter()
                .map(|writer| writer.finish(&schema))
                .collect::<Result<Vec<u64>>>()
        });
    }
    let mut rows = vec![0u64; buckets];
    while let Some(done) = running.join_next().await {
        let written = done.map_err(|error| DataFusionError::External(Box::new(error)))??;
        for (total, written) in rows.iter_mut().zip(written) {
            *total += written;
        }
    }
    Ok(SplitSource {
        source: source.to_string(),
        schema,
        buckets: dirs.into_iter().zip(rows).collect(),
        scans: source_scans(plan.as_ref(), results),
    })
}

/// One bucket's file of one partition, and the rows gathered for its next write.
struct BucketWriter {
    writer: StreamWriter<BufWriter<File>>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    rows: u64,
}

impl BucketWriter {
    fn push(&mut self, schema: &SchemaRef, rows: RecordBatch) -> Result<()> {
        self.pending_rows += rows.num_rows();
        self.pending.push(rows);
        if self.pending_rows >= ROWS_PER_WRITE {
            self.write(schema)?;
        }
        Ok(())
    }

    fn write(&mut self, schema: &SchemaRef) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // The rows are slices of whole input batches: copied into one batch of their own
        // (string views too), so the file holds these rows only.
        let batch = compact_views(&concat_batches(schema, &self.pending)?)?;
        self.writer.write(&batch)?;
        self.rows += batch.num_rows() as u64;
        self.pending.clear();
        self.pending_rows = 0;
        Ok(())
    }

    fn finish(mut self, schema: &SchemaRef) -> Result<u64> {
        self.write(schema)?;
        self.writer.finish()?;
        Ok(self.rows)
    }
}

/// `batch`'s rows grouped by bucket (`of_rows`: each row's), in their order within each:
/// one `take` puts the batch in bucket order, and each bucket's rows are a slice of it.
fn by_bucket(
    batch: &RecordBatch,
    of_rows: &[u32],
    buckets: usize,
) -> Result<Vec<(usize, RecordBatch)>> {
    let mut starts = vec![0u32; buckets + 1];
    for &bucket in of_rows {
        starts[bucket as usize + 1] += 1;
    }
    for bucket in 0..buckets {
        starts[bucket + 1] += starts[bucket];
    }
    let mut next = starts.clone();
    let mut order = vec![0u32; of_rows.len()];
    for (row, &bucket) in of_rows.iter().enumerate() {
        order[next[bucket as usize] as usize] = row as u32;
        next[bucket as usize] += 1;
    }
    let sorted = take_record_batch(batch, &UInt32Array::from(order))?;
    Ok((0..buckets)
        .filter(|&bucket| starts[bucket + 1] > starts[bucket])
        .map(|bucket| {
            let (start, end) = (starts[bucket] as usize, starts[bucket + 1] as usize);
            (bucket, sorted.slice(start, end - start))
        })
        .collect())
}

/// Where rows without a key go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NullKeys {
    FirstBucket,
    /// Each to the next bucket in turn.
    Spread {
        next: u32,
    },
}

/// Each row's bucket among `buckets`, from its key: see the module's text.
pub fn bucket_of_rows(
    key: &ArrayRef,
    buckets: usize,
    null_keys: &mut NullKeys,
) -> Result<Vec<u32>> {
    let as_integer = cast_with_options(
        key,
        &DataType::Int64,
        &CastOptions {
            safe: true,
            ..CastOptions::default()
        },
    )?;
    let integers = as_integer.as_primitive::<Int64Type>();
    let hash_text: Box<dyn Fn(usize) -> u64 + '_> = match key.data_type() {
        DataType::Utf8 => {
            let text = key.as_string::<i32>();
            Box::new(move |row| fnv1a(text.value(row).as_bytes()))
        }
        DataType::LargeUtf8 => {
            let text = key.as_string::<i64>();
            Box::new(move |row| fnv1a(text.value(row).as_bytes()))
        }
        DataType::Utf8View => {
            let text = key.as_string_view();
            Box::new(move |row| fnv1a(text.value(row).as_bytes()))
        }
        // An integer key: every non-null value is cast.
        _ => Box::new(|_| 0),
    };
    let scale = |hash: u64| ((u128::from(hash) * buckets as u128) >> 64) as u32;
    Ok((0..key.len())
        .map(|row| {
            if integers.is_valid(row) {
                scale(mix(integers.value(row) as u64))
            } else if key.is_null(row) {
                match null_keys {
                    NullKeys::FirstBucket => 0,
                    NullKeys::Spread { next } => {
                        let bucket = *next;
                        *next = (*next + 1) % buckets as u32;
                        bucket
                    }
                }
            } else {
                scale(mix(hash_text(row)))
            }
        })
        .collect())
}

/// SplitMix64's finaliser: spreads keys that differ in a few low bits (consecutive ids)
/// over all 64 bits, so that the top bits that pick the bucket differ. Written out as no
/// crate offers a hash that is fixed across builds and processes and this small.
fn mix(mut value: u64) -> u64 {
    value ^= value >> 30;
    value = value.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value ^= value >> 27;
    value = value.wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// FNV-1a over the bytes of a text key that is not an integer.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringArray, StringViewArray};
    use std::sync::Arc;

    fn buckets_of(key: ArrayRef) -> Vec<u32> {
        bucket_of_rows(&key, 16, &mut NullKeys::FirstBucket).unwrap()
    }

    #[test]
    fn equal_keys_share_a_bucket_whatever_their_type() {
        let integers = buckets_of(Arc::new(Int64Array::from(vec![12, 13, 7_000_001])));
        let narrow = buckets_of(Arc::new(Int32Array::from(vec![12, 13, 7_000_001])));
        let text = buckets_of(Arc::new(StringArray::from(vec!["012", "13", "7000001"])));
        let views = buckets_of(Arc::new(StringViewArray::from(vec![
            "12", "013", "7000001",
        ])));
        assert_eq!(integers, narrow);
        assert_eq!(integers, text);
        assert_eq!(integers, views);
    }

    #[test]
    fn nulls_go_to_the_first_bucket_and_other_text_by_its_bytes() {
        let key: ArrayRef = Arc::new(StringArray::from(vec![
            None,
            Some("C-1"),
            Some("C-1"),
            Some("C-2"),
        ]));
        let buckets = buckets_of(key);
        assert_eq!(buckets[0], 0);
        assert_eq!(buckets[1], buckets[2]);
        assert_eq!(
            buckets,
            buckets_of(Arc::new(StringViewArray::from(vec![
                None,
                Some("C-1"),
                Some("C-1"),
                Some("C-2")
            ])))
        );
    }

    #[test]
    fn rows_without_a_key_are_dealt_out_when_no_step_groups_them() {
        let key: ArrayRef = Arc::new(Int64Array::from(vec![None, None, Some(5), None, None]));
        let mut spread = NullKeys::Spread { next: 2 };
        let buckets = bucket_of_rows(&key, 3, &mut spread).unwrap();
        assert_eq!(buckets[0], 2);
        assert_eq!(buckets[1], 0);
        assert_eq!((buckets[3], buckets[4]), (1, 2));
        assert_eq!(spread, NullKeys::Spread { next: 0 });
    }

    #[test]
    fn consecutive_ids_spread_evenly() {
        let key: ArrayRef = Arc::new(Int64Array::from_iter_values(0..160_000));
        let mut sizes = [0usize; 16];
        for bucket in buckets_of(key) {
            sizes[bucket as usize] += 1;
        }
        // 10,000 each when even; a hash this good stays within a few percent.
        assert!(
            sizes.iter().all(|&size| (9_500..=10_500).contains(&size)),
            "{sizes:?}"
        );
    }

    #[test]
    fn rows_keep_their_order_within_a_bucket() {
        let batch = RecordBatch::try_from_iter([(
            "v",
            Arc::new(Int64Array::from(vec![10, 11, 12, 13, 14])) as ArrayRef,
        )])
        .unwrap();
        let grouped = by_bucket(&batch, &[2, 0, 2, 1, 0], 3).unwrap();
        let values: Vec<(usize, Vec<i64>)> = grouped
            .iter()
            .map(|(bucket, rows)| {
                let column = rows.column(0).as_primitive::<Int64Type>();
                (*bucket, column.values().to_vec())
            })
            .collect();
        assert_eq!(
            values,
            vec![(0, vec![11, 14]), (1, vec![13]), (2, vec![10, 12])]
        );
    }
}
