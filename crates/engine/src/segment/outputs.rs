//! What the segment stage publishes beside `segments/`: centroids, the model file, the
//! profile and the k-selection scores, and `segments/` itself from batches in memory.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use segflow_cluster::{KScore, SegmentTotals, Segmentation, centroids_batch, profile_from_totals};
use segflow_pipeline::Segment;
use segflow_publish::Staging;

use super::model_file::ModelFile;
use super::stage::{ROWS_PER_SEGMENT_FILE, cluster_error};
use crate::{EngineError, Result};

/// `k_selection.parquet`: per k tried, its inertia (the elbow) and each metric, and which
/// k was kept.
pub(super) fn k_selection_batch(scores: &[KScore], chosen: usize) -> Result<RecordBatch> {
    let float = |name: &str, value: fn(&KScore) -> f64| -> (Field, ArrayRef) {
        (
            Field::new(name, DataType::Float64, false),
            Arc::new(Float64Array::from_iter_values(scores.iter().map(value))),
        )
    };
    let columns: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("k", DataType::Int32, false),
            Arc::new(Int32Array::from_iter_values(
                scores.iter().map(|s| s.k as i32),
            )),
        ),
        float("inertia", |s| s.inertia),
        float("silhouette", |s| s.silhouette),
        float("calinski_harabasz", |s| s.calinski_harabasz),
        float("davies_bouldin", |s| s.davies_bouldin),
        (
            Field::new("chosen", DataType::Boolean, false),
            Arc::new(BooleanArray::from_iter(
                scores.iter().map(|s| Some(s.k == chosen)),
            )),
        ),
    ];
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|error| EngineError::Segment(error.to_string()))
}

/// `segments/` from batches in memory, in files of at most `ROWS_PER_SEGMENT_FILE` rows.
pub(super) async fn write_segments(
    segments: Vec<RecordBatch>,
    staging: &mut Staging,
) -> Result<()> {
    let schema = segments
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| EngineError::Segment("no customers to segment".to_string()))?;
    let mut part = 0;
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    for batch in segments {
        pending_rows += batch.num_rows();
        pending.push(batch);
        if pending_rows >= ROWS_PER_SEGMENT_FILE {
            let name = format!("segments/part-{part:05}.parquet");
            staging
                .write_parquet("segments", &name, schema.clone(), &pending)
                .await?;
            part += 1;
            pending.clear();
            pending_rows = 0;
        }
    }
    if !pending.is_empty() {
        let name = format!("segments/part-{part:05}.parquet");
        staging
            .write_parquet("segments", &name, schema, &pending)
            .await?;
    }
    Ok(())
}

/// `centroids.parquet`, `model.json` and `profile.parquet`.
pub(super) async fn write_model_outputs(
    segment: &Segment,
    segmentation: &Segmentation,
    names: &[String],
    totals: &SegmentTotals,
    staging: &mut Staging,
) -> Result<()> {
    let centroids = centroids_batch(segmentation, names).map_err(cluster_error)?;
    staging
        .write_parquet(
            "centroids",
            "centroids.parquet",
            centroids.schema(),
            &[centroids],
        )
        .await?;
    staging
        .write_bytes(
            "model.json",
            ModelFile::new(segment, segmentation, names).to_json(),
        )
        .await?;
    let profile = profile_from_totals(segmentation, names, totals).map_err(cluster_error)?;
    staging
        .write_parquet("profile", "profile.parquet", profile.schema(), &[profile])
        .await?;
    Ok(())
}
