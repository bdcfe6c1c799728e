//! segflow-engine: runs a resolved pipeline with DataFusion, in this process or on a
//! Ballista cluster (see `distributed`).
//!
//! Registers the pipeline's object stores and sources, runs the SQL steps in the order the
//! planner gives, hands the segment input to `segflow-cluster`, and stages the outputs with
//! `segflow-publish`, publishing them only when everything succeeded. Every error says which
//! store, source or step it is about and whether the pipeline, the data or the run is to
//! blame ([`ErrorClass`]).

mod check;
#[cfg(feature = "ballista")]
mod distributed;
mod in_memory;
mod lenient_csv;
mod progress;
mod report;
mod results;
mod segment;
mod session;
mod sources;
mod steps;
mod stores;
mod validate;
mod warm_start;

use std::time::Instant;

use arrow::error::ArrowError;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use object_store::path::Path as StorePath;
use segflow_pipeline::Url;
use segflow_pipeline::{Engine, Format, OnError, Pipeline, Source};
use segflow_plan::{PlanError, PlannedStep, StepGraph};
use segflow_publish::{MANIFEST_FILE, PublishError, RunInfo, STAGING_DIR, SUCCESS_MARKER};

pub use in_memory::{
    CellError, InMemoryRun, inferred_schema, known_schemas, literal_batch, run_in_memory,
};
pub use progress::{JobStates, Progress, ProgressEvent};
pub use report::{
    CheckReport, KScoreReport, KSelectionReport, OutputReport, RunReport, SegmentReport,
    SourceReport, StepReport,
};
pub use segflow_publish::{Latest, OutputFolder, RunEntry, RunStatus};
pub use session::RunResources;

/// Under the output folder: one Parquet table of rejected rows per quarantining source and
/// per validate step with quarantine checks.
pub const REJECTS_DIR: &str = "_rejects";

/// Under a run's staging folder: step results, when they are written to the output store
/// (a run on Ballista). Never published.
const STEP_RESULTS_DIR: &str = "_steps";

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("store `{store}` ({url}): {message}")]
    Store {
        store: String,
        url: String,
        message: String,
    },
    /// A store setting its builder rejects.
    #[error("{at}: {message}")]
    StoreSettings { at: String, message: String },
    /// A store that does not answer, refuses the credentials or lacks the bucket.
    #[error("store `{store}` ({url}): {operation}: {message}")]
    StoreAccess {
        store: String,
        url: String,
        operation: &'static str,
        message: String,
    },
    #[error("source `{source_name}` ({url}): {}", describe(error))]
    Source {
        source_name: String,
        url: String,
        error: Box<DataFusionError>,
    },
    #[error(
        "source `{source_name}` ({url}): no file found (a folder or glob reads files ending in `{extension}`)"
    )]
    NoFiles {
        source_name: String,
        url: String,
        extension: String,
    },
    #[error("{option} {name}: no step is named `{name}`{hint}")]
    UnknownStep {
        option: &'static str,
        name: String,
        hint: String,
    },
    #[error("step `{step}` ({origin}): {}", describe(error))]
    Step {
        step: String,
        origin: String,
        error: Box<DataFusionError>,
    },
    /// SQL or segment settings that do not plan against the schemas.
    #[error(
        "{}: {} problem{}\n  {}",
        file.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(|p| p.replace('\n', "\n    ")).collect::<Vec<_>>().join("\n  ")
    )]
    Check {
        file: std::path::PathBuf,
        problems: Vec<String>,
    },
    /// The segment settings do not fit the input table.
    #[error("segment: {0}")]
    SegmentSpec(String),
    /// A check of severity `error` found failing rows; nothing is published.
    #[error("validation failed:\n  {}", failures.join("\n  "))]
    ValidationFailed {
        failures: Vec<String>,
        /// Every step that ran, with its checks, for the checks table.
        steps: Vec<StepReport>,
    },
    /// A strict (`on_error: fail`) CSV source holds a row that does not parse.
    #[error(
        "source `{source_name}`: {file}{}: {reason} (set `on_error: quarantine` on the source to set such rows aside)",
        line.map(|line| format!(" line {line}")).unwrap_or_default()
    )]
    BadRow {
        source_name: String,
        file: String,
        line: Option<u64>,
        reason: String,
    },
    /// The segment input holds data the stage refuses (null or repeated keys).
    #[error("segment: {0}")]
    SegmentData(String),
    #[error("segment: {0}")]
    Segment(String),
    #[error("{0}")]
    RunId(String),
    /// The engine cannot be reached or set up.
    #[error("engine {engine}: {message}")]
    Engine { engine: String, message: String },
    /// The pipeline asks for what the engine cannot do (a store its executors cannot build).
    #[error("engine {engine}: {message}")]
    EngineSettings { engine: String, message: String },
    /// The memory pool or spill folder cannot be set up.
    #[error("{0}")]
    Resources(String),
    /// A step needed more memory than the run may use, and could not spill enough.
    #[error(
        "step `{step}` ran out of memory: the run may use {limit} (from {limit_from}) and the step could not spill enough to stay within it. Raise the limit with --memory-limit or `resources.memory_limit` in the pipeline{spill_hint}.\n  {detail}"
    )]
    OutOfMemory {
        step: String,
        limit: String,
        limit_from: String,
        spill_hint: String,
        detail: String,
    },
    #[error("publishing outputs")]
    Publish(#[from] PublishError),
}

/// Who has to act: the pipeline's author, the data's owner, or whoever runs the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    PipelineInvalid,
    ValidationFailed,
    Runtime,
}

impl EngineError {
    pub fn class(&self) -> ErrorClass {
        match self {
            EngineError::Plan(_)
            | EngineError::Check { .. }
            | EngineError::UnknownStep { .. }
            | EngineError::Store { .. }
            | EngineError::StoreSettings { .. }
            | EngineError::RunId(_)
            | EngineError::EngineSettings { .. }
            | EngineError::SegmentSpec(_) => ErrorClass::PipelineInvalid,
            EngineError::Step { error, .. } if is_sql_mistake(error) => ErrorClass::PipelineInvalid,
            EngineError::SegmentData(_)
            | EngineError::ValidationFailed { .. }
            | EngineError::BadRow { .. } => ErrorClass::ValidationFailed,
            _ => ErrorClass::Runtime,
        }
    }
}

/// Planning errors (unknown column, wrong types, unknown function) are the SQL's fault;
/// everything else happened while running.
fn is_sql_mistake(error: &DataFusionError) -> bool {
    matches!(
        error.find_root(),
        DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::SQL(..)
            | DataFusionError::NotImplemented(_)
    )
}

pub(crate) fn describe(error: &DataFusionError) -> String {
    if let Some(store_error) = segflow_publish::find_store_error(error) {
        return format!("object store: {}", segflow_publish::explain(store_error));
    }
    let mut message = error.find_root().strip_backtrace();
    // A call with wrong argument types surfaces as an "internal error" wrapping the useful
    // part; keep that part and drop the request to report a DataFusion bug.
    if let Some(start) = message.find("No function matches the given name and argument types") {
        message = message[start..].to_string();
    }
    message
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

/// Settings of one run that are not part of the pipeline.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Names the staging area; defaults to the start time and process id.
    pub run_id: Option<String>,
    /// At most this many independent steps run at once (at least 1).
    pub max_concurrent_steps: usize,
    /// Run only this step and the steps it needs; no segment stage, nothing published.
    pub select: Option<String>,
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
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            run_id: None,
            max_concurrent_steps: 4,
            select: None,
            until: None,
            resources: segflow_pipeline::Resources::default(),
            profile: false,
            progress: Progress::default(),
            engine: None,
        }
    }
}

/// The step graph alone: structure, references and cycles, no schemas.
pub fn plan(pipeline: &Pipeline) -> Result<StepGraph> {
    Ok(segflow_plan::plan(pipeline)?)
}

/// Checks the pipeline without reading data: the step graph first, then every step's SQL
/// planned against the sources' schemas, then the segment settings against its input.
pub async fn check(pipeline: &Pipeline) -> Result<StepGraph> {
    Ok(checked(pipeline).await?.0)
}

/// As [`check`], with the columns of each step's result that later steps read.
async fn checked(pipeline: &Pipeline) -> Result<(StepGraph, check::ReadColumns)> {
    let graph = segflow_plan::plan(pipeline)?;
    let read_columns = check::check_schemas(pipeline, &graph).await?;
    Ok((graph, read_columns))
}

/// Runs the whole pipeline and publishes its outputs.
pub async fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let run_id = run_id(pipeline, options, started_at)?;
    let (graph, read_columns) = checked(pipeline).await?;
    let engine = options
        .engine
        .clone()
        .or_else(|| pipeline.engine.clone())
        .unwrap_or(Engine::Local);
    let resources = RunResources::new(&pipeline.resources, &options.resources);
    let (ctx, job_states) = session::session_on(&engine, &resources, &pipeline.stores).await?;
    let mut results =
        results::StepResults::new(&ctx, resources.spill_dir.as_deref()).map_err(|error| {
            session::spill_dir_error(
                &resources
                    .spill_dir
                    .clone()
                    .unwrap_or_else(std::env::temp_dir),
                error,
            )
        })?;
    stores::register_stores(&ctx, pipeline)?;
    stores::preflight(&ctx, &pipeline.stores).await?;
    let partial = options.select.is_some() || options.until.is_some();
    let folder = output_folder(&ctx, pipeline)?;
    // Executors elsewhere cannot read this process's memory: step results go to the run's
    // staging folder, so it is set up first. A partial run stages under an id of its own,
    // so it never clears the staging folder of a full run with the same id.
    let early_staging = if engine == Engine::Local {
        None
    } else {
        let staging_id = if partial {
            format!("{run_id}.partial-{}", std::process::id())
        } else {
            run_id.clone()
        };
        let staging = folder.stage(&staging_id).await?;
        results.store_in(&format!("{}{STEP_RESULTS_DIR}", staging.url()), job_states);
        Some(staging)
    };
    let ran = run_checked_steps(&ctx, pipeline, (&graph, &read_columns), options, &results).await;
    let ran = match (ran, &early_staging) {
        (Err(error), Some(staging)) => {
            discard(staging, pipeline).await;
            return Err(explain_exhaustion(error, &resources));
        }
        (Err(error), None) => return Err(explain_exhaustion(error, &resources)),
        (Ok(ran), _) => ran,
    };
    let CheckedSteps {
        sources,
        reports: step_reports,
        rejects,
        source_rejects,
    } = ran;
    if partial {
        if let Some(staging) = &early_staging {
            discard(staging, pipeline).await;
        }
        return Ok(report(
            pipeline,
            run_id,
            (started_at, started),
            sources,
            step_reports,
            None,
            Vec::new(),
        ));
    }

    let mut staging = match early_staging {
        Some(staging) => staging,
        None => folder.stage(&run_id).await?,
    };
    let staged = async {
        for rejected in &source_rejects {
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
        for rejected in &rejects {
            let table = format!("{REJECTS_DIR}/{}", rejected.step);
            stage_table(&ctx, &mut staging, &rejected.table, &table).await?;
            results.release(&ctx, &rejected.table);
        }
        let previous = warm_start::load_previous(&ctx, &folder, &pipeline.segment, &run_id).await?;
        options.progress.step_started("segment");
        let started = Instant::now();
        let segment = segment::run_segment(
            &ctx,
            &pipeline.segment,
            previous.as_ref(),
            &mut staging,
            results.stores_results(),
        )
        .await?;
        options.progress.step_done(
            "segment",
            segment.customers,
            started.elapsed().as_millis() as u64,
        );
        Ok(segment)
    };
    let segment = match staged.await {
        Ok(segment) => segment,
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
    };
    let published = staging.publish(&info).await;
    remove_empty_local_dirs(&pipeline.segment.output.url, STAGING_DIR);
    let published = published?;
    warn_about_stale_runs(&folder).await;

    let mut outputs = vec![OutputReport {
        url: published.url.clone(),
        kind: "folder".to_string(),
        rows: None,
        bytes: None,
    }];
    outputs.extend(published.files.iter().map(|file| OutputReport {
        url: format!("{}{}", published.url, file.name),
        kind: "file".to_string(),
        rows: file.rows(),
        bytes: Some(file.bytes),
    }));
    for marker in [MANIFEST_FILE, SUCCESS_MARKER] {
        outputs.push(OutputReport {
            url: format!("{}{marker}", published.url),
            kind: "file".to_string(),
            rows: None,
            bytes: None,
        });
    }
    Ok(report(
        pipeline,
        run_id,
        (started_at, started),
        sources,
        step_reports,
        Some(segment),
        outputs,
    ))
}

/// What the steps of a run produced, once every check passed.
struct CheckedSteps {
    sources: Vec<SourceReport>,
    reports: Vec<StepReport>,
    rejects: Vec<validate::Rejects>,
    source_rejects: Vec<lenient_csv::SourceRejects>,
}

/// Registers the sources, runs the selected steps and fails the run when a check of
/// severity `error` found failing rows.
async fn run_checked_steps(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    (graph, read_columns): (&StepGraph, &check::ReadColumns),
    options: &RunOptions,
    results: &results::StepResults,
) -> Result<CheckedSteps> {
    let source_rejects = sources::register_sources(ctx, &pipeline.sources).await?;
    if results.stores_results() {
        for rejects in &source_rejects {
            results
                .store_local_table(ctx, &rejects.source)
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
    }
    let mut table_rows: std::collections::HashMap<String, u64> = source_rejects
        .iter()
        .map(|rejects| (rejects.source.clone(), rejects.rows_out))
        .collect();

    let selected = select_steps(graph, options)?;
    let counted = if results.stores_results() {
        count_sources(ctx, pipeline, &selected, &table_rows).await?
    } else {
        Default::default()
    };
    table_rows.extend(counted.iter().map(|(name, rows)| (name.clone(), *rows)));
    let settings = steps::StepsSettings {
        results,
        max_concurrent: options.max_concurrent_steps,
        keep: Some(&pipeline.segment.input),
        read_columns,
        profile: options.profile,
        progress: &options.progress,
    };
    let outcome = match steps::run_steps(ctx, &selected, settings, table_rows).await {
        Ok(outcome) => outcome,
        Err(error) => return Err(name_bad_row(ctx, pipeline, &selected, error).await),
    };
    let sources = source_reports(pipeline, &source_rejects, &outcome.scans, &counted);
    let failures = validation_failures(&outcome.reports);
    if !failures.is_empty() {
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
    })
}

/// The rows of each source the selected steps read, by a query of its own: plans run on a
/// cluster keep their scans' metrics there, and a step's report needs its rows in. Parquet
/// sources are counted from their footers; CSV and NDJSON ones are scanned (on the cluster).
/// Sources already counted (`known`) are skipped.
async fn count_sources(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    selected: &[&PlannedStep],
    known: &std::collections::HashMap<String, u64>,
) -> Result<std::collections::HashMap<String, u64>> {
    let mut counted = std::collections::HashMap::new();
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

/// Removes what a failed (or partial) run staged, keeping the error that stopped it.
async fn discard(staging: &segflow_publish::Staging, pipeline: &Pipeline) {
    if let Err(cleanup) = staging.discard().await {
        tracing::warn!(%cleanup, "could not remove staged files of the run");
    }
    remove_empty_local_dirs(&pipeline.segment.output.url, STAGING_DIR);
}

/// The first `rows` rows of each table `step` reads, from a real run of the steps before
/// it (nothing is published), with only the columns the step uses: the start of a test.
pub async fn sample_inputs(
    pipeline: &Pipeline,
    step: &str,
    rows: usize,
) -> Result<Vec<(String, arrow::array::RecordBatch)>> {
    let graph = check(pipeline).await?;
    let resources = RunResources::new(&pipeline.resources, &Default::default());
    let ctx = session::session(&resources)?;
    let results =
        results::StepResults::new(&ctx, resources.spill_dir.as_deref()).map_err(|error| {
            session::spill_dir_error(
                &resources
                    .spill_dir
                    .clone()
                    .unwrap_or_else(std::env::temp_dir),
                error,
            )
        })?;
    stores::register_stores(&ctx, pipeline)?;
    stores::preflight(&ctx, &pipeline.stores).await?;
    let source_rejects = sources::register_sources(&ctx, &pipeline.sources).await?;
    let quarantined_sources = source_rejects
        .iter()
        .map(|rejects| (rejects.source.clone(), rejects.rows_out))
        .collect();
    let options = RunOptions {
        select: Some(step.to_string()),
        ..RunOptions::default()
    };
    let mut selected = select_steps(&graph, &options)?;
    let target = selected.pop().expect("--select keeps its step, last");
    let settings = steps::StepsSettings {
        results: &results,
        max_concurrent: options.max_concurrent_steps,
        keep: None,
        read_columns: &check::ReadColumns::default(),
        profile: false,
        progress: &options.progress,
    };
    steps::run_steps(&ctx, &selected, settings, quarantined_sources).await?;
    let step_error = |error: DataFusionError| EngineError::Step {
        step: target.step.name.clone(),
        origin: target.step.sql_origin(),
        error: Box::new(error),
    };
    let used = match &target.step.validate {
        Some(_) => std::collections::HashMap::new(),
        None => in_memory::used_columns(&ctx, &target.step.sql)
            .await
            .map_err(step_error)?,
    };
    let mut samples = Vec::new();
    for table in &target.reads {
        let mut frame = ctx.table(table.as_str()).await.map_err(step_error)?;
        if let Some(columns) = used.get(table).filter(|columns| !columns.is_empty()) {
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            frame = frame.select_columns(&names).map_err(step_error)?;
        }
        let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
        let batches = frame
            .limit(0, Some(rows))
            .map_err(step_error)?
            .collect()
            .await
            .map_err(step_error)?;
        let batch = arrow::compute::concat_batches(&schema, &batches)
            .map_err(|error| step_error(error.into()))?;
        samples.push((table.clone(), batch));
    }
    Ok(samples)
}

/// Streams the registered table `source` into the staged Parquet table `table`.
async fn stage_table(
    ctx: &SessionContext,
    staging: &mut segflow_publish::Staging,
    source: &str,
    table: &str,
) -> Result<()> {
    let failed = |error: DataFusionError| EngineError::Step {
        step: table.to_string(),
        origin: "staging".to_string(),
        error: Box::new(error),
    };
    let frame = ctx.table(source).await.map_err(failed)?;
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let mut batches = frame.execute_stream().await.map_err(failed)?;
    let mut writer = staging.table_writer(table, &format!("{table}.parquet"), schema)?;
    while let Some(batch) = futures::StreamExt::next(&mut batches).await {
        writer.write(&batch.map_err(failed)?).await?;
    }
    writer.finish(staging).await?;
    Ok(())
}

/// Checks of severity `error` that found failing rows, one line each.
fn validation_failures(steps: &[StepReport]) -> Vec<String> {
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

/// DataFusion's CSV reader reports a bad value by column number and a line counted within
/// its batch, without the file. When a step fails that way, re-read the CSV sources it
/// reads to name the file, line and column of the first row that does not parse.
async fn name_bad_row(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    selected: &[&PlannedStep],
    error: EngineError,
) -> EngineError {
    let EngineError::Step {
        step, error: cause, ..
    } = &error
    else {
        return error;
    };
    let is_parse_error = matches!(
        cause.find_root(),
        DataFusionError::ArrowError(arrow_error, _)
            if matches!(**arrow_error, ArrowError::ParseError(_) | ArrowError::CsvError(_))
    );
    let Some(planned) = selected.iter().find(|p| &p.step.name == step) else {
        return error;
    };
    if !is_parse_error {
        return error;
    }
    for source in &pipeline.sources {
        if source.format != Format::Csv || !planned.reads.contains(&source.name) {
            continue;
        }
        let Ok(table) = ctx.table(source.name.as_str()).await else {
            continue;
        };
        let schema = std::sync::Arc::new(table.schema().as_arrow().clone());
        if let Ok(Some(bad)) = lenient_csv::first_bad_row(ctx, source, schema).await {
            return EngineError::BadRow {
                source_name: source.name.clone(),
                file: bad.file,
                line: bad.line,
                reason: bad.reason,
            };
        }
    }
    error
}

/// Per source: rows read (from the steps' file scans, the quarantining read, or a count
/// on a cluster), passed on and quarantined.
fn source_reports(
    pipeline: &Pipeline,
    rejects: &[lenient_csv::SourceRejects],
    scans: &[steps::Scan],
    counted: &std::collections::HashMap<String, u64>,
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
                format: match source.format {
                    Format::Csv => "csv",
                    Format::Ndjson => "ndjson",
                    Format::Parquet => "parquet",
                }
                .to_string(),
                on_error: match source.on_error {
                    OnError::Fail => "fail",
                    OnError::Quarantine => "quarantine",
                }
                .to_string(),
                rows_read,
                rows_out: rows_read.map(|rows| rows - rows_quarantined),
                rows_quarantined,
            }
        })
        .collect()
}

/// The largest scan of the source's files by any step: a source read by two steps is
/// read twice, but holds its rows once.
fn rows_scanned(source: &Source, scans: &[steps::Scan]) -> Option<u64> {
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

fn report(
    pipeline: &Pipeline,
    run_id: String,
    (started_at, started): (chrono::DateTime<chrono::Utc>, Instant),
    sources: Vec<SourceReport>,
    steps: Vec<StepReport>,
    segment: Option<SegmentReport>,
    outputs: Vec<OutputReport>,
) -> RunReport {
    RunReport {
        pipeline: pipeline.name.clone(),
        run_id,
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        duration_ms: started.elapsed().as_millis() as u64,
        vars: shown_vars(pipeline),
        sources,
        steps,
        segment,
        outputs,
    }
}

/// The variables as they may be shown: values read from the environment are `***`.
fn shown_vars(pipeline: &Pipeline) -> std::collections::BTreeMap<String, String> {
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
/// ids sort in time order) and the process id.
fn run_id(
    pipeline: &Pipeline,
    options: &RunOptions,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    match options.run_id.as_ref().or(pipeline.run_id.as_ref()) {
        Some(id) => {
            segflow_pipeline::check_run_id(id).map_err(EngineError::RunId)?;
            Ok(id.clone())
        }
        None => Ok(format!(
            "{}-{}",
            started_at.format("%Y%m%dT%H%M%SZ"),
            std::process::id()
        )),
    }
}

/// Folders of runs that died (a day or more without a write) are worth a word in the log:
/// they cost storage until `segflow gc` removes them.
async fn warn_about_stale_runs(folder: &OutputFolder) {
    match folder.stale_runs(chrono::Duration::hours(24)).await {
        Ok(stale) if !stale.is_empty() => {
            let paths: Vec<&str> = stale.iter().map(|run| run.path.as_str()).collect();
            tracing::warn!(
                output = %folder.url,
                stale = %paths.join(", "),
                "folders of runs that did not finish; `segflow gc` removes them"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "could not list the output folder's runs"),
    }
}

/// The steps `--select` or `--until` ask for, in plan order; all of them by default.
fn select_steps<'a>(graph: &'a StepGraph, options: &RunOptions) -> Result<Vec<&'a PlannedStep>> {
    let position = |option: &'static str, name: &str| {
        graph
            .steps
            .iter()
            .position(|planned| planned.step.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = graph.steps.iter().map(|p| p.step.name.as_str()).collect();
                EngineError::UnknownStep {
                    option,
                    name: name.to_string(),
                    hint: segflow_pipeline::did_you_mean(name, &names),
                }
            })
    };
    if let Some(name) = &options.select {
        let target = position("--select", name)?;
        // Walk back from the target through what each step reads.
        let mut needed = vec![false; graph.steps.len()];
        needed[target] = true;
        for index in (0..=target).rev() {
            if !needed[index] {
                continue;
            }
            for table in &graph.steps[index].reads {
                if let Some(dep) = graph.steps.iter().position(|p| &p.step.name == table) {
                    needed[dep] = true;
                }
            }
        }
        return Ok(graph
            .steps
            .iter()
            .zip(needed)
            .filter_map(|(planned, needed)| needed.then_some(planned))
            .collect());
    }
    if let Some(name) = &options.until {
        let last = position("--until", name)?;
        return Ok(graph.steps[..=last].iter().collect());
    }
    Ok(graph.steps.iter().collect())
}

/// Deletes the folders of dead runs (see [`OutputFolder::stale_runs`]), returning how many
/// files went.
pub async fn remove_runs(folder: &OutputFolder, runs: &[RunEntry]) -> Result<usize> {
    let deleted = folder.remove_runs(runs).await?;
    if let Ok(url) = Url::parse(&folder.url) {
        for run in runs {
            remove_empty_local_dirs(&url, run.path.trim_end_matches('/'));
        }
        remove_empty_local_dirs(&url, STAGING_DIR);
    }
    Ok(deleted)
}

/// Object stores have no folders, but a local file system keeps the empty directories the
/// staged files were in; remove them so a published folder holds only the outputs.
fn remove_empty_local_dirs(output: &Url, relative: &str) {
    let Ok(root) = output.to_file_path() else {
        return;
    };
    fn remove(dir: &std::path::Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        let mut empty = true;
        for entry in entries.flatten() {
            let path = entry.path();
            empty &= path.is_dir() && remove(&path);
        }
        empty && std::fs::remove_dir(dir).is_ok()
    }
    remove(&root.join(relative));
}

/// The pipeline's output folder (where `segflow runs` and `gc` look), its store built from
/// the pipeline's settings.
pub fn open_output(pipeline: &Pipeline) -> Result<OutputFolder> {
    let location = &pipeline.segment.output;
    let store = pipeline
        .store(&location.store)
        .expect("a resolved pipeline's output names one of its stores");
    folder_on(store, &location.url)
}

/// An output folder given by URL: its store takes credentials and settings from the
/// environment (e.g. `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`).
pub fn open_output_url(url: &Url) -> Result<OutputFolder> {
    let store = segflow_pipeline::Store {
        name: url.scheme().to_string(),
        url: url.clone(),
        options: Default::default(),
    };
    folder_on(&store, url)
}

/// The store and path of a URL (a file or folder), the store's credentials and settings
/// from the environment as for [`open_output_url`].
pub fn open_url(url: &Url) -> Result<(std::sync::Arc<dyn object_store::ObjectStore>, StorePath)> {
    let store = segflow_pipeline::Store {
        name: url.scheme().to_string(),
        url: url.clone(),
        options: Default::default(),
    };
    let invalid = |message: String| EngineError::Store {
        store: store.name.clone(),
        url: url.to_string(),
        message,
    };
    let object_store = stores::build(&store).map_err(invalid)?;
    let path = stores::store_root(url).map_err(invalid)?;
    Ok((object_store, path))
}

fn folder_on(store: &segflow_pipeline::Store, url: &Url) -> Result<OutputFolder> {
    let invalid = |message: String| EngineError::Store {
        store: store.name.clone(),
        url: url.to_string(),
        message,
    };
    let object_store = stores::build(store).map_err(invalid)?;
    let root = stores::store_root(url).map_err(invalid)?;
    Ok(OutputFolder::new(object_store, root, url.as_str()))
}

fn output_folder(ctx: &SessionContext, pipeline: &Pipeline) -> Result<OutputFolder> {
    let location = &pipeline.segment.output;
    let store = ListingTableUrl::parse(location.url.as_str())
        .and_then(|url| ctx.runtime_env().object_store(url.object_store()))
        .map_err(|error| EngineError::Store {
            store: location.store.clone(),
            url: location.url.to_string(),
            message: error.to_string(),
        })?;
    let root =
        StorePath::from_url_path(location.url.path()).map_err(|error| EngineError::Store {
            store: location.store.clone(),
            url: location.url.to_string(),
            message: error.to_string(),
        })?;
    Ok(OutputFolder::new(store, root, location.url.as_str()))
}
