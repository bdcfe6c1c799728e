//! `_MANIFEST.json`: what a published run holds, for loaders and for people auditing a run.

use std::collections::BTreeMap;

use arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};

/// Written beside a run's outputs before `_SUCCESS`. A loader can check every file's size
/// and row count against it and create tables from the schemas without opening a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub pipeline: String,
    /// Hash of the pipeline file and the SQL files it reads, e.g. `sha256:…`.
    pub pipeline_hash: String,
    pub segflow_version: String,
    /// Variable values of the run; values read from the environment are `***`.
    pub vars: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub ended_at: String,
    pub tables: Vec<ManifestTable>,
    pub files: Vec<ManifestFile>,
    /// What the run's `change` checks measured, for the next run to compare with
    /// (manifests written before these checks have none).
    #[serde(default)]
    pub metrics: Vec<ManifestMetric>,
}

/// A metric of a table of the run, e.g. `row_count` or `null_share(customer_id)` of
/// `raw_transactions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestMetric {
    pub table: String,
    pub metric: String,
    /// `null` when the table had no value of it (a sum over no rows).
    pub value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestTable {
    /// `segments`, `profile`, `_rejects/<step>`, ...
    pub name: String,
    pub rows: u64,
    pub columns: Vec<ManifestColumn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestColumn {
    pub name: String,
    /// Arrow's name for the type, e.g. `Int64`, `Timestamp(Microsecond, None)`.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to the run's folder, e.g. `segments/part-00000.parquet`.
    pub path: String,
    /// For a Parquet file, its table and rows; other files (e.g. `model.json`) have neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub bytes: u64,
}

/// What the caller knows about the run that the publisher does not.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub pipeline: String,
    pub pipeline_hash: String,
    pub vars: BTreeMap<String, String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub metrics: Vec<ManifestMetric>,
}

pub(crate) fn columns(schema: &Schema) -> Vec<ManifestColumn> {
    schema
        .fields()
        .iter()
        .map(|field| ManifestColumn {
            name: field.name().clone(),
            data_type: field.data_type().to_string(),
            nullable: field.is_nullable(),
        })
        .collect()
}

pub(crate) fn timestamp(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
