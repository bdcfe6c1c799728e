//! Everything the report shows, read from a run's files alone: its manifest, its account
//! (`run.json`), its segment model and its tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Float64Type, Schema};
use segflow_publish::{Manifest, RunFiles};

use crate::ReportError;
use crate::account::{ModelAccount, RunAccount};

/// The file in a run's version folder holding its account (the run report as of
/// publishing), which the engine writes and the report reads.
pub const RUN_ACCOUNT_FILE: &str = "run.json";
const MODEL_FILE: &str = "model.json";
const SEGMENT_REJECTS: &str = "rejects/segment";

/// A table's columns, read whole.
#[derive(Debug, Clone)]
pub struct Frame {
    pub rows: usize,
    columns: BTreeMap<String, ArrayRef>,
    order: Vec<String>,
}

impl Frame {
    fn new(
        schema: Arc<Schema>,
        batches: &[RecordBatch],
    ) -> Result<Frame, arrow::error::ArrowError> {
        let batch = concat_batches(&schema, batches)?;
        let order: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        Ok(Frame {
            rows: batch.num_rows(),
            columns: order
                .iter()
                .cloned()
                .zip(batch.columns().iter().cloned())
                .collect(),
            order,
        })
    }

    /// The column names, in the table's order.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    pub fn has(&self, name: &str) -> bool {
        self.columns.contains_key(name)
    }

    /// A numeric column as floats (`None` for a null); `None` when there is no such
    /// column or it is not numeric.
    pub fn floats(&self, name: &str) -> Option<Vec<Option<f64>>> {
        let column = self.columns.get(name)?;
        if !(column.data_type().is_numeric() || column.data_type() == &DataType::Boolean) {
            return None;
        }
        let floats = cast(column, &DataType::Float64).ok()?;
        Some(floats.as_primitive::<Float64Type>().iter().collect())
    }

    /// A numeric column with nulls as NaN.
    pub fn values(&self, name: &str) -> Option<Vec<f64>> {
        Some(
            self.floats(name)?
                .into_iter()
                .map(|value| value.unwrap_or(f64::NAN))
                .collect(),
        )
    }

    /// A column as text (`None` for a null).
    pub fn texts(&self, name: &str) -> Option<Vec<Option<String>>> {
        let column = self.columns.get(name)?;
        let texts = cast(column, &DataType::Utf8).ok()?;
        Some(
            texts
                .as_string::<i32>()
                .iter()
                .map(|text| text.map(str::to_string))
                .collect(),
        )
    }

    /// A column as text, nulls as empty.
    pub fn labels(&self, name: &str) -> Option<Vec<String>> {
        Some(
            self.texts(name)?
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect(),
        )
    }
}

/// A run as the report sees it.
#[derive(Debug)]
pub struct RunData {
    /// The version's folder relative to the output folder: the same wherever the output
    /// folder is read from.
    pub version_path: String,
    pub manifest: Manifest,
    /// Absent for runs published before runs kept their account.
    pub account: Option<RunAccount>,
    pub model: Option<ModelAccount>,
    /// The features of the segment stage, in order.
    pub features: Vec<String>,
    pub profile: Option<Frame>,
    pub k_selection: Option<Frame>,
    pub migration: Option<Frame>,
    pub value_by_segment: Option<Frame>,
    pub ltv: Option<Frame>,
    pub value_evaluation: Option<Frame>,
    /// `segment_id` and the features of every segmented customer.
    pub segments: Option<Frame>,
    /// Customers the segment stage set aside, with their features.
    pub segment_rejects: Option<Frame>,
    /// Rows set aside per rejects table and reason, most first.
    pub set_aside: Vec<SetAside>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetAside {
    pub table: String,
    pub reason: String,
    pub rows: u64,
}

/// The most reasons listed per rejects table; the rest are summed in one line.
const REASONS_SHOWN: usize = 8;

impl RunData {
    pub async fn load(run: &RunFiles) -> Result<RunData, ReportError> {
        let manifest = run.manifest().clone();
        let account = match run.file(RUN_ACCOUNT_FILE).await? {
            Some(bytes) => Some(parse(&bytes, &run.url(), RUN_ACCOUNT_FILE)?),
            None => None,
        };
        let model: Option<ModelAccount> = match run.file(MODEL_FILE).await? {
            Some(bytes) => Some(parse(&bytes, &run.url(), MODEL_FILE)?),
            None => None,
        };
        let features: Vec<String> = match (&account, &model) {
            (
                Some(RunAccount {
                    segment: Some(segment),
                    ..
                }),
                _,
            ) => segment.features.clone(),
            (_, Some(model)) => model.features.iter().map(|f| f.name.clone()).collect(),
            _ => Vec::new(),
        };
        let all = ["*"];
        let mut segment_columns: Vec<&str> = vec!["segment_id"];
        segment_columns.extend(features.iter().map(String::as_str));
        // The segment stage's rejects are read once: their features and their reasons.
        let mut segment_reject_columns = segment_columns.clone();
        segment_reject_columns.push("reason");
        let segment_rejects = frame(run, SEGMENT_REJECTS, &segment_reject_columns).await?;
        let mut set_aside = Vec::new();
        for table in &manifest.tables {
            let rejects = match table.name.as_str() {
                SEGMENT_REJECTS => segment_rejects.clone(),
                name if name.starts_with("rejects/") => {
                    frame(run, name, &["checks", "reason"]).await?
                }
                _ => None,
            };
            if let Some(rejects) = rejects {
                set_aside.extend(reasons(&rejects, &table.name));
            }
        }
        Ok(RunData {
            version_path: run.version_path().to_string(),
            profile: frame(run, "profile", &all).await?,
            k_selection: frame(run, "k_selection", &all).await?,
            migration: frame(run, "migration", &all).await?,
            value_by_segment: frame(run, "value_by_segment", &all).await?,
            ltv: frame(run, "ltv", &all).await?,
            value_evaluation: frame(run, "value_evaluation", &all).await?,
            segments: frame(run, "segments", &segment_columns).await?,
            segment_rejects,
            set_aside,
            manifest,
            account,
            model,
            features,
        })
    }

    /// A feature's name with its unit, if the pipeline gave one: `total_spend (GBP)`.
    pub fn labelled(&self, feature: &str) -> String {
        let unit = self
            .account
            .as_ref()
            .and_then(|a| a.segment.as_ref()?.units.get(feature));
        match unit {
            Some(unit) => format!("{feature} ({unit})"),
            None => feature.to_string(),
        }
    }

    /// The unit of the feature with the `monetary` role: the currency of spend, revenue
    /// and value.
    pub fn currency(&self) -> Option<&str> {
        let monetary = self
            .model
            .as_ref()?
            .features
            .iter()
            .find(|f| f.role.as_deref() == Some("monetary"))?;
        let segment = self.account.as_ref()?.segment.as_ref()?;
        segment.units.get(&monetary.name).map(String::as_str)
    }

    /// The value of the pipeline variable `as_of`, if the run had one.
    pub fn as_of(&self) -> Option<&str> {
        self.manifest.vars.get("as_of").map(String::as_str)
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    url: &str,
    name: &str,
) -> Result<T, ReportError> {
    serde_json::from_slice(bytes).map_err(|error| ReportError::Unreadable {
        url: format!("{url}{name}"),
        message: error.to_string(),
    })
}

/// The table `name` (its `columns`, or every column for `["*"]`), if the run has it.
async fn frame(run: &RunFiles, name: &str, columns: &[&str]) -> Result<Option<Frame>, ReportError> {
    let Some(table) = run
        .manifest()
        .tables
        .iter()
        .find(|table| table.name == name)
    else {
        return Ok(None);
    };
    let wanted: Vec<&str> = if columns == ["*"] {
        table
            .columns
            .iter()
            .map(|column| column.name.as_str())
            .collect()
    } else {
        columns.to_vec()
    };
    let Some(batches) = run.table(name, &wanted).await? else {
        return Ok(None);
    };
    let schema = match batches.first() {
        Some(batch) => batch.schema(),
        // A table without rows still has its columns, as the manifest lists them.
        None => Arc::new(Schema::empty()),
    };
    Frame::new(schema, &batches)
        .map(Some)
        .map_err(|error| ReportError::Unreadable {
            url: format!("{}{name}", run.url()),
            message: error.to_string(),
        })
}

/// How many rows of the rejects table `name` were set aside for each reason: a validate
/// step's by the checks they failed, the others by their `reason`.
fn reasons(frame: &Frame, name: &str) -> Vec<SetAside> {
    let column = if frame.has("checks") {
        "checks"
    } else {
        "reason"
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for reason in frame.labels(column).unwrap_or_default() {
        *counts.entry(reason).or_default() += 1;
    }
    if counts.is_empty() && frame.rows > 0 {
        counts.insert("(no reason recorded)".to_string(), frame.rows as u64);
    }
    let mut counted: Vec<(String, u64)> = counts.into_iter().collect();
    counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut shown: Vec<SetAside> = counted
        .iter()
        .take(REASONS_SHOWN)
        .map(|(reason, rows)| SetAside {
            table: name.to_string(),
            reason: reason.clone(),
            rows: *rows,
        })
        .collect();
    let rest: u64 = counted
        .iter()
        .skip(REASONS_SHOWN)
        .map(|(_, rows)| rows)
        .sum();
    if rest > 0 {
        shown.push(SetAside {
            table: name.to_string(),
            reason: format!("{} other reasons", counted.len() - REASONS_SHOWN),
            rows: rest,
        });
    }
    shown
}

/// The sum of a column of a frame, nulls left out.
pub fn total(frame: &Frame, column: &str) -> f64 {
    frame
        .floats(column)
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .sum()
}
