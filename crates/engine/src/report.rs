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
    /// `fail` or `quarantine`.
    pub on_error: String,
    /// Rows read from its files (for a source read by several steps, the largest scan);
    /// absent when no step that ran read it.
    pub rows_read: Option<u64>,
    /// Rows passed on to the steps (rows_read minus rows_quarantined).
    pub rows_out: Option<u64>,
    /// Rows that did not parse, set aside in `_rejects/<source>.parquet`.
    pub rows_quarantined: u64,
    /// What the run noticed about its files, e.g. a declared nullable column a Parquet
    /// file lacks (read as null there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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
    /// Clean steps reading one table: rows the SQL itself filtered out (rows_in - rows_out).
    pub rows_removed: Option<u64>,
    /// Validate steps: rows removed to the rejects table (rows_in = rows_out + this).
    pub rows_quarantined: u64,
    /// Validate steps: the outcome of each check.
    pub checks: Vec<CheckReport>,
    /// Whether the result was too large for memory and went to the spill folder.
    pub spilled: bool,
    /// The validate step this step's rows streamed into instead of being materialised (it
    /// was that step's only reader); this step's time is part of that step's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streamed_into: Option<String>,
    pub duration_ms: u64,
    /// With `--profile`: the executed plan with each operator's metrics (EXPLAIN ANALYZE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub name: String,
    #[serde(rename = "type")]
    pub check_type: String,
    pub severity: String,
    /// `pass`, `warn`, `fail` or `quarantined`.
    pub status: String,
    /// Failing rows (for table-level checks, 1 when the check fails).
    pub failing_rows: u64,
    /// A few failing rows, by the step's sample key.
    pub samples: Vec<String>,
    /// What a table-level check measured.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentReport {
    pub input: String,
    pub key: String,
    pub features: Vec<String>,
    pub customers: u64,
    /// Customers set aside for a null, NaN or infinite feature (`on_invalid_features: quarantine`).
    pub customers_quarantined: u64,
    /// With `fit_sample` and more customers than it: the sample size the model was fitted on.
    pub fitted_on: Option<u64>,
    pub k: usize,
    pub seed: u64,
    pub iterations: usize,
    pub converged: bool,
    /// Sum of squared distances to the assigned centroids, in scaled units.
    pub inertia: f64,
    /// Segment ids, largest segment first: 0..k, or ids kept from a warm start.
    pub ids: Vec<u32>,
    /// Customers per segment, in the order of `ids`.
    pub sizes: Vec<u64>,
    /// In the order of `ids`: generated from the features' roles, or set by the pipeline.
    pub names: Vec<String>,
    /// With k chosen from a range: every k tried and why the kept one won.
    pub k_selection: Option<KSelectionReport>,
    /// The run whose model this one started from (and kept the segment ids of).
    pub warm_start_from: Option<String>,
    /// `segment.checks`, judged on the fitted segments before publishing.
    pub checks: Vec<CheckReport>,
    /// Fitting the model alone (transforms and scaling included), within `duration_ms`.
    pub fit_ms: u64,
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

#[derive(Debug, Clone, Serialize)]
pub struct KSelectionReport {
    /// The metric k was chosen by.
    pub metric: String,
    pub chosen: usize,
    pub scores: Vec<KScoreReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KScoreReport {
    pub k: usize,
    pub inertia: f64,
    pub silhouette: f64,
    pub calinski_harabasz: f64,
    pub davies_bouldin: f64,
}
