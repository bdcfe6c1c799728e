//! The machine-readable account of a run (`--report-json`).

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub run_id: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_ms: u64,
    /// Variable values; those read from the environment are shown as `***`.
    pub vars: BTreeMap<String, String>,
    pub sources: Vec<SourceReport>,
    /// In the order they ran.
    pub steps: Vec<StepReport>,
    /// Absent when only some steps ran (`--select`, `--until`).
    pub segment: Option<SegmentReport>,
    /// The output folder and every file published in it.
    pub outputs: Vec<OutputReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    pub name: String,
    pub url: String,
    pub format: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub kind: String,
    /// The SQL file, or the step's key in the pipeline for inline SQL.
    pub sql: String,
    pub reads: Vec<String>,
    /// Rows read from the tables the step reads.
    pub rows_in: u64,
    pub rows_out: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentReport {
    pub input: String,
    pub key: String,
    pub features: Vec<String>,
    pub customers: u64,
    pub k: usize,
    pub seed: u64,
    pub iterations: usize,
    pub converged: bool,
    /// Sum of squared distances to the assigned centroids, in scaled units.
    pub inertia: f64,
    /// Customers per segment, by segment id.
    pub sizes: Vec<u64>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputReport {
    pub url: String,
    /// `folder` or `file`.
    pub kind: String,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
}
