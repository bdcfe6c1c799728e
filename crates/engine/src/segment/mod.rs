//! The segment stage: one row per customer in, Parquet segments, centroids and profile out.
//!
//! [`run_segment`] checks and reads the input ([`input`]), then fits and assigns either
//! with the whole input in memory ([`local`]) or, past `fit_sample` customers, on a seeded
//! sample with every customer streamed through the model ([`stream`]; on a cluster, as a
//! query the executors run: [`on_engine`]). It then writes what every stage shares
//! ([`outputs`], [`model_file`]) and, with a warm start, the migration from the earlier run
//! ([`warm_start`]). [`settings`] maps the pipeline's settings to segflow-cluster's.

mod checks;
mod input;
mod local;
mod model_file;
mod on_engine;
mod outputs;
mod settings;
mod stage;
mod stream;
pub mod warm_start;

use std::time::Instant;

use datafusion::prelude::SessionContext;

use segflow_pipeline::Segment;
use segflow_publish::Staging;

pub use input::{check_segment_schema, planned_segments_schema};
pub use local::segments_in_memory;

use crate::report::{KScoreReport, KSelectionReport, SegmentReport};
use crate::{EngineError, Result};
use checks::SincePrevious;
use input::{input_frame, sorted_by_key};
use local::in_memory_stage;
use outputs::{k_selection_batch, write_model_outputs};
use stage::Stage;
use warm_start::PreviousRun;

/// With `on_engine`, customers past the fit sample are assigned by a query the session's
/// engine runs, not in this process.
pub async fn run_segment(
    ctx: &SessionContext,
    segment: &Segment,
    previous: Option<&PreviousRun>,
    staging: &mut Staging,
    on_engine: bool,
) -> Result<SegmentReport> {
    let started = Instant::now();
    let frame = input_frame(ctx, segment).await?;
    let sample = match segment.fit_sample {
        Some(size) => {
            let total = frame
                .clone()
                .count()
                .await
                .map_err(|error| EngineError::table(&segment.input, error))?;
            (total > size).then_some((size, total))
        }
        None => None,
    };
    let stage = match sample {
        Some((size, total)) => {
            let on_engine = on_engine.then_some(ctx);
            stream::streamed_stage(frame, segment, previous, size, total, staging, on_engine)
                .await?
        }
        None => {
            let input = sorted_by_key(frame, segment)?
                .collect()
                .await
                .map_err(|error| EngineError::table(&segment.input, error))?;
            in_memory_stage(input, segment, previous, staging).await?
        }
    };
    let Stage {
        segmentation,
        names,
        scores,
        customers,
        customers_quarantined,
        fit_ms,
        current,
        totals,
    } = stage;
    write_model_outputs(segment, &segmentation, &names, &totals, staging).await?;
    let mut since = SincePrevious {
        run_id: previous.map(|previous| previous.run_id.clone()),
        moved: None,
        shifts: previous
            .map(|previous| centroid_shifts(&segmentation, &names, previous))
            .unwrap_or_default(),
        previous_sizes: previous.and_then(|previous| previous.sizes.clone()),
    };
    // A model file alone has no segments to count movement against.
    if let Some(previous) = previous.filter(|previous| !previous.segments.is_empty()) {
        let by_id = segmentation
            .ids
            .iter()
            .copied()
            .zip(names.iter().cloned())
            .collect();
        let migration =
            warm_start::migration(ctx, previous, &current, &segment.key, &by_id).await?;
        since.moved = Some(warm_start::moved(&migration));
        staging
            .write_parquet(
                "migration",
                "migration.parquet",
                migration.schema(),
                &[migration],
            )
            .await?;
    }
    let k_selection = match (&segment.k_selection, scores) {
        (Some(selection), Some(scores)) => {
            let batch = k_selection_batch(&scores, segmentation.centroids.nrows())?;
            staging
                .write_parquet(
                    "k_selection",
                    "k_selection.parquet",
                    batch.schema(),
                    &[batch],
                )
                .await?;
            Some(KSelectionReport {
                metric: selection.metric.as_str().to_string(),
                chosen: segmentation.centroids.nrows(),
                scores: scores
                    .iter()
                    .map(|score| KScoreReport {
                        k: score.k,
                        inertia: score.inertia,
                        silhouette: score.silhouette,
                        calinski_harabasz: score.calinski_harabasz,
                        davies_bouldin: score.davies_bouldin,
                    })
                    .collect(),
            })
        }
        _ => None,
    };
    let mut report = SegmentReport {
        customers_quarantined,
        fitted_on: sample.map(|(size, _)| size as u64),
        warm_start_from: previous
            .filter(|_| !segment.fixed_model)
            .map(|previous| previous.run_id.clone()),
        assigned_with_model_of: previous
            .filter(|_| segment.fixed_model)
            .map(|previous| previous.run_id.clone()),
        k_selection,
        names,
        input: segment.input.clone(),
        key: segment.key.clone(),
        features: segment.features.clone(),
        customers,
        k: segmentation.centroids.nrows(),
        seed: segment.seed,
        iterations: segmentation.iterations,
        converged: segmentation.converged,
        inertia: segmentation.inertia,
        ids: segmentation.ids.clone(),
        sizes: totals.sizes.clone(),
        checks: Vec::new(),
        actions: segment.actions.clone(),
        units: segment.units.clone(),
        fit_ms,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    report.checks = checks::judge(&segment.checks, &report, &since);
    Ok(report)
}

/// Per segment whose id the previous model has: its name, id and the distance between its
/// centroid and the previous one, both in the previous model's units (a warm start fits in
/// them).
fn centroid_shifts(
    segmentation: &segflow_cluster::Segmentation,
    names: &[String],
    previous: &PreviousRun,
) -> Vec<(String, u32, f64)> {
    let earlier = &previous.model;
    segmentation
        .ids
        .iter()
        .zip(segmentation.centroids.outer_iter())
        .zip(names)
        .filter_map(|((id, centroid), name)| {
            let row = earlier.ids.iter().position(|earlier_id| earlier_id == id)?;
            let shift = (&centroid - &earlier.centroids.row(row))
                .mapv(|d| d * d)
                .sum()
                .sqrt();
            Some((name.clone(), *id, shift))
        })
        .collect()
}
