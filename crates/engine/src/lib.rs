//! segflow-engine: runs a resolved pipeline with DataFusion.
//!
//! Registers the pipeline's object stores and sources, runs the SQL steps in the order the
//! planner gives, hands the segment input to `segflow-cluster`, and stages the outputs with
//! `segflow-publish`, publishing them only when everything succeeded. Every error says which
//! store, source or step it is about and whether the pipeline, the data or the run is to
//! blame ([`ErrorClass`]).

mod check;
mod report;
mod segment;
mod sources;
mod steps;
mod stores;

use std::time::Instant;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::path::Path as StorePath;
use segflow_pipeline::Url;
use segflow_pipeline::{Format, Pipeline};
use segflow_plan::{PlanError, PlannedStep, StepGraph};
use segflow_publish::{OutputFolder, PublishError, STAGING_DIR, SUCCESS_MARKER};

pub use report::{OutputReport, RunReport, SegmentReport, SourceReport, StepReport};

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
    #[error("source `{source_name}` ({url}): {error}")]
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
    /// The segment input holds data the stage refuses (null or repeated keys).
    #[error("segment: {0}")]
    SegmentData(String),
    #[error("segment: {0}")]
    Segment(String),
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
            | EngineError::SegmentSpec(_) => ErrorClass::PipelineInvalid,
            EngineError::Step { error, .. } if is_sql_mistake(error) => ErrorClass::PipelineInvalid,
            EngineError::SegmentData(_) => ErrorClass::ValidationFailed,
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
    let mut message = error.find_root().strip_backtrace();
    // A call with wrong argument types surfaces as an "internal error" wrapping the useful
    // part; keep that part and drop the request to report a DataFusion bug.
    if let Some(start) = message.find("No function matches the given name and argument types") {
        message = message[start..].to_string();
    }
    match error.find_root() {
        DataFusionError::ResourcesExhausted(_) => {
            format!("{message} (the step needs more memory than the session allows)")
        }
        _ => message,
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
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            run_id: None,
            max_concurrent_steps: 4,
            select: None,
            until: None,
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
    let graph = segflow_plan::plan(pipeline)?;
    check::check_schemas(pipeline, &graph).await?;
    Ok(graph)
}

/// Runs the whole pipeline and publishes its outputs.
pub async fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let run_id = options.run_id.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            started_at.format("%Y%m%dT%H%M%SZ"),
            std::process::id()
        )
    });
    let graph = check(pipeline).await?;
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(false));
    stores::register_stores(&ctx, &pipeline.stores)?;
    sources::register_sources(&ctx, &pipeline.sources).await?;

    let selected = select_steps(&graph, options)?;
    let step_reports =
        steps::run_steps(&ctx, &selected, options.max_concurrent_steps.max(1)).await?;
    if options.select.is_some() || options.until.is_some() {
        return Ok(report(
            pipeline,
            run_id,
            started_at,
            started,
            step_reports,
            None,
            Vec::new(),
        ));
    }

    let folder = output_folder(&ctx, pipeline)?;
    let mut staging = folder.stage(&run_id);
    let segment = match segment::run_segment(&ctx, &pipeline.segment, &mut staging).await {
        Ok(segment) => segment,
        Err(error) => {
            if let Err(cleanup) = staging.discard().await {
                tracing::warn!(%cleanup, "could not remove staged files of the failed run");
            }
            return Err(error);
        }
    };
    let files = staging.publish().await?;
    remove_empty_local_dirs(&pipeline.segment.output.url, STAGING_DIR);

    let mut outputs = vec![OutputReport {
        url: folder.url.clone(),
        kind: "folder".to_string(),
        rows: None,
        bytes: None,
    }];
    outputs.extend(files.iter().map(|file| OutputReport {
        url: format!("{}{}", folder.url, file.name),
        kind: "file".to_string(),
        rows: Some(file.rows),
        bytes: Some(file.bytes),
    }));
    outputs.push(OutputReport {
        url: format!("{}{SUCCESS_MARKER}", folder.url),
        kind: "file".to_string(),
        rows: None,
        bytes: Some(0),
    });
    Ok(report(
        pipeline,
        run_id,
        started_at,
        started,
        step_reports,
        Some(segment),
        outputs,
    ))
}

fn report(
    pipeline: &Pipeline,
    run_id: String,
    started_at: chrono::DateTime<chrono::Utc>,
    started: Instant,
    steps: Vec<StepReport>,
    segment: Option<SegmentReport>,
    outputs: Vec<OutputReport>,
) -> RunReport {
    RunReport {
        pipeline: pipeline.name.clone(),
        run_id,
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        duration_ms: started.elapsed().as_millis() as u64,
        vars: pipeline
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
            .collect(),
        sources: pipeline
            .sources
            .iter()
            .map(|source| SourceReport {
                name: source.name.clone(),
                url: pipeline.redact(source.location.url.as_str()),
                format: match source.format {
                    Format::Csv => "csv",
                    Format::Ndjson => "ndjson",
                    Format::Parquet => "parquet",
                }
                .to_string(),
            })
            .collect(),
        steps,
        segment,
        outputs,
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
    Ok(OutputFolder {
        store,
        root,
        url: location.url.to_string(),
    })
}
