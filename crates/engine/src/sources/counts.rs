//! How many rows each source gave the run, for its report: from the steps' file scans, the
//! quarantining read, or (where scans are not reported here) a query of its own.

use std::collections::HashMap;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use segflow_pipeline::{Pipeline, Source};
use segflow_plan::PlannedStep;

use super::lenient_csv::SourceRejects;
use crate::execution::Scan;
use crate::report::SourceReport;
use crate::{EngineError, Result};

/// The rows of each source the selected steps read, by a query of its own: plans run on a
/// cluster keep their scans' metrics there, and a step's report needs its rows in. Parquet
/// sources are counted from their footers; CSV and NDJSON ones are scanned (on the cluster).
/// Sources already counted (`known`) are skipped.
pub async fn count_sources(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    selected: &[&PlannedStep],
    known: &HashMap<String, u64>,
) -> Result<HashMap<String, u64>> {
    let mut counted = HashMap::new();
    for source in &pipeline.sources {
        let read = selected
            .iter()
            .any(|planned| planned.reads.contains(&source.name));
        if !read || known.contains_key(&source.name) {
            continue;
        }
        let rows = async { ctx.table(source.name.as_str()).await?.count().await }
            .await
            .map_err(|error| EngineError::Source {
                source_name: source.name.clone(),
                url: pipeline.redact(source.location.url.as_str()),
                error: Box::new(error),
            })?;
        counted.insert(source.name.clone(), rows as u64);
    }
    Ok(counted)
}

/// Per source: rows read (from the steps' file scans, the quarantining read, or a count
/// on a cluster), passed on and quarantined.
pub fn source_reports(
    pipeline: &Pipeline,
    rejects: &[SourceRejects],
    scans: &[Scan],
    counted: &HashMap<String, u64>,
) -> Vec<SourceReport> {
    pipeline
        .sources
        .iter()
        .map(|source| {
            let (rows_read, rows_quarantined) =
                match rejects.iter().find(|r| r.source == source.name) {
                    Some(rejects) => (Some(rejects.rows_read), rejects.rows_quarantined()),
                    None => (
                        rows_scanned(source, scans).or_else(|| counted.get(&source.name).copied()),
                        0,
                    ),
                };
            SourceReport {
                name: source.name.clone(),
                url: pipeline.redact(source.location.url.as_str()),
                format: source.format.as_str().to_string(),
                on_error: source.on_error.as_str().to_string(),
                rows_read,
                rows_out: rows_read.map(|rows| rows - rows_quarantined),
                rows_quarantined,
            }
        })
        .collect()
}

/// The largest scan of the source's files by any step: a source read by two steps is
/// read twice, but holds its rows once.
fn rows_scanned(source: &Source, scans: &[Scan]) -> Option<u64> {
    let url = ListingTableUrl::parse(source.location.url.as_str()).ok()?;
    let prefix = url.prefix().as_ref();
    let reads_source = |file: &String| {
        prefix.is_empty() || file == prefix || file.starts_with(&format!("{prefix}/"))
    };
    scans
        .iter()
        .filter(|scan| !scan.files.is_empty() && scan.files.iter().all(reads_source))
        .map(|scan| scan.rows)
        .max()
}
