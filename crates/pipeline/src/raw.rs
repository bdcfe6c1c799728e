//! The pipeline file exactly as written: serde structs that mirror the YAML.
//!
//! Nothing here is checked beyond shape (types, required and unknown keys); `resolve` turns
//! these into the types the engine uses. Doc comments are written for pipeline authors.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
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
    /// Named object-store roots. A source or output names one of these and a path under it.
    pub stores: BTreeMap<String, RawStore>,
    /// The extract steps: tables read from a store.
    pub sources: Vec<RawSource>,
    /// SQL steps; each result is a table later steps read by the step's name.
    #[serde(default)]
    pub steps: Vec<RawStep>,
    /// The clustering stage that turns one row per customer into segments.
    pub segment: RawSegment,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `file://path` (relative to the pipeline file, or absolute), `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix`, `http(s)://host/prefix`.
    pub url: String,
    /// Options passed to the store's builder (for S3: `region`, `endpoint`, `allow_http`,
    /// `virtual_hosted_style_request`, ...). Credentials belong in the environment.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
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
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSegment {
    /// The table with one row per customer (a step or a source).
    pub input: String,
    /// The column that identifies a customer; it must be unique and not null.
    pub key: String,
    /// Numeric columns clustered on; each is z-scored before clustering.
    pub features: Vec<String>,
    /// Other columns of the input copied into `segments/` as they are (not clustered on).
    #[serde(default)]
    pub carry: Vec<String>,
    /// The number of segments.
    pub k: i64,
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
    /// Where the outputs are written.
    pub output: RawLocation,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    /// One of the names under `stores`.
    pub store: String,
    /// A folder under the store.
    pub path: String,
}
