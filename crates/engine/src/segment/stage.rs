//! What the ways of running the stage share: what a stage fitted and wrote, the names of
//! its segments, and which cluster errors are the data's fault.

use arrow::array::RecordBatch;
use segflow_cluster::{ClusterError, KScore, SegmentTotals, Segmentation, segment_names};
use segflow_pipeline::Segment;

use super::warm_start::PreviousRun;
use crate::EngineError;

/// Rows per file under `segments/`: files stay a size warehouses load in parallel.
pub const ROWS_PER_SEGMENT_FILE: usize = 1_000_000;

/// What a stage fitted and wrote, for the outputs every stage shares.
pub struct Stage {
    /// The model; its `sizes` and `inertia` cover every customer.
    pub segmentation: Segmentation,
    pub names: Vec<String>,
    pub scores: Option<Vec<KScore>>,
    pub customers: u64,
    pub customers_quarantined: u64,
    /// Time spent fitting the model (scaling included), in milliseconds.
    pub fit_ms: u64,
    /// `key` and `segment_id` of every customer, when a migration is to be counted.
    pub current: Vec<RecordBatch>,
    pub totals: SegmentTotals,
}

/// Names by centroid row: from the roles, but a segment matched to a previous run's keeps
/// that run's name, and the pipeline's `names` win over both.
pub fn names_of(
    segmentation: &Segmentation,
    segment: &Segment,
    previous: Option<&PreviousRun>,
) -> Vec<String> {
    let mut names = segment_names(segmentation, &Default::default());
    if let Some(previous) = previous {
        for (name, id) in names.iter_mut().zip(&segmentation.ids) {
            if let Some(kept) = previous.names.get(id) {
                *name = kept.clone();
            }
        }
    }
    for (name, id) in names.iter_mut().zip(&segmentation.ids) {
        if let Some(given) = segment.names.get(id) {
            *name = given.clone();
        }
    }
    names
}

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Data the stage cannot cluster is a validation failure; the rest is a failed run.
pub fn cluster_error(error: ClusterError) -> EngineError {
    match error {
        ClusterError::NotFinite { .. }
        | ClusterError::TooFewRows { .. }
        | ClusterError::TooFewDistinct { .. }
        | ClusterError::TooLarge { .. }
        | ClusterError::LogOfNonPositive { .. } => EngineError::SegmentData(error.to_string()),
        _ => EngineError::Segment(error.to_string()),
    }
}
