//! The steps that keep customers apart, run bucket by bucket.
//!
//! The sources those steps read are split once by the key ([`split`]); then, for each
//! bucket, every such source's name stands for its bucket and the steps run as in any run
//! ([`steps::run_steps`]), each bucket small enough to stay in memory. What later steps
//! and the stages read of those steps (their results, the rejects) is kept bucket by
//! bucket and read as one table afterwards; each step's report is the sum of its buckets',
//! its checks judged on all of them ([`validate::over_buckets`]). Steps the chain reads
//! that read no split table run first, once; the others after it, over whole tables.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::options::ArrowReadOptions;
use datafusion::prelude::SessionContext;
use segflow_plan::PlannedStep;

use super::analysis::{Bucketing, Runs};
use super::split::{self, SplitSource};
use crate::report::{BucketedSource, BucketsReport, StepReport};
use crate::sql::bucket_table;
use crate::steps::validate::{self, Rejects, TableMeasures};
use crate::steps::{self, StepsOutcome, StepsSettings};
use crate::{EngineError, Result};

/// The line of the progress display the buckets report on.
const BUCKETS_LINE: &str = "buckets";

/// Runs `selected` (in plan order) with the steps `bucketing` proved keep customers apart
/// run once per bucket of `buckets`; as [`steps::run_steps`] otherwise.
pub async fn run_steps_in_buckets(
    ctx: &SessionContext,
    selected: &[&PlannedStep],
    settings: StepsSettings<'_>,
    table_rows: HashMap<String, u64>,
    bucketing: &Bucketing,
    buckets: usize,
) -> Result<(StepsOutcome, Option<BucketsReport>)> {
    let in_buckets: Vec<&PlannedStep> = selected
        .iter()
        .copied()
        .filter(|planned| {
            matches!(
                bucketing.step(&planned.step.name),
                Some(Runs::Bucketed { .. })
            )
        })
        .collect();
    let split_sources: Vec<(String, String)> = bucketing
        .sources
        .iter()
        .filter(|(source, _)| {
            in_buckets
                .iter()
                .any(|planned| planned.reads.contains(source))
        })
        .cloned()
        .collect();
    if buckets <= 1 || split_sources.is_empty() {
        let outcome = steps::run_steps(ctx, selected, settings, table_rows).await?;
        return Ok((outcome, None));
    }
    let chain: HashSet<&str> = in_buckets.iter().map(|p| p.step.name.as_str()).collect();
    // What the chain reads of the other steps runs before it (those steps read no split
    // table, or they would be in the chain or read only after all buckets).
    let mut needed: HashSet<&str> = HashSet::new();
    for planned in selected.iter().rev() {
        let name = planned.step.name.as_str();
        if chain.contains(name) || needed.contains(name) {
            needed.extend(planned.reads.iter().map(String::as_str));
        }
    }
    let (before, after): (Vec<&PlannedStep>, Vec<&PlannedStep>) = selected
        .iter()
        .copied()
        .filter(|planned| !chain.contains(planned.step.name.as_str()))
        .partition(|planned| needed.contains(planned.step.name.as_str()));
    let keep = settings.keep.unwrap_or_default();
    // Kept past every bucket: what the steps after the chain or the stages read.
    let exits: Vec<&str> = in_buckets
        .iter()
        .map(|planned| planned.step.name.as_str())
        .filter(|name| {
            keep.contains(name)
                || after
                    .iter()
                    .any(|later| later.reads.iter().any(|t| t == name))
        })
        .collect();

    let mut table_rows = table_rows;
    let mut outcome = StepsOutcome::default();
    if !before.is_empty() {
        let mut kept: Vec<&str> = keep.to_vec();
        kept.extend(before.iter().map(|planned| planned.step.name.as_str()));
        let settings = StepsSettings {
            keep: Some(&kept),
            ..settings
        };
        let ran = steps::run_steps(ctx, &before, settings, table_rows.clone()).await?;
        table_rows.extend(ran.reports.iter().map(|r| (r.name.clone(), r.rows_out)));
        append(&mut outcome, ran);
    }

    let progress = settings.progress;
    let started = Instant::now();
    progress.step_started(BUCKETS_LINE);
    progress.step_state(BUCKETS_LINE, &format!("splitting into {buckets} buckets"));
    let mut splits = Vec::with_capacity(split_sources.len());
    for (source, key) in &split_sources {
        let split = split::split(
            ctx,
            settings.results,
            source,
            key,
            buckets,
            bucketing.spreads_null_keys,
        )
        .await
        .map_err(|error| EngineError::table(source, error))?;
        splits.push(split);
    }
    let split_ms = started.elapsed().as_millis() as u64;
    let mut originals: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
    for split in &splits {
        if let Some(provider) = ctx
            .deregister_table(split.source.as_str())
            .map_err(|error| EngineError::table(&split.source, error))?
        {
            originals.push((split.source.clone(), provider));
        }
    }
    let ran = Buckets {
        ctx,
        settings,
        steps: &in_buckets,
        splits: &splits,
        exits: &exits,
        table_rows: &table_rows,
    }
    .run()
    .await;
    // The sources are themselves again, whatever happened.
    for (source, provider) in originals {
        let _ = ctx.deregister_table(source.as_str());
        ctx.register_table(source.as_str(), provider)
            .map_err(|error| EngineError::table(&source, error))?;
    }
    let ran = ran?;
    let rows: u64 = ran.reports.iter().map(|r| r.rows_out).sum();
    progress.step_done(BUCKETS_LINE, rows, started.elapsed().as_millis() as u64);
    table_rows.extend(ran.reports.iter().map(|r| (r.name.clone(), r.rows_out)));
    append(&mut outcome, ran);
    outcome
        .scans
        .extend(splits.iter().flat_map(|split| split.scans.iter().cloned()));

    if !after.is_empty() {
        let ran = steps::run_steps(ctx, &after, settings, table_rows).await?;
        append(&mut outcome, ran);
    }
    let order = |name: &str| selected.iter().position(|p| p.step.name == name);
    outcome.reports.sort_by_key(|report| order(&report.name));
    let report = BucketsReport {
        count: buckets,
        sources: splits
            .iter()
            .zip(&split_sources)
            .map(|(split, (_, key))| BucketedSource {
                name: split.source.clone(),
                key: key.clone(),
                rows: split.rows(),
            })
            .collect(),
        rows: (0..buckets)
            .map(|bucket| splits.iter().map(|split| split.buckets[bucket].1).sum())
            .collect(),
        steps: in_buckets.iter().map(|p| p.step.name.clone()).collect(),
        null_keys_spread: bucketing.spreads_null_keys,
        split_ms,
    };
    Ok((outcome, Some(report)))
}

fn append(outcome: &mut StepsOutcome, ran: StepsOutcome) {
    outcome.reports.extend(ran.reports);
    outcome.rejects.extend(ran.rejects);
    outcome.scans.extend(ran.scans);
    outcome.measures.extend(ran.measures);
}

/// The chain's run over every bucket.
struct Buckets<'a> {
    ctx: &'a SessionContext,
    settings: StepsSettings<'a>,
    steps: &'a [&'a PlannedStep],
    splits: &'a [SplitSource],
    /// The chain's results kept past every bucket.
    exits: &'a [&'a str],
    /// Row counts of tables the chain reads whole.
    table_rows: &'a HashMap<String, u64>,
}

impl Buckets<'_> {
    async fn run(&self) -> Result<StepsOutcome> {
        let (ctx, results) = (self.ctx, self.settings.results);
        let count = self.splits[0].buckets.len();
        let mut reports: BTreeMap<String, Vec<StepReport>> = BTreeMap::new();
        let mut measures: HashMap<String, Vec<TableMeasures>> = HashMap::new();
        let mut exit_parts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut rejects: BTreeMap<String, (String, Vec<String>, u64)> = BTreeMap::new();
        let mut scans = Vec::new();
        // The rows of each split source and bucketed step in the first bucket.
        let mut first_bucket_rows: HashMap<&str, u64> = self
            .splits
            .iter()
            .map(|split| (split.source.as_str(), split.buckets[0].1))
            .collect();
        for bucket in 0..count {
            let mut table_rows = self.table_rows.clone();
            for split in self.splits {
                let (dir, rows) = &split.buckets[bucket];
                let _ = ctx.deregister_table(split.source.as_str());
                let options = ArrowReadOptions {
                    schema: Some(split.schema.as_ref()),
                    file_extension: ".arrow",
                    ..ArrowReadOptions::default()
                };
                ctx.register_arrow(&split.source, &format!("{}/", dir.display()), options)
                    .await
                    .map_err(|error| EngineError::table(&split.source, error))?;
                // Its files are the run's own, so no step counts them as source rows.
                table_rows.insert(split.source.clone(), *rows);
            }
            let progress = self
                .settings
                .progress
                .per_bucket(BUCKETS_LINE, bucket, count);
            let settings = StepsSettings {
                keep: Some(self.exits),
                progress: &progress,
                ..self.settings
            };
            let ran = steps::run_steps(ctx, self.steps, settings, table_rows).await?;
            if bucket == 0 {
                for report in &ran.reports {
                    if let Some(planned) = self.steps.iter().find(|p| p.step.name == report.name) {
                        first_bucket_rows.insert(planned.step.name.as_str(), report.rows_out);
                    }
                }
            }
            for report in ran.reports {
                reports.entry(report.name.clone()).or_default().push(report);
            }
            for measured in ran.measures {
                measures
                    .entry(measured.step.clone())
                    .or_default()
                    .push(measured);
            }
            // Tables read whole are scanned once per bucket: counted once.
            if bucket == 0 {
                scans = ran.scans;
            }
            for &exit in self.exits {
                let part = self.keep(exit, bucket).await?;
                exit_parts.entry(exit).or_default().push(part);
            }
            for Rejects { step, table, rows } in ran.rejects {
                let part = self.keep(&table, bucket).await?;
                let entry = rejects
                    .entry(step)
                    .or_insert_with(|| (table.clone(), Vec::new(), 0));
                entry.1.push(part);
                entry.2 += rows;
            }
        }
        for (exit, parts) in &exit_parts {
            results
                .register_union(ctx, exit, parts)
                .await
                .map_err(|error| EngineError::table(exit, error))?;
        }
        let mut outcome = StepsOutcome {
            scans,
            ..StepsOutcome::default()
        };
        for (step, (table, parts, rows)) in rejects {
            results
                .register_union(ctx, &table, &parts)
                .await
                .map_err(|error| EngineError::table(&table, error))?;
            outcome.rejects.push(Rejects { step, table, rows });
        }
        for planned in self.steps {
            let name = &planned.step.name;
            let Some(parts) = reports.remove(name) else {
                continue;
            };
            let report = match &planned.step.validate {
                Some(_) => {
                    let measured = measures.remove(name).unwrap_or_default();
                    validate::over_buckets(ctx, planned, parts, &measured, self.settings.baseline)
                        .await?
                }
                None => self.summed(planned, parts, &first_bucket_rows),
            };
            outcome.reports.push(report);
        }
        Ok(outcome)
    }

    /// Keeps `table`, one bucket's, under a name of its own while the next bucket runs.
    async fn keep(&self, table: &str, bucket: usize) -> Result<String> {
        let name = bucket_table(table, bucket);
        self.settings
            .results
            .rename(self.ctx, table, &name)
            .await
            .map_err(|error| EngineError::table(table, error))?;
        Ok(name)
    }

    /// A step's report over every bucket. Each bucket's run counted the rows of the tables
    /// the step reads whole (a lookup source, or a step run before the buckets) in its
    /// rows in: what its first bucket read beyond its bucketed tables' rows, counted once.
    fn summed(
        &self,
        planned: &PlannedStep,
        parts: Vec<StepReport>,
        first_bucket_rows: &HashMap<&str, u64>,
    ) -> StepReport {
        let count = parts.len() as u64;
        let bucketed_rows: u64 = planned
            .reads
            .iter()
            .filter_map(|table| first_bucket_rows.get(table.as_str()))
            .sum();
        let whole_rows = parts[0].rows_in.saturating_sub(bucketed_rows);
        let mut report = StepReport::summed(parts);
        report.rows_in -= whole_rows * (count - 1);
        report
    }
}
