//! How many rows each source gave the run, for its report: from the steps' file scans, the
//! quarantining read, or (where scans are not reported here) a query of its own.

use std::collections::{BTreeMap, HashMap};

use arrow::array::AsArray;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use segflow_pipeline::{Pipeline, Source};
use segflow_plan::PlannedStep;

use super::parsed::SourceRejects;
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
            .map_err(|error| EngineError::of_source(pipeline, source, error))?;
        counted.insert(source.name.clone(), rows as u64);
    }
    Ok(counted)
}

/// Per source: rows read (from the steps' file scans, the quarantining read, or a count
/// on a cluster), passed on and quarantined.
pub fn source_reports(
    pipeline: &Pipeline,
    rejects: &[SourceRejects],
    notes: &BTreeMap<String, Vec<String>>,
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
                notes: notes.get(&source.name).cloned().unwrap_or_default(),
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

/// Why sources set rows aside, for a run that failed validation: per source that did, how
/// many of its rows and its commonest reasons (values left out, so that one reason with
/// many bad values counts once), each with an example. A check that fails for want of
/// rows (every row set aside for a column too many) then says where the rows went.
pub fn set_aside_summary(rejects: &[SourceRejects]) -> Vec<String> {
    const SHOWN: usize = 3;
    let mut lines = Vec::new();
    for source in rejects.iter().filter(|r| r.rows_quarantined() > 0) {
        let mut reasons: HashMap<String, (u64, String)> = HashMap::new();
        for batch in &source.batches {
            let Some(column) = batch.column_by_name("reason") else {
                continue;
            };
            for reason in column.as_string::<i32>().iter().flatten() {
                let entry = reasons
                    .entry(without_values(reason))
                    .or_insert_with(|| (0, reason.to_string()));
                entry.0 += 1;
            }
        }
        let mut reasons: Vec<(String, (u64, String))> = reasons.into_iter().collect();
        reasons.sort_by(|(a, (count_a, _)), (b, (count_b, _))| count_b.cmp(count_a).then(a.cmp(b)));
        let shown: Vec<String> = reasons
            .iter()
            .take(SHOWN)
            .map(|(_, (count, example))| format!("{count} × {example}"))
            .collect();
        let more = match reasons.len().saturating_sub(SHOWN) {
            0 => String::new(),
            others => format!(
                "; and {others} other reason{}",
                if others == 1 { "" } else { "s" }
            ),
        };
        lines.push(format!(
            "source `{}` set aside {} of {} rows: {}{more}",
            source.source,
            source.rows_quarantined(),
            source.rows_read,
            shown.join("; ")
        ));
    }
    lines
}

/// `reason` with each backticked value replaced by `…`.
fn without_values(reason: &str) -> String {
    let mut kept = String::with_capacity(reason.len());
    for (index, part) in reason.split('`').enumerate() {
        kept.push_str(if index % 2 == 1 { "…" } else { part });
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};

    use super::*;

    #[test]
    fn set_aside_rows_are_summed_up_by_reason_without_their_values() {
        let reasons = [
            "expected 9 fields, found 8",
            "invoice_date: `2011-13-01` is not a valid timestamp",
            "expected 9 fields, found 8",
            "invoice_date: `yesterday` is not a valid timestamp",
            "expected 9 fields, found 8",
        ];
        let n = reasons.len();
        let batch = RecordBatch::try_new(
            super::super::parsed::rejects_schema(),
            vec![
                Arc::new(StringArray::from(vec!["raw"; n])),
                Arc::new(StringArray::from(vec!["a.csv"; n])),
                Arc::new(Int64Array::from_iter_values(1..=n as i64)),
                Arc::new(StringArray::from(reasons.to_vec())),
                Arc::new(StringArray::from(vec!["x"; n])),
            ],
        )
        .unwrap();
        let rejects = SourceRejects {
            source: "raw".to_string(),
            rows_read: 7,
            rows_out: 2,
            schema: batch.schema(),
            batches: vec![batch],
        };
        assert_eq!(
            set_aside_summary(&[rejects]),
            ["source `raw` set aside 5 of 7 rows: \
              3 × expected 9 fields, found 8; 2 × invoice_date: `2011-13-01` is not a valid timestamp"]
        );
    }
}
