//! The engine's one error type, and who is to blame for each ([`ErrorClass`]): the CLI maps
//! the class to an exit code. Every variant names the store, source, step or table it is
//! about, so a message never blames one part of a run for another's fault.

use datafusion::error::DataFusionError;
use segflow_pipeline::{Problem, Problems};
use segflow_plan::PlanError;
use segflow_publish::PublishError;

use crate::report::StepReport;

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
    #[error(transparent)]
    Selector(#[from] segflow_plan::SelectorError),
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
    /// A table the engine registers or reads itself (a schema stand-in while checking, rows
    /// a step test gives) that DataFusion refuses.
    #[error("table `{table}`: {}", describe(error))]
    Table {
        table: String,
        error: Box<DataFusionError>,
    },
    /// SQL or segment settings that do not plan against the schemas.
    #[error("{}", Problems { file, problems })]
    Check {
        file: std::path::PathBuf,
        problems: Vec<Problem>,
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
    /// Rows in do not equal rows passed on plus rows set aside: a fault of segflow's, caught
    /// before anything is published.
    #[error("source `{source_name}`: {file}: {message}")]
    SourceFile {
        source_name: String,
        file: String,
        message: String,
    },
    #[error(
        "{at}: row accounting does not hold: {rows_in} rows in, {rows_out} passed on, {rows_quarantined} quarantined"
    )]
    RowAccounting {
        /// `source `x`` or `step `y``.
        at: String,
        rows_in: u64,
        rows_out: u64,
        rows_quarantined: u64,
    },
    /// The segment input holds data the stage refuses (null or repeated keys).
    #[error("segment: {0}")]
    SegmentData(String),
    /// The segment stage failed while running (reading its input, fitting, writing).
    #[error("segment: {0}")]
    Segment(String),
    /// The value settings do not fit the input table.
    #[error("value: {0}")]
    ValueSpec(String),
    /// The value input holds histories the models cannot read, or that they cannot be
    /// fitted on.
    #[error("value: {0}")]
    ValueData(String),
    /// The value stage failed while running (reading its input, writing).
    #[error("value: {0}")]
    Value(String),
    #[error("{0}")]
    RunId(String),
    /// A table did not keep its contract on the data: nulls where it promised none, or a
    /// published schema that drifted from the previous run's.
    #[error("contract of `{table}` broken: {}", problems.join("; "))]
    ContractBroken {
        table: String,
        problems: Vec<String>,
    },
    /// The previous run, which `change` checks compare with, could not be read.
    #[error("baseline: {0}")]
    Baseline(String),
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
    #[error(
        "step `{step}` ({origin}): variable `{name}` {misfit} (set it with --var {name}=... or in the pipeline's `vars`)"
    )]
    BadVariable {
        step: String,
        origin: String,
        name: String,
        /// What is wrong with its value, e.g. "is `2011-13-45`, which does not fit ...".
        misfit: String,
    },
    #[error("publishing outputs")]
    Publish(#[from] PublishError),
    /// A run's report could not be rendered: a run that is not published, or whose files
    /// are missing or unreadable.
    #[error(transparent)]
    Report(#[from] segflow_report::ReportError),
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
            | EngineError::Selector(_)
            | EngineError::Store { .. }
            | EngineError::StoreSettings { .. }
            | EngineError::RunId(_)
            | EngineError::EngineSettings { .. }
            | EngineError::SegmentSpec(_)
            | EngineError::ValueSpec(_)
            | EngineError::BadVariable { .. } => ErrorClass::PipelineInvalid,
            // `segflow report` named a run that is not there: the command line is wrong.
            EngineError::Report(segflow_report::ReportError::Run(
                segflow_publish::RunFilesError::NotPublished { .. }
                | segflow_publish::RunFilesError::NothingPublished { .. },
            )) => ErrorClass::PipelineInvalid,
            EngineError::Step { error, .. } if is_sql_mistake(error) => ErrorClass::PipelineInvalid,
            EngineError::SegmentData(_)
            | EngineError::ValueData(_)
            | EngineError::ValidationFailed { .. }
            | EngineError::ContractBroken { .. }
            | EngineError::BadRow { .. }
            | EngineError::SourceFile { .. } => ErrorClass::ValidationFailed,
            _ => ErrorClass::Runtime,
        }
    }

    /// Reading `source` of `pipeline` failed; its URL as the pipeline may show it (secrets
    /// masked).
    pub(crate) fn of_source(
        pipeline: &segflow_pipeline::Pipeline,
        source: &segflow_pipeline::Source,
        error: DataFusionError,
    ) -> EngineError {
        EngineError::Source {
            source_name: source.name.clone(),
            url: pipeline.redact(source.location.url.as_str()),
            error: Box::new(error),
        }
    }

    /// A step's SQL failed: `error`, blamed on `step` and where its SQL is written.
    pub(crate) fn step(step: &segflow_pipeline::Step, error: DataFusionError) -> EngineError {
        EngineError::Step {
            step: step.name.clone(),
            origin: step.sql_origin(),
            error: Box::new(error),
        }
    }

    /// A step that failed casting the value of one of the pipeline's variables (a date
    /// that is no date, from `--var as_of=2011-13-45`) is the variable's fault: name it.
    /// Variables read from the environment are never named with their value.
    pub(crate) fn blaming_variables(self, pipeline: &segflow_pipeline::Pipeline) -> EngineError {
        let EngineError::Step {
            step,
            origin,
            error,
        } = &self
        else {
            return self;
        };
        let DataFusionError::ArrowError(arrow_error, _) = error.find_root() else {
            return self;
        };
        let arrow::error::ArrowError::CastError(message) = arrow_error.as_ref() else {
            return self;
        };
        let culprit = pipeline.vars.iter().find(|(name, value)| {
            !value.is_empty()
                && !pipeline.secret_vars.contains(*name)
                && message.contains(&format!("'{value}'"))
        });
        match culprit {
            Some((name, value)) => EngineError::BadVariable {
                step: step.clone(),
                origin: origin.clone(),
                name: name.clone(),
                misfit: format!(
                    "is `{value}`, which does not fit where the SQL uses it: {message}"
                ),
            },
            None => self,
        }
    }

    /// DataFusion refused a table the engine handles itself.
    pub(crate) fn table(table: &str, error: impl Into<DataFusionError>) -> EngineError {
        EngineError::Table {
            table: table.to_string(),
            error: Box::new(error.into()),
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

/// The part of a DataFusion error a user can act on: the root cause, with an object
/// store's fault explained.
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
