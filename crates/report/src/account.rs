//! The files of a run the report reads besides its tables: the run's account (`run.json`,
//! what `--report-json` says of the run, written by the engine) and the segment model
//! (`model.json`). Only the fields the report shows are read, and every one a later
//! segflow might leave out has a default, so an older or newer run still renders.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The run's account, as of publishing.
#[derive(Debug, Clone, Deserialize)]
pub struct RunAccount {
    pub duration_ms: u64,
    #[serde(default)]
    pub sources: Vec<SourceAccount>,
    #[serde(default)]
    pub steps: Vec<StepAccount>,
    #[serde(default)]
    pub segment: Option<SegmentAccount>,
    #[serde(default)]
    pub value: Option<ValueAccount>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SourceAccount {
    pub name: String,
    pub format: String,
    pub rows_read: Option<u64>,
    pub rows_out: Option<u64>,
    #[serde(default)]
    pub rows_quarantined: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StepAccount {
    pub name: String,
    pub kind: String,
    pub sql: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_removed: Option<u64>,
    #[serde(default)]
    pub rows_quarantined: u64,
    #[serde(default)]
    pub checks: Vec<CheckAccount>,
    #[serde(default)]
    pub streamed_into: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckAccount {
    pub name: String,
    #[serde(rename = "type")]
    pub check_type: String,
    pub severity: String,
    pub status: String,
    pub failing_rows: u64,
    #[serde(default)]
    pub samples: Vec<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SegmentAccount {
    pub input: String,
    pub key: String,
    pub features: Vec<String>,
    pub customers: u64,
    #[serde(default)]
    pub customers_quarantined: u64,
    pub fitted_on: Option<u64>,
    pub k: usize,
    pub iterations: usize,
    pub converged: bool,
    pub inertia: f64,
    pub k_selection: Option<KSelectionAccount>,
    pub warm_start_from: Option<String>,
    #[serde(default)]
    pub assigned_with_model_of: Option<String>,
    #[serde(default)]
    pub checks: Vec<CheckAccount>,
    /// `segment.actions` of the pipeline: suggestions by segment name.
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
    /// `unit` of each feature that has one.
    #[serde(default)]
    pub units: BTreeMap<String, String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KSelectionAccount {
    pub metric: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ValueAccount {
    pub purchase_model: String,
    pub params: BTreeMap<String, f64>,
    pub log_likelihood: f64,
    pub converged: bool,
    pub spend_model: Option<String>,
    pub spend_params: Option<BTreeMap<String, f64>>,
    pub time_unit: String,
    pub horizon_months: u32,
    pub discount_rate: f64,
    pub customers: u64,
    #[serde(default)]
    pub customers_quarantined: u64,
    pub evaluation: Option<EvaluationAccount>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EvaluationAccount {
    pub period_days: f64,
    pub customers: u64,
    pub actual_purchases: f64,
    pub predicted_purchases: f64,
    pub mean_absolute_error: f64,
}

/// What the report reads of `model.json`: each feature's transforms and fitted clip.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelAccount {
    pub features: Vec<ModelFeature>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelFeature {
    pub name: String,
    #[serde(default)]
    pub log1p: bool,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub winsorize: Option<ModelClip>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ModelClip {
    pub low: f64,
    pub high: f64,
    pub low_percentile: f64,
    pub high_percentile: f64,
}
