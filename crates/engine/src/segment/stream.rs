//! The segment stage over an input larger than its `fit_sample`: the model is fitted on a
//! seeded sample, then every customer streams through it, so the stage holds the sample
//! and one batch rather than the whole input.

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::Float64Type;
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;
use segflow_cluster::{SegmentTotals, Segmentation, segments_batches};
use segflow_pipeline::Segment;
use segflow_publish::{Staging, TableWriter};

use super::{
    ROWS_PER_SEGMENT_FILE, Stage, cluster_error, fit_model, kmeans_settings, names_of, rows,
    split_invalid, totals_of,
};
use crate::warm_start::PreviousRun;
use crate::{EngineError, Result};

/// More customers than `fit_sample`: fit on a seeded sample (pass 1), then stream every
/// customer through the model (pass 2), writing `segments/` batch by batch and keeping
/// only per-segment totals, so memory holds the sample and one batch, not the input.
pub(super) async fn streamed_stage(
    frame: DataFrame,
    segment: &Segment,
    previous: Option<&PreviousRun>,
    sample_size: usize,
    total: usize,
    staging: &mut Staging,
) -> Result<Stage> {
    let read_error = |error: datafusion::error::DataFusionError| {
        EngineError::Segment(format!("reading `{}`: {error}", segment.input))
    };
    // Pass 1: the same customers whatever the input order (the frame is sorted by key).
    let mut rng = Xoshiro256Plus::seed_from_u64(segment.seed);
    let mut picked = rand::seq::index::sample(&mut rng, total, sample_size).into_vec();
    picked.sort_unstable();
    let mut sample = Vec::new();
    let mut offset = 0;
    let mut next = 0;
    let mut stream = frame.clone().execute_stream().await.map_err(read_error)?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(read_error)?;
        let end = offset + batch.num_rows();
        let start = next;
        while next < picked.len() && picked[next] < end {
            next += 1;
        }
        let rows =
            UInt32Array::from_iter_values(picked[start..next].iter().map(|&i| (i - offset) as u32));
        let columns = batch
            .columns()
            .iter()
            .map(|column| arrow::compute::take(column, &rows, None))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|error| EngineError::Segment(error.to_string()))?;
        sample.push(
            RecordBatch::try_new(batch.schema(), columns)
                .map_err(|error| EngineError::Segment(error.to_string()))?,
        );
        offset = end;
    }
    let sample = if segment.quarantine_invalid {
        split_invalid(&sample, segment)?.0
    } else {
        sample
    };
    let settings = kmeans_settings(segment);
    tracing::info!(
        customers = total,
        sample = rows(&sample),
        k = segment.k,
        "fitting k-means on a sample"
    );
    let fitting = std::time::Instant::now();
    let (model, scores) = fit_model(&sample, segment, previous, &settings)?;
    let fit_ms = fitting.elapsed().as_millis() as u64;
    let names = names_of(&model, segment, previous);
    let sample_totals = totals_of(&sample, &model)?;

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
    let keep_current = previous.is_some_and(|p| !p.segments.is_empty());
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
        for out in segments_batches(&valid, &segment.key, &segment.carry, &part_model)
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
                "_rejects/segment",
                "_rejects/segment.parquet",
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
