//! What a run compares itself with: the published run before it in run order, as its
//! manifest recorded it. Reading the manifest alone (never the earlier run's data) keeps
//! the comparison cheap however large the runs are.

use std::collections::BTreeMap;

use segflow_publish::{Manifest, ManifestColumn, OutputFolder};

use crate::{EngineError, Result};

#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// The run compared with; `None` when there is none (the first run, or a run that is
    /// not published: a step test, `segflow show`).
    pub run_id: Option<String>,
    /// `(table, metric)` -> value, `None` for a metric the run recorded without a value.
    metrics: BTreeMap<(String, String), Option<f64>>,
    /// The columns of each table it published.
    tables: BTreeMap<String, Vec<ManifestColumn>>,
    /// Whether its manifest names types as this version does (manifest version 2 on).
    stable_types: bool,
}

/// What a check learns of the baseline for one metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Earlier {
    Value {
        run_id: String,
        value: f64,
    },
    /// The previous run has no value of the metric: say why.
    Missing(String),
}

impl Baseline {
    /// The published run before `run_id` in `folder`, or none.
    pub async fn load(folder: &OutputFolder, run_id: &str) -> Result<Baseline> {
        let failed = |error: segflow_publish::PublishError| {
            EngineError::Baseline(format!("reading the previous run: {error}"))
        };
        let Some(previous) = folder.previous_published(run_id).await.map_err(failed)? else {
            return Ok(Baseline::default());
        };
        let manifest = folder
            .published_manifest(&previous.run_id)
            .await
            .map_err(failed)?;
        Ok(match manifest {
            Some(manifest) => Baseline::from_manifest(&manifest),
            None => Baseline {
                run_id: Some(previous.run_id),
                ..Baseline::default()
            },
        })
    }

    pub fn from_manifest(manifest: &Manifest) -> Baseline {
        Baseline {
            run_id: Some(manifest.run_id.clone()),
            metrics: manifest
                .metrics
                .iter()
                .map(|m| ((m.table.clone(), m.metric.clone()), m.value))
                .collect(),
            tables: manifest
                .tables
                .iter()
                .map(|table| (table.name.clone(), table.columns.clone()))
                .collect(),
            stable_types: manifest.schema_version >= 2,
        }
    }

    /// The columns the previous run published in `table`, and whether their types are
    /// in the stable names; `None` with no previous run or no such table.
    pub fn columns(&self, table: &str) -> Option<(&str, &[ManifestColumn], bool)> {
        let run_id = self.run_id.as_deref()?;
        let columns = self.tables.get(table)?;
        Some((run_id, columns, self.stable_types))
    }

    pub fn earlier(&self, table: &str, metric: &str) -> Earlier {
        let Some(run_id) = &self.run_id else {
            return Earlier::Missing("no earlier published run".to_string());
        };
        match self.metrics.get(&(table.to_string(), metric.to_string())) {
            Some(Some(value)) => Earlier::Value {
                run_id: run_id.clone(),
                value: *value,
            },
            Some(None) => Earlier::Missing(format!("run {run_id} had no value of it")),
            None => Earlier::Missing(format!("run {run_id} did not measure it")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segflow_publish::ManifestMetric;

    #[test]
    fn a_metric_is_found_by_table_and_name_or_missing_with_the_reason() {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "run_id": "2011-12-09", "pipeline": "p", "pipeline_hash": "sha256:0",
            "segflow_version": "0", "vars": {}, "started_at": "", "ended_at": "",
            "tables": [], "files": [],
        }))
        .expect("a manifest without metrics still reads");
        let mut manifest = manifest;
        manifest.metrics = vec![
            ManifestMetric {
                table: "orders".into(),
                metric: "row_count".into(),
                value: Some(10.0),
            },
            ManifestMetric {
                table: "orders".into(),
                metric: "sum(amount)".into(),
                value: None,
            },
        ];
        let baseline = Baseline::from_manifest(&manifest);
        assert_eq!(
            baseline.earlier("orders", "row_count"),
            Earlier::Value {
                run_id: "2011-12-09".into(),
                value: 10.0
            }
        );
        assert_eq!(
            baseline.earlier("orders", "sum(amount)"),
            Earlier::Missing("run 2011-12-09 had no value of it".into())
        );
        assert_eq!(
            baseline.earlier("lines", "row_count"),
            Earlier::Missing("run 2011-12-09 did not measure it".into())
        );
        assert_eq!(
            Baseline::default().earlier("orders", "row_count"),
            Earlier::Missing("no earlier published run".into())
        );
    }
}
