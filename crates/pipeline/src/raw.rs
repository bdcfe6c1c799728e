//! The pipeline file exactly as written: serde structs that mirror the YAML.
//!
//! Nothing here is checked beyond shape (types, required and unknown keys); `resolve` turns
//! these into the types the engine uses. Doc comments are written for pipeline authors:
//! they are also the descriptions of the JSON Schema editors show (`segflow schema`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// A short identifier for the pipeline, used in reports and output metadata.
    pub name: String,
    /// Free text for readers of the pipeline.
    #[serde(default)]
    pub description: Option<String>,
    /// Variables with their default values; `${NAME}` in SQL, paths and store URLs is replaced
    /// by the value, and `--var NAME=VALUE` overrides it.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// The id of a run, naming its output folder `run_id=<id>/`; may use variables, e.g.
    /// `"${as_of}"`, so a scheduled rerun of the same day replaces that day's output.
    /// `--run-id` overrides it; without either, the start time is used.
    #[serde(default)]
    pub run_id: Option<String>,
    /// Named object-store roots. A source or output names one of these and a path under it.
    pub stores: BTreeMap<String, RawStore>,
    /// The extract steps: tables read from a store.
    pub sources: Vec<RawSource>,
    /// The column that identifies a customer in every source that has a column of this
    /// name (a source's own `partition_key` overrides it): `segflow plan` shows which
    /// steps keep customers apart on it and could run bucket by bucket.
    #[serde(default)]
    pub partition_key: Option<String>,
    /// How many buckets a run splits the sources with a `partition_key` into, to run the
    /// steps that keep customers apart one bucket at a time: `auto` (the default: as many
    /// as the input's size needs for a bucket to fit the memory limit, one when it all
    /// fits) or a whole number (1: never split). `--buckets` overrides it.
    #[serde(default)]
    pub buckets: Option<RawBuckets>,
    /// SQL steps; each result is a table later steps read by the step's name.
    #[serde(default)]
    pub steps: Vec<RawStep>,
    /// The value stage: each customer's chance of still being active and expected value,
    /// from the purchase history (frequency, recency, T, mean spend). Runs before the
    /// segment stage, whose features may use its columns.
    // `with`: absent or an object, never null, so a mistake inside is reported there.
    #[serde(default)]
    #[schemars(with = "RawValue")]
    pub value: Option<RawValue>,
    /// The clustering stage that turns one row per customer into segments. A pipeline has
    /// a segment stage, a value stage or both.
    #[serde(default)]
    #[schemars(with = "RawSegment")]
    pub segment: Option<RawSegment>,
    /// How much memory and scratch disk a run may use; `--memory-limit` and `--spill-dir`
    /// override these.
    #[serde(default)]
    pub resources: Option<RawResources>,
    /// Where the SQL runs: `local` (in this process, the default), `ballista://HOST:PORT`
    /// (a Ballista scheduler and its executors) or `ballista-standalone` (a Ballista
    /// scheduler and executor inside this process). `--engine` overrides it.
    #[serde(default)]
    pub engine: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    /// The most memory the run's queries and held step results may use, e.g. `2GB` or
    /// `512MiB` (default: half the machine's memory, or of its container's limit). Past
    /// it, sorts, aggregations and step results spill to disk.
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// The folder spill files go to (default: the system's temporary folder); relative to
    /// the pipeline file. It needs room for the largest step results.
    #[serde(default)]
    pub spill_dir: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `file://path` (relative to the pipeline file, or absolute), `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix`, `http(s)://host/prefix`.
    pub url: String,
    /// Options passed to the store's builder (for S3: `region`, `endpoint`, `allow_http`,
    /// `virtual_hosted_style_request`, `timeout`, ...), plus segflow's retry settings
    /// (`max_retries`, `retry_timeout`, `backoff_initial`, `backoff_max`). Credentials
    /// belong in the environment: a credential option must be a `${env:NAME}` reference.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// The table name steps use to read this source.
    pub name: String,
    /// One of the names under `stores`.
    pub store: String,
    /// A file, a folder (every file in it with the format's extension) or a glob, under the store.
    pub path: String,
    /// `csv`, `ndjson` or `parquet`.
    pub format: String,
    /// Options for `format: csv`.
    #[serde(default)]
    pub csv: Option<RawCsvOptions>,
    /// Columns and their types, in file order. Without it the schema is inferred from the data.
    #[serde(default)]
    pub schema: Option<Vec<RawColumn>>,
    /// Only files whose names end with this are read from a folder or glob (default: the
    /// format's usual extension, e.g. `.csv`; a `.gz` ending is read as gzip).
    #[serde(default)]
    pub extension: Option<String>,
    /// `fail` (default): a row that does not parse fails the run, naming file, line and
    /// column. `quarantine`: such rows go to the source's rejects table with the reason.
    #[serde(default)]
    pub on_error: Option<String>,
    /// The column of this source that identifies a customer (an integer or text column,
    /// as the file has it): `segflow plan` shows which steps keep customers apart on it
    /// and could run bucket by bucket. Overrides the pipeline's `partition_key`.
    #[serde(default)]
    pub partition_key: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCsvOptions {
    /// Whether the first line names the columns (default true).
    #[serde(default)]
    pub has_header: Option<bool>,
    /// A single character (default `,`).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// A single character (default `"`).
    #[serde(default)]
    pub quote: Option<String>,
    /// Text read as null (default: the empty field).
    #[serde(default)]
    pub null_value: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    pub name: String,
    /// `string`, `int32`, `int64`, `float64`, `boolean`, `date`, `timestamp`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether the column may hold nulls (default true).
    #[serde(default)]
    pub nullable: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// The table name of the step's result.
    pub name: String,
    /// `clean`, `validate` or `merge`: what the step is for.
    pub kind: String,
    /// Free text for readers of the pipeline.
    #[serde(default)]
    pub description: Option<String>,
    /// Inline DataFusion SQL: one query.
    #[serde(default)]
    pub sql: Option<String>,
    /// A file holding the step's SQL, relative to the pipeline file.
    #[serde(default)]
    pub sql_file: Option<String>,
    /// For `kind: validate`: the table checked; the step's result is this table minus the
    /// rows quarantined by its checks.
    #[serde(default)]
    pub input: Option<String>,
    /// For `kind: validate`: the checks, each compiled to SQL.
    #[serde(default)]
    pub checks: Vec<RawCheck>,
    /// For `kind: validate`: columns identifying a row in samples of failing rows
    /// (default: the input's first column).
    #[serde(default)]
    pub sample_key: Vec<String>,
    /// The columns the step's result promises its readers, checked before any data is read.
    #[serde(default)]
    pub contract: Option<RawContract>,
    /// `true`: the step's result is published with the run as a table of its own (named
    /// after the step), or `{table, partition_by}` to name it and split each run's rows
    /// into folders by the values of some columns.
    #[serde(default)]
    pub publish: Option<RawPublish>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawPublish {
    Flag(bool),
    Table(RawPublishTable),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPublishTable {
    /// The table's name and folder (default: the step's name).
    #[serde(default)]
    pub table: Option<String>,
    /// Columns whose values split each run's partition into folders
    /// (`<table>/run_id=<id>/<column>=<value>/`), as Hive partitions do.
    #[serde(default)]
    pub partition_by: Vec<String>,
}

/// A table's promised columns.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawContract {
    /// Exactly these columns, in any order.
    pub columns: Vec<RawContractColumn>,
    /// Segment output only: `fail` (any change from the previous run's published columns
    /// fails the run) or `allow_new_columns`.
    #[serde(default)]
    pub on_drift: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawContractColumn {
    pub name: String,
    /// In the manifest's names: `int64`, `float64`, `string`, `decimal(12,2)`,
    /// `timestamp(us)` (or `timestamp`, any unit), `date`, `boolean`, ...
    #[serde(rename = "type")]
    pub data_type: String,
    /// `false`: no row may be null (default true).
    #[serde(default)]
    pub nullable: Option<bool>,
}

/// One declarative check. Which keys apply depends on `type`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// not_null, unique, accepted_values, range, pattern, relationships, row_count,
    /// freshness, schema, sql or change.
    #[serde(rename = "type")]
    pub check_type: String,
    /// Names the check in reports and rejects (default: `<type>_<column>`).
    #[serde(default)]
    pub name: Option<String>,
    /// `error` (fail the run), `warn` (report only) or `quarantine` (remove failing rows to
    /// the rejects table). Default `error`.
    #[serde(default)]
    pub severity: Option<String>,
    /// Row-level checks: when the failing rows make the check warn, as a count or a share
    /// of the rows checked, e.g. `"> 0"` or `">= 2.5%"`.
    #[serde(default)]
    pub warn_if: Option<String>,
    /// Row-level checks: when the failing rows fail the run (default `"> 0"` for severity
    /// error; never for quarantine).
    #[serde(default)]
    pub error_if: Option<String>,
    /// For `change`: row_count, null_share, distinct, sum, mean, min or max.
    #[serde(default)]
    pub metric: Option<String>,
    /// For `change`: how much the metric may grow since the previous run, a share of its
    /// previous value (`"50%"`) or an amount (`1000`).
    #[serde(default)]
    pub max_increase: Option<RawLiteral>,
    /// For `change`: how much the metric may fall since the previous run.
    #[serde(default)]
    pub max_decrease: Option<RawLiteral>,
    #[serde(default)]
    pub column: Option<String>,
    /// For `unique`: the columns whose combination must be unique.
    #[serde(default)]
    pub columns: Vec<String>,
    /// For `accepted_values`.
    #[serde(default)]
    pub values: Vec<RawLiteral>,
    /// For `range` (a number, or a date/timestamp as text) and `row_count`.
    #[serde(default)]
    pub min: Option<RawLiteral>,
    #[serde(default)]
    pub max: Option<RawLiteral>,
    /// For `range`: whether `min` / `max` themselves pass (default true).
    #[serde(default)]
    pub min_inclusive: Option<bool>,
    #[serde(default)]
    pub max_inclusive: Option<bool>,
    /// For `pattern`: a regular expression every non-null value must match.
    #[serde(default)]
    pub regex: Option<String>,
    /// For `relationships`: the table and column every non-null value must exist in.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
    /// For `freshness`: how old the newest value may be, e.g. `30d`, `12h`.
    #[serde(default)]
    pub max_age: Option<String>,
    /// For `freshness`: the date to measure from (usually `${as_of}`).
    #[serde(default)]
    pub as_of: Option<String>,
    /// For `schema`: expected columns and their types.
    #[serde(default)]
    pub expect: Vec<RawColumn>,
    /// For `sql`: a query whose rows are the violations.
    #[serde(default)]
    pub sql: Option<String>,
}

/// A YAML scalar used as a SQL literal.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawLiteral {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Text(String),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawWarmStart {
    Previous(String),
    Run(RawWarmStartRun),
    Model(RawWarmStartModel),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWarmStartModel {
    /// A `model.json` written by an earlier run: `{store, path}`.
    pub model: RawLocation,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWarmStartRun {
    pub run: String,
}

#[derive(Debug, JsonSchema)]
#[schemars(untagged)]
pub enum RawBuckets {
    Count(i64),
    Word(String),
}

// By hand, as `RawK`: `buckets: [2]` should say what it takes, not "no variant matched".
impl<'de> Deserialize<'de> for RawBuckets {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawBuckets;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`auto` or a whole number of buckets")
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<RawBuckets, E> {
                Ok(RawBuckets::Count(value))
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<RawBuckets, E> {
                Ok(RawBuckets::Count(value.min(i64::MAX as u64) as i64))
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RawBuckets, E> {
                Ok(RawBuckets::Word(value.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, JsonSchema)]
#[schemars(untagged)]
pub enum RawK {
    Fixed(i64),
    Range(RawKRange),
}

// By hand rather than `untagged`: serde's untagged error ("did not match any variant")
// says nothing a pipeline author can act on, and hides the unknown key of a range.
impl<'de> Deserialize<'de> for RawK {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawK;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number, or {min, max} to choose k from a range")
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<RawK, E> {
                Ok(RawK::Fixed(value))
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<RawK, E> {
                Ok(RawK::Fixed(value.min(i64::MAX as u64) as i64))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawK, A::Error> {
                RawKRange::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawK::Range)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawKRange {
    pub min: i64,
    pub max: i64,
    /// `silhouette` (default), `calinski_harabasz` or `davies_bouldin`.
    #[serde(default)]
    pub select_by: Option<String>,
    /// Customers the silhouette is computed on (a seeded sample; default 5000).
    #[serde(default)]
    pub sample: Option<i64>,
}

/// A feature column, with optional transforms and role.
#[derive(Debug, JsonSchema)]
#[schemars(untagged)]
pub enum RawFeature {
    Name(String),
    Detailed(RawFeatureDetailed),
}

// By hand for the same reason as `RawK`: a misspelt key must be named.
impl<'de> Deserialize<'de> for RawFeature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawFeature;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a column name, or {name, transform, winsorize, role, unit}")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RawFeature, E> {
                Ok(RawFeature::Name(value.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawFeature, A::Error> {
                RawFeatureDetailed::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawFeature::Detailed)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFeatureDetailed {
    pub name: String,
    /// `log1p` (ln(1 + x), for skewed counts and amounts) or `none` (default).
    #[serde(default)]
    pub transform: Option<String>,
    /// `[low, high]` percentiles (0 to 1) the values are clipped to before anything else.
    #[serde(default)]
    pub winsorize: Option<Vec<f64>>,
    /// `recency` (days since the last purchase), `frequency` or `monetary`: used to name
    /// segments and, for `monetary`, the revenue share of the profile.
    #[serde(default)]
    pub role: Option<String>,
    /// What the values are counted in (`days`, `GBP`, `orders`), for the report's axes
    /// and tables.
    #[serde(default)]
    pub unit: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSegment {
    /// The table with one row per customer (a step or a source).
    pub input: String,
    /// The column that identifies a customer; it must be unique and not null.
    pub key: String,
    /// Numeric columns clustered on: a name, or `{name, transform, winsorize, role, unit}`.
    pub features: Vec<RawFeature>,
    /// How every feature is scaled after its transforms: `standard` (default: mean 0,
    /// standard deviation 1), `robust` (median 0, interquartile range 1) or `minmax` (0 to 1).
    #[serde(default)]
    pub scaler: Option<String>,
    /// Names replacing the generated ones, by segment id.
    #[serde(default)]
    pub names: BTreeMap<u32, String>,
    /// What a customer with a null, NaN or infinite feature does: `fail` (default: the run
    /// fails naming the column and count) or `quarantine` (set aside in
    /// `rejects/segment/` with the reason, the rest are segmented).
    #[serde(default)]
    pub on_invalid_features: Option<String>,
    /// Fit on a seeded sample of this many customers (transforms, scaler and centroids),
    /// then assign every customer to its nearest centroid. Default: fit on all.
    #[serde(default)]
    pub fit_sample: Option<i64>,
    /// Start from an earlier run's model so segment ids keep their meaning: `previous` (the
    /// newest other published run in the output folder), `{run: ID}`, or
    /// `{model: {store, path}}` (a `model.json` kept anywhere).
    #[serde(default)]
    pub warm_start: Option<RawWarmStart>,
    /// Assign customers with an earlier run's model as it is, without fitting (for daily
    /// runs between refits): `previous`, `{run: ID}` or `{model: {store, path}}`, as for
    /// `warm_start`.
    #[serde(default)]
    pub model: Option<RawWarmStart>,
    /// Other columns of the input copied into `segments/` as they are (not clustered on).
    #[serde(default)]
    pub carry: Vec<String>,
    /// What to do with a segment, by segment name, shown beside it in the run's report
    /// (`report.html`); replaces or adds to segflow's default suggestions for the names it
    /// gives (Champions, Loyal, Potential loyalists, New, At risk, Hibernating, Lost).
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
    /// The number of segments, or `{min, max, select_by, sample}` to try each k in the
    /// range and keep the best by a metric.
    pub k: RawK,
    /// Seed for every random choice of the stage, so a run can be reproduced.
    #[serde(default)]
    pub seed: Option<u64>,
    /// How many seeded k-means++ starts to fit; the one with the lowest inertia is kept (default 1).
    #[serde(default)]
    pub restarts: Option<i64>,
    /// Upper bound on Lloyd iterations per start (default 300).
    #[serde(default)]
    pub max_iterations: Option<i64>,
    /// Convergence threshold on centroid movement, relative to the scaled data's variance
    /// (default 1e-4, as scikit-learn).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// Checks of the segments themselves, judged before anything is published: a failing
    /// `error` check publishes nothing (exit code 4), a `warn` one is reported.
    #[serde(default)]
    pub checks: Vec<RawSegmentCheck>,
    /// The columns of the published `segments` table, and how they may change between runs.
    #[serde(default)]
    pub contract: Option<RawContract>,
    /// Where the outputs are written.
    pub output: RawOutput,
}

/// A check of the fitted segments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSegmentCheck {
    /// `min_share`: every segment holds at least `value` of the customers; `max_share`: no
    /// segment holds more than `value`.
    #[serde(rename = "type")]
    pub check_type: String,
    /// The share, as a number from 0 to 1 (`0.03`) or a percentage (`"3%"`).
    pub value: RawLiteral,
    /// Names the check in reports (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// `error` (default: the run fails and publishes nothing) or `warn` (reported only).
    #[serde(default)]
    pub severity: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    /// One of the names under `stores`.
    pub store: String,
    /// A folder under the store.
    pub path: String,
}

/// The run's output folder.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    /// One of the names under `stores`.
    pub store: String,
    /// A folder under the store.
    pub path: String,
    /// `parquet` (default): each table a folder of Parquet files partitioned by run; `delta`:
    /// each table also a Delta Lake table (a `_delta_log` committed per run), for readers
    /// of Delta. Needs segflow built with the `delta` feature.
    #[serde(default)]
    pub format: Option<String>,
}

/// The value stage's settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawValue {
    /// The table with one row per customer (a step or a source; default: the segment
    /// stage's input; required without a segment stage).
    #[serde(default)]
    pub input: Option<String>,
    /// The column that identifies a customer (default: the segment stage's key; required
    /// without a segment stage).
    #[serde(default)]
    pub key: Option<String>,
    /// The input's columns holding each customer's history, when not named as here:
    /// `frequency` (repeat purchases), `recency` and `T` (in days) and `monetary_value`
    /// (the repeat purchases' mean value).
    #[serde(default)]
    pub columns: Option<RawValueColumns>,
    /// The models' period: `day`, `week` (default) or `month`. The columns are in days.
    #[serde(default)]
    pub time_unit: Option<String>,
    /// `bg_nbd` (default), `mbg_nbd` or `pareto_nbd`.
    #[serde(default)]
    pub purchase_model: Option<String>,
    /// `gamma_gamma` (default) or `none` (no expected spend, no CLV).
    #[serde(default)]
    pub spend_model: Option<String>,
    /// How far ahead expected purchases and CLV look, in whole months or years:
    /// `12 months` (default), `2 years`.
    #[serde(default)]
    pub horizon: Option<String>,
    /// The CLV's discount rate per month (default 0.01).
    #[serde(default)]
    pub discount_rate: Option<f64>,
    /// Shrinks the models' parameters towards 0 when a fit does not converge (default 0).
    #[serde(default)]
    pub penalizer: Option<f64>,
    /// What a customer whose history the models cannot read does: `fail` (default: the
    /// run fails with the count and a few keys) or `quarantine` (set aside in
    /// `rejects/value/` with the reason).
    #[serde(default)]
    pub on_invalid: Option<String>,
    /// Judge the fitted model on a later period the SQL measured.
    #[serde(default)]
    pub evaluate: Option<RawEvaluate>,
    /// Where the outputs are written when the pipeline has no segment stage (with one,
    /// `segment.output` says).
    #[serde(default)]
    pub output: Option<RawOutput>,
}

/// The input's columns for each quantity of a customer's history.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawValueColumns {
    /// Purchases after the first, on distinct days (default `frequency`).
    #[serde(default)]
    pub frequency: Option<String>,
    /// Days from the first purchase to the last (default `recency`).
    #[serde(default)]
    pub recency: Option<String>,
    /// Days from the first purchase to the end of the period observed (default `T`).
    #[serde(default, rename = "T")]
    pub age: Option<String>,
    /// The mean value of the repeat purchases (default `monetary_value`).
    #[serde(default)]
    pub monetary_value: Option<String>,
}

/// A later period to judge the model on.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEvaluate {
    /// The input's column with each customer's purchases in the later period.
    pub actual_purchases: String,
    /// The later period's length: `26 weeks`, `6 months`, `90 days`.
    pub period: String,
}
