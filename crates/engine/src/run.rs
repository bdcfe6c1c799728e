//! A whole run, start to publish: check, session, steps, rejects, segment stage, publish.
//!
//! [`run`] reads as the run's outline; each stage lives in its own module. What a run
//! writes goes to its staging folder first and is published only once every step, check
//! and file has succeeded (the protocol is `segflow-publish`'s).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use segflow_pipeline::{Buckets, CheckKind, Engine, Pipeline};
use segflow_plan::{Selector, StepGraph};
use segflow_publish::{
    LATEST_FILE, MANIFEST_FILE, ManifestMetric, OutputFolder, RunColumns, RunInfo, STAGING_DIR,
    SUCCESS_MARKER, Staging,
};

use crate::baseline::Baseline;
use crate::columns::ReadColumns;
use crate::execution::{Execution, InProcess, OnCluster};
use crate::output::{output_folder, remove_empty_local_dirs, warn_about_stale_runs};
use crate::progress::Progress;
use crate::report::{
    BucketsReport, OutputReport, RUN_REPORT_SCHEMA_VERSION, RunOutcome, RunReport, SegmentReport,
    SourceReport, StepReport, ValueReport,
};
use crate::results::StepResults;
use crate::select::{Selection, select_steps};
use crate::session::RunResources;
use crate::sources::inputs::{Hashing, InputFiles};
use crate::sources::{SourceRejects, counts};
use crate::steps::validate::Rejects;
use crate::stop::{self, Leftovers};
use crate::tables::{stage_partitioned, stage_table};
use crate::{
    EngineError, Result, bucketing, check, contract, if_changed, segment, session, sources, steps,
    stores, value,
};

/// Under the output folder: one Parquet table of rejected rows per quarantining source and
/// per validate step with quarantine checks.
pub const REJECTS_DIR: &str = "rejects";

/// Under a run's staging folder: step results, when they are written to the output store
/// (a run on Ballista). Never published.
const STEP_RESULTS_DIR: &str = "_steps";

/// Settings of one run that are not part of the pipeline.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Names the staging area; defaults to the start time and process id.
    pub run_id: Option<String>,
    /// At most this many independent steps run at once (at least 1).
    pub max_concurrent_steps: usize,
    /// Run only the steps these selectors pick, with every step they read (`--select`);
    /// no segment stage, nothing published.
    pub select: Vec<Selector>,
    /// Leave out the steps these selectors pick (`--exclude`); no segment stage, nothing
    /// published.
    pub exclude: Vec<Selector>,
    /// Run the steps up to and including this one in plan order; no segment stage,
    /// nothing published.
    pub until: Option<String>,
    /// Memory limit and spill folder given for this run, over the pipeline's.
    pub resources: segflow_pipeline::Resources,
    /// Add each step's executed plan with operator metrics to the report.
    pub profile: bool,
    pub progress: Progress,
    /// Where the SQL runs, over the pipeline's `engine:` (default: this process).
    pub engine: Option<Engine>,
    /// Where the run records its staging and spill folders as it makes them, for whoever
    /// stops the process to remove.
    pub leftovers: Leftovers,
    /// Run only when something differs from the latest published run (`--if-changed`,
    /// [`if_changed`](crate::if_changed)); else report it as current. Ignored by a partial
    /// run, which publishes nothing to compare with.
    pub if_changed: bool,
    /// How many buckets the steps that keep customers apart run in, over the pipeline's
    /// `buckets:` (`--buckets`).
    pub buckets: Option<Buckets>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            run_id: None,
            max_concurrent_steps: 4,
            select: Vec::new(),
            exclude: Vec::new(),
            until: None,
            resources: segflow_pipeline::Resources::default(),
            profile: false,
            progress: Progress::default(),
            engine: None,
            leftovers: Leftovers::default(),
            if_changed: false,
            buckets: None,
        }
    }
}

impl RunOptions {
    fn selection(&self) -> Selection<'_> {
        match &self.until {
            Some(step) => Selection::Until(step),
            None if self.select.is_empty() && self.exclude.is_empty() => Selection::All,
            None => Selection::Picked {
                select: &self.select,
                exclude: &self.exclude,
            },
        }
    }

    /// Whether only some steps run: no segment stage, nothing published.
    fn is_partial(&self) -> bool {
        self.selection() != Selection::All
    }
}

/// Runs the whole pipeline and publishes its outputs.
pub async fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let run_id = resolve_run_id(pipeline, options.run_id.as_deref(), started_at)?;
    let (graph, read_columns) = check::checked(pipeline).await?;
    let engine = options
        .engine
        .clone()
        .or_else(|| pipeline.engine.clone())
        .unwrap_or(Engine::Local);
    let asked = RunResources::new(&pipeline.resources, &options.resources);
    // Everything the run spills goes to one folder of its own, so that a run stopped by a
    // signal (or killed) leaves one folder to remove, named after its process.
    let spill = stop::spill_folder(asked.spill_dir.as_deref()).map_err(|error| {
        let dir = asked.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
        session::spill_dir_error(&dir, error)
    })?;
    options.leftovers.dir(spill.path());
    let resources = RunResources {
        spill_dir: Some(spill.path().to_path_buf()),
        ..asked.clone()
    };
    let (ctx, job_states) = session::session_on(&engine, &resources, &pipeline.stores).await?;
    let results = session::step_results(&ctx, &resources)?;
    stores::register_stores(&ctx, pipeline)?;
    stores::preflight(&ctx, &pipeline.stores).await?;
    let partial = options.is_partial();
    let folder = output_folder(&ctx, pipeline)?;
    // What the run reads, for its manifest; local files are hashed while the steps run.
    let (hashing, changes) = match (partial, options.if_changed) {
        (true, _) => (None, None),
        (false, false) => (Some(InputFiles::list(&ctx, pipeline).await?.hash()), None),
        (false, true) => match compare_with_latest(&folder, pipeline, &ctx).await? {
            Compared::Changed { changes, hashing } => (Some(hashing), Some(changes)),
            Compared::Unchanged { current } => {
                return Ok(RunReport {
                    schema_version: RUN_REPORT_SCHEMA_VERSION,
                    status: RunOutcome::Unchanged,
                    error: None,
                    segflow_version: env!("CARGO_PKG_VERSION").to_string(),
                    pipeline: pipeline.name.clone(),
                    run_id: Some(run_id),
                    started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    duration_ms: started.elapsed().as_millis() as u64,
                    vars: shown_vars(pipeline),
                    sources: Vec::new(),
                    steps: Vec::new(),
                    segment: None,
                    outputs: Vec::new(),
                    latest_run: Some(current),
                    changes: Some(Vec::new()),
                    value: None,
                    buckets: None,
                });
            }
        },
    };
    // Only `change` checks and a drift rule need the previous run; without them its
    // manifest is not read.
    let drift_rule = pipeline
        .segment
        .as_ref()
        .and_then(|segment| segment.contract.as_ref())
        .and_then(|contract| contract.on_drift);
    let baseline = if has_change_checks(pipeline) || drift_rule.is_some() {
        Baseline::load(&folder, &run_id).await?
    } else {
        Baseline::default()
    };
    // The attempt starts here, before any step: its commit is to follow the run's newest
    // version as of now, so of two runs of one id started together exactly one publishes.
    // Executors elsewhere cannot read this process's memory: on a cluster, step results go
    // to the attempt's staging folder too. A partial run stages only for that, and never
    // publishes.
    let staging = if !partial || engine != Engine::Local {
        let columns = RunColumns::new(&run_id, pipeline.vars.get("as_of").map(String::as_str));
        Some(folder.stage(columns).await?)
    } else {
        None
    };
    options.leftovers.staging(
        staging
            .as_ref()
            .map(|staging| (staging.leftover(), pipeline.output.url.clone())),
    );
    let execution: Box<dyn Execution> = match (&engine, &staging) {
        (Engine::Local, _) => Box::new(InProcess),
        (_, Some(staging)) => {
            let steps_folder = format!("{}{STEP_RESULTS_DIR}", staging.url());
            Box::new(OnCluster::new(&steps_folder, job_states))
        }
        (_, None) => unreachable!("a run on a cluster stages"),
    };
    let running = Running {
        ctx: &ctx,
        pipeline,
        options,
        results: &results,
        execution: execution.as_ref(),
        baseline: &baseline,
        memory_limit: resources.memory_limit,
        engine: &engine,
    };
    let ran = match running.checked_steps(&graph, &read_columns).await {
        Ok(ran) => ran,
        Err(error) => {
            if let Some(staging) = &staging {
                discard(staging, pipeline).await;
            }
            return Err(explain_exhaustion(error, &asked).blaming_variables(pipeline));
        }
    };
    let CheckedSteps {
        sources,
        reports: step_reports,
        rejects,
        source_rejects,
        buckets,
    } = ran;
    // A failing segment check reports the steps as a failing step check does.
    let steps_checked = step_reports.clone();
    let report = |segment: Option<SegmentReport>,
                  value: Option<ValueReport>,
                  outputs: Vec<OutputReport>| RunReport {
        schema_version: RUN_REPORT_SCHEMA_VERSION,
        status: RunOutcome::Success,
        error: None,
        segflow_version: env!("CARGO_PKG_VERSION").to_string(),
        pipeline: pipeline.name.clone(),
        run_id: Some(run_id.clone()),
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        duration_ms: started.elapsed().as_millis() as u64,
        vars: shown_vars(pipeline),
        sources,
        steps: step_reports,
        segment,
        outputs,
        latest_run: None,
        changes: changes.clone(),
        value,
        buckets: buckets.clone(),
    };
    let mut staging = match staging {
        Some(staging) if !partial => staging,
        staging => {
            if let Some(staging) = &staging {
                discard(staging, pipeline).await;
            }
            return Ok(report(None, None, Vec::new()));
        }
    };
    let staged = running
        .stage_outputs(&mut staging, &folder, &run_id, &source_rejects, &rejects)
        .await;
    let (segment, value) = match staged {
        Ok(staged) => staged,
        Err(error) => {
            discard(&staging, pipeline).await;
            return Err(sources::name_the_source(&ctx, pipeline, &[], error).await);
        }
    };
    let failed_segment_checks: Vec<String> = segment
        .iter()
        .flat_map(|segment| &segment.checks)
        .filter(|check| check.status == "fail")
        .map(|check| {
            format!(
                "segment check `{}` ({}): {}",
                check.name,
                check.check_type,
                check.detail.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if !failed_segment_checks.is_empty() {
        discard(&staging, pipeline).await;
        return Err(EngineError::ValidationFailed {
            failures: failed_segment_checks,
            steps: steps_checked,
        });
    }
    if let Err(error) = keeps_contract(pipeline, &staging, &baseline) {
        discard(&staging, pipeline).await;
        return Err(error);
    }
    let inputs = match hashing {
        Some(hashing) => hashing.finish().await,
        None => Ok(Vec::new()),
    };
    let inputs = match inputs {
        Ok(inputs) => inputs,
        Err(error) => {
            discard(&staging, pipeline).await;
            return Err(error);
        }
    };
    let info = RunInfo {
        pipeline: pipeline.name.clone(),
        pipeline_hash: pipeline.content_hash.clone(),
        vars: shown_vars(pipeline),
        started_at,
        metrics: recorded_metrics(&steps_checked),
        inputs,
        segment_model: segment
            .as_ref()
            .and_then(|segment| segment.assigned_with_model_of.clone()),
    };
    let mut account = report(segment, value, Vec::new());
    if let Err(error) =
        crate::account::stage_account_and_report(&mut staging, pipeline, &account, &info).await
    {
        discard(&staging, pipeline).await;
        return Err(error);
    }
    let tables: std::collections::BTreeSet<String> = staging
        .files()
        .iter()
        .filter_map(|file| Some(file.table.as_ref()?.table.clone()))
        .collect();
    let published = staging.publish(&info).await;
    let output = &pipeline.output.url;
    // A failed publish deletes its files; on a local disk their folders stay behind.
    remove_empty_local_dirs(output, STAGING_DIR);
    remove_empty_local_dirs(output, &OutputFolder::run_dir(&run_id));
    for table in &tables {
        remove_empty_local_dirs(output, table);
    }
    options.leftovers.staging(None);
    let published = published?;
    for problem in &published.left_behind {
        tracing::warn!(%problem, "published; `segflow gc` removes what could not be cleaned up");
    }
    warn_about_stale_runs(&folder).await;

    let mut outputs = vec![OutputReport {
        url: published.output_url.clone(),
        kind: "folder".to_string(),
        rows: None,
        bytes: None,
    }];
    outputs.extend(published.files.iter().map(|file| OutputReport {
        url: format!("{}{}", published.output_url, file.name),
        kind: "file".to_string(),
        rows: file.rows(),
        bytes: Some(file.bytes),
    }));
    for marker in [
        format!("{}{MANIFEST_FILE}", published.url),
        format!("{}{SUCCESS_MARKER}", published.run_url),
    ] {
        outputs.push(OutputReport {
            url: marker,
            kind: "file".to_string(),
            rows: None,
            bytes: None,
        });
    }
    account.outputs = outputs;
    account.latest_run = published.latest.clone();
    account.duration_ms = started.elapsed().as_millis() as u64;
    Ok(account)
}

/// A run with `--if-changed` against the latest published run.
enum Compared {
    /// Nothing differs: `current` is the run a loader should keep reading.
    Unchanged { current: String },
    /// The run goes ahead, for these reasons, with its input files being hashed.
    Changed {
        changes: Vec<String>,
        hashing: Hashing,
    },
}

/// Compares the pipeline, the variables and the files it would read with what the latest
/// published run's manifest recorded. Local files are hashed only when all else is equal
/// (the hash then serves the run's manifest too).
async fn compare_with_latest(
    folder: &OutputFolder,
    pipeline: &Pipeline,
    ctx: &SessionContext,
) -> Result<Compared> {
    let inputs = InputFiles::list(ctx, pipeline).await?;
    let manifest = match folder.latest().await? {
        Some(latest) => folder
            .published_manifest(&latest.run_id)
            .await?
            .ok_or(latest.run_id),
        None => {
            return Ok(Compared::Changed {
                changes: vec![format!("no run is published in {} yet", folder.url)],
                hashing: inputs.hash(),
            });
        }
    };
    let manifest = match manifest {
        Ok(manifest) => manifest,
        Err(run_id) => {
            return Ok(Compared::Changed {
                changes: vec![format!(
                    "run `{run_id}`, which {LATEST_FILE} names, has no published manifest"
                )],
                hashing: inputs.hash(),
            });
        }
    };
    let listed = inputs.listed();
    let hashing = inputs.hash();
    let changes = if_changed::changes(
        &manifest,
        &pipeline.content_hash,
        &shown_vars(pipeline),
        &listed,
    );
    if !changes.is_empty() {
        return Ok(Compared::Changed { changes, hashing });
    }
    let hashed = hashing.finish().await?;
    let changes = if_changed::content_changes(&manifest, &hashed);
    if changes.is_empty() {
        Ok(Compared::Unchanged {
            current: manifest.run_id,
        })
    } else {
        Ok(Compared::Changed {
            changes,
            hashing: Hashing::Done(hashed),
        })
    }
}

/// What the stages of one run share.
struct Running<'a> {
    ctx: &'a SessionContext,
    pipeline: &'a Pipeline,
    options: &'a RunOptions,
    results: &'a StepResults,
    execution: &'a dyn Execution,
    baseline: &'a Baseline,
    /// Bytes the run may use, for `buckets: auto`.
    memory_limit: u64,
    engine: &'a Engine,
}

/// What the steps of a run produced, once every check passed.
struct CheckedSteps {
    sources: Vec<SourceReport>,
    reports: Vec<StepReport>,
    rejects: Vec<Rejects>,
    source_rejects: Vec<SourceRejects>,
    buckets: Option<BucketsReport>,
}

impl Running<'_> {
    /// Registers the sources, runs the selected steps and fails the run when a check of
    /// severity `error` found failing rows.
    async fn checked_steps(
        &self,
        graph: &StepGraph,
        read_columns: &ReadColumns,
    ) -> Result<CheckedSteps> {
        let (ctx, pipeline) = (self.ctx, self.pipeline);
        let sources::Registered {
            rejects: source_rejects,
            notes: source_notes,
        } = sources::register_sources(ctx, &pipeline.sources).await?;
        for rejects in &source_rejects {
            self.execution
                .share_local_table(ctx, self.results, &rejects.source)
                .await
                .map_err(|error| EngineError::Source {
                    source_name: rejects.source.clone(),
                    url: pipeline.redact(
                        pipeline
                            .sources
                            .iter()
                            .find(|source| source.name == rejects.source)
                            .map_or("", |source| source.location.url.as_str()),
                    ),
                    error: Box::new(error),
                })?;
        }
        let mut table_rows: HashMap<String, u64> = source_rejects
            .iter()
            .map(|rejects| (rejects.source.clone(), rejects.rows_out))
            .collect();

        let selected = select_steps(graph, self.options.selection())?;
        let counted = if self.execution.reports_scans() {
            Default::default()
        } else {
            counts::count_sources(ctx, pipeline, &selected, &table_rows).await?
        };
        table_rows.extend(counted.iter().map(|(name, rows)| (name.clone(), *rows)));
        let kept = pipeline.read_after_steps();
        let settings = steps::StepsSettings {
            results: self.results,
            execution: self.execution,
            max_concurrent: self.options.max_concurrent_steps,
            keep: Some(&kept),
            read_columns,
            profile: self.options.profile,
            progress: &self.options.progress,
            baseline: self.baseline,
        };
        let ran = match self.bucketing(&selected).await? {
            Some((bucketing, buckets)) => {
                bucketing::run_steps_in_buckets(
                    ctx, &selected, settings, table_rows, &bucketing, buckets,
                )
                .await
            }
            None => steps::run_steps(ctx, &selected, settings, table_rows)
                .await
                .map(|outcome| (outcome, None)),
        };
        let (outcome, buckets) = match ran {
            Ok(ran) => ran,
            Err(error) => {
                return Err(sources::name_the_source(ctx, pipeline, &selected, error).await);
            }
        };
        let sources = counts::source_reports(
            pipeline,
            &source_rejects,
            &source_notes,
            &outcome.scans,
            &counted,
        );
        let mut failures = validation_failures(&outcome.reports);
        if !failures.is_empty() {
            failures.extend(counts::set_aside_summary(&source_rejects));
            return Err(EngineError::ValidationFailed {
                failures,
                steps: outcome.reports,
            });
        }
        Ok(CheckedSteps {
            sources,
            reports: outcome.reports,
            rejects: outcome.rejects,
            source_rejects,
            buckets,
        })
    }

    /// Which steps run bucket by bucket, and in how many buckets: `None` when the steps
    /// run over whole tables (no partition key, one bucket, or a cluster, whose tasks
    /// already split the work).
    async fn bucketing(
        &self,
        selected: &[&segflow_plan::PlannedStep],
    ) -> Result<Option<(bucketing::Bucketing, usize)>> {
        let pipeline = self.pipeline;
        if !pipeline.declares_partition_key() || *self.engine != Engine::Local {
            return Ok(None);
        }
        let asked = self.options.buckets.unwrap_or(pipeline.buckets);
        let buckets = bucketing::bucket_count(self.ctx, pipeline, asked, self.memory_limit).await?;
        if buckets <= 1 || selected.is_empty() {
            return Ok(None);
        }
        let Some(analysed) = check::analyse_bucketing(pipeline).await? else {
            return Ok(None);
        };
        tracing::info!(
            buckets,
            "steps that keep customers apart run bucket by bucket"
        );
        Ok(Some((analysed, buckets)))
    }

    /// Stages the rejects, then runs the value stage (if any) and the segment stage into
    /// `staging`.
    async fn stage_outputs(
        &self,
        staging: &mut Staging,
        folder: &OutputFolder,
        run_id: &str,
        source_rejects: &[SourceRejects],
        rejects: &[Rejects],
    ) -> Result<(Option<SegmentReport>, Option<ValueReport>)> {
        let (ctx, pipeline) = (self.ctx, self.pipeline);
        for rejected in source_rejects {
            let table = format!("{REJECTS_DIR}/{}", rejected.source);
            staging
                .write_parquet(
                    &table,
                    &format!("{table}.parquet"),
                    rejected.schema.clone(),
                    &rejected.batches,
                )
                .await?;
        }
        for (step, published) in pipeline.published_steps() {
            let table = &published.table;
            if published.partition_by.is_empty() {
                let file = format!("{table}/part-00000.parquet");
                stage_table(ctx, staging, &step.name, table, &file).await?;
            } else {
                stage_partitioned(ctx, staging, &step.name, table, &published.partition_by).await?;
            }
        }
        for rejected in rejects {
            let table = format!("{REJECTS_DIR}/{}", rejected.step);
            stage_table(
                ctx,
                staging,
                &rejected.table,
                &table,
                &format!("{table}.parquet"),
            )
            .await?;
            self.results.release(ctx, &rejected.table);
        }
        let previous = match &pipeline.segment {
            Some(segment) => {
                segment::warm_start::load_previous(ctx, folder, segment, run_id).await?
            }
            None => None,
        };
        let progress = &self.options.progress;
        let mut valued = match &pipeline.value {
            Some(settings) => {
                progress.step_started("value");
                let started = Instant::now();
                let mut valued = value::run_value(ctx, settings).await?;
                valued.stage(staging).await?;
                self.execution
                    .share_local_table(ctx, self.results, value::VALUE_TABLE)
                    .await
                    .map_err(|error| EngineError::Value(error.to_string()))?;
                progress.step_done(
                    "value",
                    valued.report.customers,
                    started.elapsed().as_millis() as u64,
                );
                Some(valued)
            }
            None => None,
        };
        let Some(segment) = &pipeline.segment else {
            // Without segments, the customers' values are the table to publish.
            let (Some(mut valued), Some(settings)) = (valued, &pipeline.value) else {
                unreachable!("a pipeline without a segment stage has a value stage");
            };
            value::register_values_view(ctx, settings).await?;
            stage_table(
                ctx,
                staging,
                value::VALUES_VIEW,
                "values",
                "values/part-00000.parquet",
            )
            .await?;
            valued
                .summarize(ctx, staging, value::Grouping::Everyone, settings)
                .await?;
            return Ok((None, Some(valued.report)));
        };
        let segment_settings = match &pipeline.value {
            Some(settings) => value::extend_segment_input(ctx, settings, segment).await?,
            None => segment.clone(),
        };
        progress.step_started("segment");
        let started = Instant::now();
        let segment = segment::run_segment(
            ctx,
            &segment_settings,
            previous.as_ref(),
            staging,
            self.execution.assigns_on_engine(),
        )
        .await?;
        progress.step_done(
            "segment",
            segment.customers,
            started.elapsed().as_millis() as u64,
        );
        if let (Some(valued), Some(settings)) = (&mut valued, &pipeline.value) {
            valued
                .summarize(ctx, staging, value::Grouping::Segments(&segment), settings)
                .await?;
        }
        Ok((Some(segment), valued.map(|valued| valued.report)))
    }
}

/// Removes what a failed (or partial) run staged, keeping the error that stopped it.
async fn discard(staging: &Staging, pipeline: &Pipeline) {
    if let Err(cleanup) = staging.discard().await {
        tracing::warn!(%cleanup, "could not remove staged files of the run");
    }
    remove_empty_local_dirs(&pipeline.output.url, STAGING_DIR);
}

/// The staged `segments` against `segment.contract`: its types, its nulls and, with
/// `on_drift`, its columns against those the previous run published.
fn keeps_contract(pipeline: &Pipeline, staging: &Staging, baseline: &Baseline) -> Result<()> {
    let Some(contract) = pipeline
        .segment
        .as_ref()
        .and_then(|segment| segment.contract.as_ref())
    else {
        return Ok(());
    };
    const TABLE: &str = "segments";
    let mut problems = contract::published_problems(contract, TABLE, staging.files());
    let staged = staging
        .files()
        .iter()
        .filter_map(|file| file.table.as_ref())
        .find(|part| part.table == TABLE);
    if let (Some(rule), Some((previous_run, columns, typed)), Some(staged)) =
        (contract.on_drift, baseline.columns(TABLE), staged)
    {
        let current = segflow_publish::manifest_columns(&staged.schema);
        problems.extend(contract::drift_problems(
            rule,
            TABLE,
            columns,
            &current,
            previous_run,
            typed,
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::ContractBroken {
            table: TABLE.to_string(),
            problems,
        })
    }
}

fn has_change_checks(pipeline: &Pipeline) -> bool {
    pipeline.steps.iter().any(|step| {
        step.validate.as_ref().is_some_and(|validate| {
            validate
                .checks
                .iter()
                .any(|check| matches!(check.kind, CheckKind::Change { .. }))
        })
    })
}

/// The metrics the `change` checks measured, for the manifest (and so the next run).
fn recorded_metrics(steps: &[StepReport]) -> Vec<ManifestMetric> {
    let mut metrics: Vec<ManifestMetric> = steps
        .iter()
        .flat_map(|step| &step.checks)
        .filter_map(|check| check.metric.as_ref())
        .map(|metric| ManifestMetric {
            table: metric.table.clone(),
            metric: metric.metric.clone(),
            value: metric.value,
        })
        .collect();
    // Two checks of one metric of one table (a warn and an error bound) record it once.
    metrics.sort_by(|a, b| (&a.table, &a.metric).cmp(&(&b.table, &b.metric)));
    metrics.dedup_by(|a, b| a.table == b.table && a.metric == b.metric);
    metrics
}

/// Checks of severity `error` that found failing rows, one line each.
pub(crate) fn validation_failures(steps: &[StepReport]) -> Vec<String> {
    steps
        .iter()
        .flat_map(|step| {
            step.checks
                .iter()
                .filter(|check| check.status == "fail")
                .map(move |check| {
                    let what = match (&check.detail, check.samples.is_empty()) {
                        (Some(detail), _) => detail.clone(),
                        (None, true) => format!("{} failing rows", check.failing_rows),
                        (None, false) => format!(
                            "{} failing rows, e.g. {}",
                            check.failing_rows,
                            check.samples.join("; ")
                        ),
                    };
                    format!(
                        "step `{}`, check `{}` ({}): {what}",
                        step.name, check.name, check.check_type
                    )
                })
        })
        .collect()
}

/// A step that failed for lack of memory or spill space gets a message naming the limit
/// and the settings that change it.
fn explain_exhaustion(error: EngineError, resources: &RunResources) -> EngineError {
    let EngineError::Step {
        step, error: cause, ..
    } = &error
    else {
        return error;
    };
    let DataFusionError::ResourcesExhausted(detail) = cause.find_root() else {
        return error;
    };
    let spill_hint = match &resources.spill_dir {
        Some(dir) => format!(", or check that {} has free space", dir.display()),
        None => ", or point --spill-dir at a disk with more free space".to_string(),
    };
    EngineError::OutOfMemory {
        step: step.clone(),
        limit: bytesize::ByteSize(resources.memory_limit)
            .display()
            .si()
            .to_string(),
        limit_from: resources.memory_limit_from.clone(),
        spill_hint,
        detail: detail.trim_end().replace('\n', "\n  "),
    }
}

/// The variables as they may be shown: values read from the environment are `***`.
pub fn shown_vars(pipeline: &Pipeline) -> BTreeMap<String, String> {
    pipeline
        .vars
        .iter()
        .map(|(name, value)| {
            let shown = if pipeline.secret_vars.contains(name) {
                "***".to_string()
            } else {
                value.clone()
            };
            (name.clone(), shown)
        })
        .collect()
}

/// `--run-id`, else the pipeline's `run_id:`, else the start time (to the second, UTC, so
/// ids sort in time order) and the process id. A caller that must name the run before it
/// ends (in a report of its failure) resolves it first and passes it as `--run-id`.
pub fn resolve_run_id(
    pipeline: &Pipeline,
    asked: Option<&str>,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    match asked.or(pipeline.run_id.as_deref()) {
        Some(id) => {
            segflow_pipeline::check_run_id(id).map_err(EngineError::RunId)?;
            Ok(id.to_string())
        }
        None => Ok(format!(
            "{}-{}",
            started_at.format("%Y%m%dT%H%M%SZ"),
            std::process::id()
        )),
    }
}
