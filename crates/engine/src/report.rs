//! The machine-readable account of a run (`--report-json`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ErrorClass;

/// The version of the report's shape: raised when a field changes meaning or goes away
/// (added fields do not raise it; a new `status` does). 3: `status` `unchanged` and
/// `changes` (`--if-changed`); 2: `status`, `error`, `segflow_version`, failed runs.
pub const RUN_REPORT_SCHEMA_VERSION: u32 = 3;

/// How a run ended, as `--report-json` and the final JSON log line say it; one per exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Exit code 0.
    Success,
    /// Exit code 0: with `--if-changed`, nothing differs from the latest published run
    /// (`latest_run`), so nothing ran or was published.
    Unchanged,
    /// Exit code 3: the pipeline (or the command line) is wrong; nothing ran or was published.
    Invalid,
    /// Exit code 4: the data broke a check; nothing was published.
    ValidationFailed,
    /// Exit code 1: anything else (a store, the machine, a signal); nothing was published.
    RuntimeError,
}

impl From<ErrorClass> for RunOutcome {
    fn from(class: ErrorClass) -> RunOutcome {
        match class {
            ErrorClass::PipelineInvalid => RunOutcome::Invalid,
            ErrorClass::ValidationFailed => RunOutcome::ValidationFailed,
            ErrorClass::Runtime => RunOutcome::RuntimeError,
        }
    }
}

/// The account of a run, whether it succeeded or not: a failed run has its `status` and
/// `error`, the steps it reported on (the checks that failed among them) and no outputs.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub status: RunOutcome,
    /// Why the run failed, as the final line of stderr says it (secrets masked).
    pub error: Option<String>,
    pub segflow_version: String,
    pub pipeline: String,
    /// Absent only when the run failed before its id was known (a pipeline that did not load).
    pub run_id: Option<String>,
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
    /// With a `value:` stage (and not only some steps).
    pub value: Option<ValueReport>,
    /// The output folder and every file published in it.
    pub outputs: Vec<OutputReport>,
    /// The run `_LATEST.json` names once this one is published: this run, or a later one
    /// in run order when this run is a backfill. Absent when nothing was published.
    pub latest_run: Option<String>,
    /// With `--if-changed`: what differs from the latest published run, so the run ran
    /// (empty when unchanged). Absent without `--if-changed`.
    pub changes: Option<Vec<String>>,
    /// When the steps that keep customers apart ran bucket by bucket (`partition_key`,
    /// `buckets`): how the sources were split. Absent when they ran over whole tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<BucketsReport>,
}

/// How a run split its sources into buckets and which steps ran bucket by bucket.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BucketsReport {
    pub count: usize,
    /// The sources split, each with its key column and rows.
    pub sources: Vec<BucketedSource>,
    /// Rows of each bucket, over every split source.
    pub rows: Vec<u64>,
    /// The steps that ran once per bucket, in plan order.
    pub steps: Vec<String>,
    /// Whether rows without a key were dealt out over the buckets (no bucketed step groups
    /// them) rather than all put in the first.
    pub null_keys_spread: bool,
    /// Time spent reading the sources and writing the buckets.
    pub split_ms: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BucketedSource {
    pub name: String,
    pub key: String,
    pub rows: u64,
}

impl RunReport {
    /// The report of a run that failed: what is known of it, and the error.
    pub fn failed(failure: FailedRun) -> RunReport {
        RunReport {
            schema_version: RUN_REPORT_SCHEMA_VERSION,
            status: failure.status,
            error: Some(failure.error),
            segflow_version: env!("CARGO_PKG_VERSION").to_string(),
            pipeline: failure.pipeline,
            run_id: failure.run_id,
            started_at: failure.started_at,
            duration_ms: failure.duration_ms,
            vars: failure.vars,
            sources: Vec::new(),
            steps: failure.steps,
            segment: None,
            outputs: Vec::new(),
            latest_run: None,
            changes: None,
            value: None,
            buckets: None,
        }
    }
}

/// What the caller knows of a run that failed.
#[derive(Debug, Clone)]
pub struct FailedRun {
    /// The pipeline's name, or its file when it did not load.
    pub pipeline: String,
    pub run_id: Option<String>,
    pub started_at: String,
    pub duration_ms: u64,
    pub vars: BTreeMap<String, String>,
    pub status: RunOutcome,
    pub error: String,
    /// The steps' reports a validation failure carries.
    pub steps: Vec<StepReport>,
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
    /// Rows that did not parse, set aside in `rejects/<source>.parquet`.
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

impl StepReport {
    /// The reports of one step's runs over parts of its input (buckets, in order) as one:
    /// rows summed, spilled when a part was, the time of all parts, the first part's
    /// profile (every part runs the same plan). The checks are the first part's: the
    /// caller judges them on all parts.
    pub fn summed(parts: Vec<StepReport>) -> StepReport {
        let count = parts.len();
        let mut parts = parts.into_iter();
        let mut summed = parts.next().expect("a step runs over one part at least");
        for part in parts {
            summed.rows_in += part.rows_in;
            summed.rows_out += part.rows_out;
            summed.rows_removed = match (summed.rows_removed, part.rows_removed) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            summed.rows_quarantined += part.rows_quarantined;
            summed.spilled |= part.spilled;
            summed.duration_ms += part.duration_ms;
        }
        if count > 1 {
            summed.profile = summed.profile.map(|profile| {
                format!("-- bucket 1 of {count}; every bucket runs this plan\n{profile}")
            });
        }
        summed
    }
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
    /// Row-level checks: the rows checked, and the failing rows' share of them (0 to 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_checked: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_share: Option<f64>,
    /// Row-level checks: the thresholds judged, as written (`> 0`, `>= 2.5%`); absent
    /// when the check never warns (or never fails).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warn_if: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_if: Option<String>,
    /// A few failing rows, by the step's sample key.
    pub samples: Vec<String>,
    /// What a table-level check measured.
    pub detail: Option<String>,
    /// A `change` check: the metric this run, and what it was compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricReport>,
}

impl CheckReport {
    pub(crate) fn with_status(self, status: &str) -> CheckReport {
        CheckReport {
            status: status.to_string(),
            ..self
        }
    }
}

/// A metric a `change` check measured; recorded in the manifest for the next run.
#[derive(Debug, Clone, Serialize)]
pub struct MetricReport {
    /// The table measured (the validate step's input).
    pub table: String,
    /// `row_count`, `null_share(customer_id)`, ...
    pub metric: String,
    /// Absent when the table has no value of it (a sum of no rows).
    pub value: Option<f64>,
    /// The run compared with and its value of the metric; absent with no baseline.
    pub baseline_run: Option<String>,
    pub baseline: Option<f64>,
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
    /// With `segment.model`: the run (or model file) whose model assigned the customers,
    /// not refitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_with_model_of: Option<String>,
    /// `segment.checks`, judged on the fitted segments before publishing.
    pub checks: Vec<CheckReport>,
    /// `segment.actions`: the pipeline's suggested action per segment name, which the
    /// report shows over its defaults.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<String, String>,
    /// The features' `unit`s, by feature.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub units: BTreeMap<String, String>,
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

/// What the value stage fitted and predicted.
#[derive(Debug, Clone, Serialize)]
pub struct ValueReport {
    pub input: String,
    /// `bg_nbd`, `mbg_nbd` or `pareto_nbd`.
    pub purchase_model: String,
    /// By name (`r`, `alpha`, `a`, `b`; `s`, `beta`), in `time_unit`s.
    pub params: BTreeMap<String, f64>,
    pub log_likelihood: f64,
    /// BFGS iterations; absent when its line search ended the fit.
    pub iterations: Option<u64>,
    pub converged: bool,
    /// `gamma_gamma`, or absent with `spend_model: none`.
    pub spend_model: Option<String>,
    /// `p`, `q`, `v`.
    pub spend_params: Option<BTreeMap<String, f64>>,
    pub time_unit: String,
    pub horizon_months: u32,
    pub discount_rate: f64,
    pub customers: u64,
    /// Customers whose history the models cannot read, set aside (`on_invalid: quarantine`).
    pub customers_quarantined: u64,
    /// The distinct (frequency, recency, T) the purchase model was fitted on.
    pub distinct_histories: u64,
    pub evaluation: Option<EvaluationReport>,
    /// Per segment, largest first (without a segment stage, one line for all customers);
    /// empty until the segment stage has run.
    pub segments: Vec<ValueSegmentReport>,
    /// The stage's own time: its input read and checked, the fits, the predictions and the
    /// summaries (the segment stage between them not counted).
    pub duration_ms: u64,
}

/// The model judged on the later period the SQL measured (`value.evaluate`).
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationReport {
    pub period_days: f64,
    pub customers: u64,
    pub actual_purchases: f64,
    pub predicted_purchases: f64,
    /// Mean over customers of |predicted - actual| purchases.
    pub mean_absolute_error: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValueSegmentReport {
    pub segment_id: i32,
    pub name: String,
    pub customers: u64,
    pub mean_p_alive: f64,
    pub expected_purchases: f64,
    /// Absent with `spend_model: none`.
    pub total_clv: Option<f64>,
    pub mean_clv: Option<f64>,
    /// The segment's share of the predicted value of all segmented customers.
    pub value_share: Option<f64>,
}
