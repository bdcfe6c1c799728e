//! `_MANIFEST.json`: what a published run holds, for loaders and for people auditing a run.

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, Schema};
use serde::{Deserialize, Serialize};

/// Written beside a run's outputs before `_SUCCESS`. A loader can check every file's size
/// and row count against it and create tables from the schemas without opening a file.
/// 4: tables in folders of their own, file paths relative to the output folder; 3:
/// `inputs`; 2: column types in [`type_name`]'s stable names and `metrics`; 1 (manifests
/// without the field): types as Arrow displayed them.
pub const MANIFEST_SCHEMA_VERSION: u32 = 4;

/// The first schema version whose file paths are relative to the output folder (before,
/// to the version's folder, where the tables were).
pub const TABLE_FOLDERS_SINCE: u32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default = "first_version")]
    pub schema_version: u32,
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
    /// Every file the run's sources matched when it started, sorted by source and URL
    /// (manifests before version 3 have none).
    #[serde(default)]
    pub inputs: Vec<ManifestInput>,
    /// With `segment.model`: the run (or model file) whose model assigned the segments,
    /// not refitted (absent when the run fitted its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_model: Option<String>,
}

/// One file a source of the run read, as its store described it, so that a later run can
/// tell whether anything it would read has changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestInput {
    pub source: String,
    /// Secrets in it masked as everywhere.
    pub url: String,
    pub bytes: u64,
    /// RFC 3339, UTC, as the store reports it.
    pub last_modified: String,
    /// The store's entity tag, when it gives one (S3, GCS and Azure do; for a local file
    /// object_store derives one from its inode, size and modification time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// `sha256:<hex>` of the file's bytes, for local files only: a remote file's ETag
    /// already changes with its content, and reading it twice would double the transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
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
    /// `segments`, `profile`, `rejects/<step>`, ... (the table's folder)
    pub name: String,
    pub rows: u64,
    pub columns: Vec<ManifestColumn>,
    /// The columns a partitioned table's rows are split by, in its folders' names
    /// (`<column>=<value>/`) and not in its files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_by: Vec<String>,
}

fn first_version() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestColumn {
    pub name: String,
    /// The type's stable name ([`type_name`]), e.g. `int64`, `timestamp(us, UTC)`.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    /// Nulls in the column over all the table's files, from their Parquet statistics;
    /// absent for a nested column (and in manifests before version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_count: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to the output folder, e.g.
    /// `segments/run_id=<id>/part-00000-<attempt>.parquet` (before schema version 4,
    /// relative to the version's folder: `segments/part-00000.parquet`).
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
    pub inputs: Vec<ManifestInput>,
    /// With `segment.model`: the run (or model file) whose model assigned the segments.
    pub segment_model: Option<String>,
}

/// A schema's columns as a manifest records them (nulls not yet counted: 0).
pub fn columns(schema: &Schema) -> Vec<ManifestColumn> {
    schema
        .fields()
        .iter()
        .map(|field| ManifestColumn {
            name: field.name().clone(),
            data_type: type_name(field.data_type()),
            nullable: field.is_nullable(),
            null_count: Some(0),
        })
        .collect()
}

/// A column type's name in manifests and contracts: stable across Arrow releases (whose
/// display text is not), and logical where the encoding is Arrow's own business (every
/// string type is `string`, a dictionary is its values' type). Documented in the README.
pub fn type_name(data_type: &DataType) -> String {
    use arrow::datatypes::TimeUnit;
    let unit = |unit: &TimeUnit| match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    };
    let simple = match data_type {
        DataType::Null => "null",
        DataType::Boolean => "boolean",
        DataType::Int8 => "int8",
        DataType::Int16 => "int16",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::UInt8 => "uint8",
        DataType::UInt16 => "uint16",
        DataType::UInt32 => "uint32",
        DataType::UInt64 => "uint64",
        DataType::Float16 => "float16",
        DataType::Float32 => "float32",
        DataType::Float64 => "float64",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary",
        DataType::Date32 => "date",
        DataType::Date64 => "date64",
        _ => "",
    };
    if !simple.is_empty() {
        return simple.to_string();
    }
    match data_type {
        DataType::Timestamp(time_unit, None) => format!("timestamp({})", unit(time_unit)),
        DataType::Timestamp(time_unit, Some(zone)) => {
            format!("timestamp({}, {zone})", unit(time_unit))
        }
        DataType::Time32(time_unit) | DataType::Time64(time_unit) => {
            format!("time({})", unit(time_unit))
        }
        DataType::Duration(time_unit) => format!("duration({})", unit(time_unit)),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
            format!("decimal({p},{s})")
        }
        DataType::Decimal256(p, s) => format!("decimal256({p},{s})"),
        DataType::FixedSizeBinary(size) => format!("binary({size})"),
        DataType::List(item)
        | DataType::LargeList(item)
        | DataType::ListView(item)
        | DataType::LargeListView(item)
        | DataType::FixedSizeList(item, _) => format!("list<{}>", type_name(item.data_type())),
        DataType::Struct(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|field| format!("{}: {}", field.name(), type_name(field.data_type())))
                .collect();
            format!("struct<{}>", fields.join(", "))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(pair) if pair.len() == 2 => format!(
                "map<{}, {}>",
                type_name(pair[0].data_type()),
                type_name(pair[1].data_type())
            ),
            other => format!("map<{}>", type_name(other)),
        },
        DataType::Dictionary(_, values) => type_name(values),
        DataType::RunEndEncoded(_, values) => type_name(values.data_type()),
        // Intervals and unions have no common warehouse type; name them plainly.
        other => format!("{other}").to_ascii_lowercase(),
    }
}

pub(crate) fn timestamp(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
