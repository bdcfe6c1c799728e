//! The segment stage with its whole input in memory: fit on every customer, assign them,
//! write `segments/`. Also what every stage shares: the fit (from scratch, choosing k, or
//! from a previous run's model), per-segment totals, and setting aside customers whose
//! features cannot be clustered.

use std::time::Instant;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::prelude::SessionContext;
use segflow_cluster::{KMeansSettings, KScore, SegmentTotals, Segmentation, segments_batches};
use segflow_pipeline::Segment;
use segflow_publish::Staging;

use super::input::read_input;
use super::outputs::write_segments;
use super::settings;
use super::stage::{Stage, cluster_error, names_of, rows};
use super::warm_start::PreviousRun;
use crate::{EngineError, Result};

/// The whole input in memory: fit on all of it, assign, write `segments/`.
pub(super) async fn in_memory_stage(
    input: Vec<RecordBatch>,
    segment: &Segment,
    previous: Option<&PreviousRun>,
    staging: &mut Staging,
) -> Result<Stage> {
    let (input, invalid) = if segment.quarantine_invalid {
        split_invalid(&input, segment)?
    } else {
        (input, None)
    };
    let customers_quarantined = invalid.as_ref().map_or(0, |b| b.num_rows() as u64);
    if let Some(invalid) = invalid {
        staging
            .write_parquet(
                "rejects/segment",
                "rejects/segment.parquet",
                invalid.schema(),
                &[invalid],
            )
            .await?;
    }
    let kmeans = settings::kmeans_settings(segment);
    tracing::info!(customers = rows(&input), k = segment.k, "fitting k-means");
    let fitting = Instant::now();
    let (segmentation, scores) = fit_model(&input, segment, previous, &kmeans)?;
    let fit_ms = fitting.elapsed().as_millis() as u64;
    let names = names_of(&segmentation, segment, previous);
    let segments = segments_batches(&input, &segment.key, &segment.carry, &segmentation, &names)
        .map_err(cluster_error)?;
    let current = if previous.is_some_and(|p| !p.segments.is_empty()) {
        segments.clone()
    } else {
        Vec::new()
    };
    write_segments(segments, staging).await?;
    let totals = totals_of(&input, &segmentation)?;
    Ok(Stage {
        customers: rows(&input) as u64,
        segmentation,
        names,
        scores,
        customers_quarantined,
        fit_ms,
        current,
        totals,
    })
}

/// Fits from the previous run's model when there is one, else from scratch (choosing k
/// when asked).
pub(super) fn fit_model(
    input: &[RecordBatch],
    segment: &Segment,
    previous: Option<&PreviousRun>,
    kmeans: &KMeansSettings,
) -> Result<(Segmentation, Option<Vec<KScore>>)> {
    if segment.fixed_model {
        let previous = previous.ok_or_else(|| {
            EngineError::SegmentData(
                "`segment.model: previous`: no run is published before this one to assign with; run once without `model` to fit one".to_string(),
            )
        })?;
        if previous.model.centroids.nrows() != segment.k {
            return Err(EngineError::SegmentData(format!(
                "`segment.model`: the model of run `{}` has {} segments and `k` says {}; set k to the model's",
                previous.run_id,
                previous.model.centroids.nrows(),
                segment.k
            )));
        }
        let assigned =
            segflow_cluster::segment_with_model(input, &segment.features, &previous.model)
                .map_err(cluster_error)?;
        return Ok((assigned, None));
    }
    match previous {
        Some(previous) => Ok((
            segflow_cluster::segment_from_previous(
                input,
                &segment.features,
                &previous.model,
                kmeans,
            )
            .map_err(cluster_error)?,
            None,
        )),
        None => fit(input, segment, kmeans),
    }
}

/// The fit, and with k chosen from a range, the score of every k tried.
fn fit(
    input: &[RecordBatch],
    segment: &Segment,
    kmeans: &KMeansSettings,
) -> Result<(Segmentation, Option<Vec<KScore>>)> {
    let features = &segment.features;
    let transforms = settings::transforms(segment);
    let scaler = settings::scaler(segment.scaler);
    match &segment.k_selection {
        None => segflow_cluster::segment(input, features, &transforms, scaler, kmeans)
            .map(|segmentation| (segmentation, None)),
        Some(selection) => segflow_cluster::segment_choosing_k(
            input,
            features,
            &transforms,
            scaler,
            kmeans,
            &settings::k_selection(selection),
        )
        .map(|(segmentation, scores)| (segmentation, Some(scores))),
    }
    .map_err(cluster_error)
}

/// Per segment: customers, sums and medians of the raw features of `input` as assigned.
pub(super) fn totals_of(
    input: &[RecordBatch],
    segmentation: &Segmentation,
) -> Result<SegmentTotals> {
    let k = segmentation.centroids.nrows();
    let features = &segmentation.features;
    let mut values = vec![vec![Vec::new(); features.len()]; k];
    let mut offset = 0;
    for batch in input {
        for (j, name) in features.iter().enumerate() {
            let column = batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
                .ok_or_else(|| EngineError::Segment(format!("feature `{name}` is not numeric")))?;
            for (i, value) in column.values().iter().enumerate() {
                values[segmentation.assignments[offset + i] as usize][j].push(*value);
            }
        }
        offset += batch.num_rows();
    }
    Ok(SegmentTotals {
        sizes: values
            .iter()
            .map(|v| v.first().map_or(0, Vec::len) as u64)
            .collect(),
        sums: values
            .iter()
            .map(|v| v.iter().map(|x| x.iter().sum()).collect())
            .collect(),
        medians: values
            .iter()
            .map(|v| v.iter().map(|x| segflow_cluster::median(x)).collect())
            .collect(),
    })
}

/// The segment stage without its outputs: every customer of the input with its segment,
/// as `segments/` would hold them (for tests of a whole pipeline on a few rows).
pub async fn segments_in_memory(
    ctx: &SessionContext,
    segment: &Segment,
) -> Result<Vec<RecordBatch>> {
    let input = read_input(ctx, segment).await?;
    let (segmentation, _) = fit(&input, segment, &settings::kmeans_settings(segment))?;
    let names = names_of(&segmentation, segment, None);
    segments_batches(&input, &segment.key, &segment.carry, &segmentation, &names)
        .map_err(cluster_error)
}

/// Customers whose features can all be clustered, and the others with the reason: the key,
/// `reason`, then the features as read.
pub(super) fn split_invalid(
    input: &[RecordBatch],
    segment: &Segment,
) -> Result<(Vec<RecordBatch>, Option<RecordBatch>)> {
    let mut kept = Vec::new();
    let mut rejected = Vec::new();
    for batch in input {
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); batch.num_rows()];
        for name in &segment.features {
            let values = batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
                .ok_or_else(|| EngineError::Segment(format!("feature `{name}` is not numeric")))?;
            for (i, reason) in reasons.iter_mut().enumerate() {
                if values.is_null(i) {
                    reason.push(format!("{name} is null"));
                } else if values.value(i).is_nan() {
                    reason.push(format!("{name} is NaN"));
                } else if values.value(i).is_infinite() {
                    reason.push(format!("{name} is infinite"));
                }
            }
        }
        let valid = BooleanArray::from_iter(reasons.iter().map(|r| Some(r.is_empty())));
        let invalid = BooleanArray::from_iter(reasons.iter().map(|r| Some(!r.is_empty())));
        let arrow_error = |error: arrow::error::ArrowError| EngineError::Segment(error.to_string());
        kept.push(filter_record_batch(batch, &valid).map_err(arrow_error)?);
        if invalid.true_count() == 0 {
            continue;
        }
        let bad = filter_record_batch(batch, &invalid).map_err(arrow_error)?;
        let reason = StringArray::from_iter_values(
            reasons
                .iter()
                .filter(|r| !r.is_empty())
                .map(|r| r.join("; ")),
        );
        let schema = bad.schema();
        let mut fields = vec![
            schema
                .field_with_name(&segment.key)
                .map_err(arrow_error)?
                .clone(),
            Field::new("reason", DataType::Utf8, false),
        ];
        let mut columns = vec![
            bad.column_by_name(&segment.key)
                .expect("the key was read")
                .clone(),
            std::sync::Arc::new(reason) as arrow::array::ArrayRef,
        ];
        for name in &segment.features {
            fields.push(schema.field_with_name(name).map_err(arrow_error)?.clone());
            columns.push(
                bad.column_by_name(name)
                    .expect("features were read")
                    .clone(),
            );
        }
        rejected.push(
            RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
                .map_err(arrow_error)?,
        );
    }
    let rejected = match rejected.first() {
        Some(first) => Some(
            arrow::compute::concat_batches(&first.schema(), &rejected)
                .map_err(|error| EngineError::Segment(error.to_string()))?,
        ),
        None => None,
    };
    Ok((kept, rejected))
}
