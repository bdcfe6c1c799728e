//! The segment stage over an input larger than its `fit_sample`: the model is fitted on a
//! seeded sample, then every customer streams through it, so the stage holds the sample
//! and one batch rather than the whole input.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use arrow::datatypes::Float64Type;
use arrow::row::{RowConverter, SortField};
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use segflow_cluster::{SegmentTotals, Segmentation, segments_batches};
use segflow_pipeline::Segment;
use segflow_publish::{Staging, TableWriter};

use super::local::{fit_model, split_invalid, totals_of};
use super::on_engine::assign_on_engine;
use super::settings;
use super::stage::{ROWS_PER_SEGMENT_FILE, Stage, cluster_error, names_of, rows};
use super::warm_start::PreviousRun;
use crate::{EngineError, Result};

/// More customers than `fit_sample`: fit on a seeded sample (pass 1), then stream every
/// customer through the model (pass 2), writing `segments/` batch by batch and keeping
/// only per-segment totals, so memory holds the sample and one batch, not the input.
/// Neither pass sorts the input (a sort would hold it all): the sample is picked by key,
/// whatever order the rows arrive in, and `segments/` is written in the order they arrive.
///
/// With `on_engine`, pass 2 is a query the engine runs (see [`super::on_engine`]): the
/// customers go from the engine's executors to `segments/` without passing through here.
#[allow(clippy::too_many_arguments)]
pub(super) async fn streamed_stage(
    frame: DataFrame,
    segment: &Segment,
    previous: Option<&PreviousRun>,
    sample_size: usize,
    total: usize,
    staging: &mut Staging,
    on_engine: Option<&SessionContext>,
) -> Result<Stage> {
    // Reading the input fails for the input's reasons (a source's bad row, a step's
    // result gone): blame the table, keeping the error to tell which.
    let read_error =
        |error: datafusion::error::DataFusionError| EngineError::table(&segment.input, error);
    // Pass 1: the sample, of the columns the fit reads (on a cluster, this pass is what
    // travels to this process: every key is hashed here).
    let fitted_columns: Vec<&str> = std::iter::once(segment.key.as_str())
        .chain(segment.features.iter().map(String::as_str))
        .collect();
    let to_sample = frame
        .clone()
        .select_columns(&fitted_columns)
        .map_err(read_error)?;
    let sample = vec![seeded_sample(&to_sample, segment, sample_size, total).await?];
    let sample = if segment.quarantine_invalid {
        split_invalid(&sample, segment)?.0
    } else {
        sample
    };
    let kmeans = settings::kmeans_settings(segment);
    tracing::info!(
        customers = total,
        sample = rows(&sample),
        k = segment.k,
        "fitting k-means on a sample"
    );
    let fitting = std::time::Instant::now();
    let (model, scores) = fit_model(&sample, segment, previous, &kmeans)?;
    let fit_ms = fitting.elapsed().as_millis() as u64;
    let names = names_of(&model, segment, previous);
    let sample_totals = totals_of(&sample, &model)?;

    let keep_current = previous.is_some_and(|p| !p.segments.is_empty());
    if let Some(ctx) = on_engine {
        let assigned =
            assign_on_engine(ctx, frame, segment, &model, &names, staging, keep_current).await?;
        let segmentation = Segmentation {
            sizes: assigned.sizes.clone(),
            inertia: assigned.inertia,
            assignments: Vec::new(),
            distances: Vec::new(),
            ..model
        };
        return Ok(Stage {
            segmentation,
            names,
            scores,
            customers: assigned.customers,
            customers_quarantined: assigned.customers_quarantined,
            fit_ms,
            current: assigned.current,
            totals: SegmentTotals {
                sizes: assigned.sizes,
                sums: assigned.sums,
                // As below: the sample's medians stand in for all customers'.
                medians: sample_totals.medians,
            },
        });
    }

    // Pass 2: every customer.
    let k = model.centroids.nrows();
    let mut totals = SegmentTotals {
        sizes: vec![0; k],
        sums: vec![vec![0.0; segment.features.len()]; k],
        // Medians need every value at once; the sample's stand in for them.
        medians: sample_totals.medians,
    };
    let mut inertia = 0.0;
    let mut customers = 0;
    let mut rejected = Vec::new();
    let mut current = Vec::new();
    let mut writer: Option<TableWriter> = None;
    let mut part = 0;
    let mut stream = frame.execute_stream().await.map_err(read_error)?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(read_error)?;
        let (valid, invalid) = if segment.quarantine_invalid {
            split_invalid(std::slice::from_ref(&batch), segment)?
        } else {
            (vec![batch], None)
        };
        rejected.extend(invalid);
        let (assignments, distances) =
            segflow_cluster::assign_rows(&model, &valid).map_err(cluster_error)?;
        let mut offset = 0;
        for batch in &valid {
            for (j, name) in segment.features.iter().enumerate() {
                let values = batch
                    .column_by_name(name)
                    .and_then(|c| c.as_primitive_opt::<Float64Type>())
                    .ok_or_else(|| {
                        EngineError::Segment(format!("feature `{name}` is not numeric"))
                    })?;
                for (i, value) in values.values().iter().enumerate() {
                    totals.sums[assignments[offset + i] as usize][j] += value;
                }
            }
            offset += batch.num_rows();
        }
        for (&row, distance) in assignments.iter().zip(&distances) {
            totals.sizes[row as usize] += 1;
            inertia += distance * distance;
        }
        customers += assignments.len() as u64;
        let part_model = Segmentation {
            assignments,
            distances,
            ..model.clone()
        };
        for out in segments_batches(&valid, &segment.key, &segment.carry, &part_model, &names)
            .map_err(cluster_error)?
        {
            if keep_current {
                current.push(out.clone());
            }
            let open = match writer.take() {
                Some(open) => open,
                None => {
                    let name = format!("segments/part-{part:05}.parquet");
                    part += 1;
                    staging.table_writer("segments", &name, out.schema())?
                }
            };
            let mut open = open;
            open.write(&out).await?;
            if open.rows() as usize >= ROWS_PER_SEGMENT_FILE {
                open.finish(staging).await?;
            } else {
                writer = Some(open);
            }
        }
    }
    if let Some(open) = writer {
        open.finish(staging).await?;
    }
    let customers_quarantined = rejected.iter().map(|b| b.num_rows() as u64).sum();
    if let Some(first) = rejected.first() {
        let schema = first.schema();
        staging
            .write_parquet(
                "rejects/segment",
                "rejects/segment.parquet",
                schema,
                &rejected,
            )
            .await?;
    }
    let segmentation = Segmentation {
        sizes: totals.sizes.clone(),
        inertia,
        assignments: Vec::new(),
        distances: Vec::new(),
        ..model
    };
    Ok(Stage {
        segmentation,
        names,
        scores,
        customers,
        customers_quarantined,
        fit_ms,
        current,
        totals,
    })
}

/// The `size` customers whose keys hash lowest under `segment.seed`, sorted by key: the same
/// customers, in the same order, whatever order the input arrives in. One pass keeps the
/// rows hashing below a threshold set to pass a few more than `size`; should too few pass
/// (a chance below one in a billion), the pass runs again with a wider margin.
async fn seeded_sample(
    frame: &DataFrame,
    segment: &Segment,
    size: usize,
    total: usize,
) -> Result<RecordBatch> {
    // Reading the input fails for the input's reasons (a source's bad row, a step's
    // result gone): blame the table, keeping the error to tell which.
    let read_error =
        |error: datafusion::error::DataFusionError| EngineError::table(&segment.input, error);
    let arrow_error = |error: arrow::error::ArrowError| EngineError::Segment(error.to_string());
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let key_index = schema.index_of(&segment.key).map_err(arrow_error)?;
    let converter = RowConverter::new(vec![SortField::new(
        schema.field(key_index).data_type().clone(),
    )])
    .map_err(arrow_error)?;
    let mut sigmas = 6.0;
    loop {
        // Binomial spread: `sigmas` standard deviations above the expected count.
        let share = size as f64 / total as f64;
        let margin = sigmas * (size as f64 * (1.0 - share)).sqrt() + 1.0;
        let threshold_share = ((size as f64 + margin) / total as f64).min(1.0);
        let threshold = (threshold_share * u64::MAX as f64) as u64;
        let mut candidates = Vec::new();
        let mut hashes = Vec::new();
        let mut stream = frame.clone().execute_stream().await.map_err(read_error)?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(read_error)?;
            let keys = converter
                .convert_columns(&[batch.column(key_index).clone()])
                .map_err(arrow_error)?;
            let mut picked = Vec::new();
            for (row, key) in keys.iter().enumerate() {
                let hash = seeded_hash(key.as_ref(), segment.seed);
                if hash <= threshold {
                    picked.push(row as u32);
                    hashes.push(hash);
                }
            }
            if !picked.is_empty() {
                let rows = UInt32Array::from(picked);
                candidates.push(take_record_batch(&batch, &rows).map_err(arrow_error)?);
            }
        }
        if hashes.len() < size && threshold_share < 1.0 {
            sigmas *= 2.0;
            continue;
        }
        let candidates = concat_batches(&schema, &candidates).map_err(arrow_error)?;
        let mut order: Vec<u32> = (0..hashes.len() as u32).collect();
        if order.len() > size {
            order.select_nth_unstable_by_key(size, |&row| hashes[row as usize]);
            order.truncate(size);
        }
        let sample =
            take_record_batch(&candidates, &UInt32Array::from(order)).map_err(arrow_error)?;
        let by_key = sort_to_indices(sample.column(key_index), None, None).map_err(arrow_error)?;
        return take_record_batch(&sample, &by_key).map_err(arrow_error);
    }
}

/// A hash of a key's row encoding that is the same on every machine and in every release:
/// FNV-1a over the bytes, then SplitMix64's finaliser with the seed mixed in, which spreads
/// the hashes of neighbouring keys over the whole range. Hand-written because the hashers
/// at hand (std's, ahash) do not promise stable output, and the sample must not change
/// with the machine the run is on.
fn seeded_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = hash ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeded_hash_is_fixed_and_spreads_neighbouring_keys() {
        assert_eq!(seeded_hash(b"", 0), seeded_hash(b"", 0));
        assert_ne!(seeded_hash(b"1", 42), seeded_hash(b"1", 43));
        // Keys 0..10_000: about half hash into the lower half of the range.
        let low = (0u64..10_000)
            .filter(|key| seeded_hash(&key.to_be_bytes(), 42) < u64::MAX / 2)
            .count();
        assert!((4_800..5_200).contains(&low), "{low}");
    }
}
