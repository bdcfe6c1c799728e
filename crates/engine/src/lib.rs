//! segflow-engine: runs a resolved pipeline with DataFusion, in this process or on a
//! Ballista cluster.
//!
//! Registers the pipeline's object stores and sources, runs the SQL steps in the order the
//! planner gives, hands the segment input to `segflow-cluster`, and stages the outputs with
//! `segflow-publish`, publishing them only when everything succeeded. Every error says which
//! store, source or step it is about and whether the pipeline, the data or the run is to
//! blame ([`ErrorClass`]).
//!
//! Where things are (docs/architecture.md has the whole map):
//!
//! | module | owns |
//! |---|---|
//! | [`run`] | a whole run, start to publish |
//! | `baseline` | the previous run in run order, as its manifest recorded it |
//! | `check` | planning every step against schemas before any data is read |
//! | `bucketing` | which steps keep customers apart on the `partition_key` (plan analysis), and running them bucket by bucket |
//! | `contract` | tables against the columns their contracts promise (a leaf) |
//! | `if_changed` | `--if-changed`: the run against the latest published one (a leaf) |
//! | `columns` | which columns of each result later steps read |
//! | `select` | `--select` / `--exclude` / `--until`: which steps a run runs |
//! | `preview` | `segflow show`: first rows of steps and sources |
//! | `session` | building the DataFusion session (the only place) |
//! | `execution` | in this process or on a cluster: how results are materialised |
//! | `distributed` | connecting to Ballista (feature `ballista`) |
//! | `stores` | object stores from the pipeline's settings |
//! | `sources` | registering sources, quarantining CSV rows, counting source rows, listing their files |
//! | `steps` | running the steps level by level; `steps::validate`, the checks |
//! | `results` | holding step results in memory or spilled files |
//! | `segment` | the segment stage: fit, assign, model file, warm start |
//! | `value` | the value stage: purchase and spend models, per-customer and per-segment value |
//! | `keys` | one row per key, as the stages' inputs need (a leaf) |
//! | `output` | output folders: open, remove dead runs |
//! | `in_memory`, `sample` | step tests: steps on given rows, and a test's first rows |
//! | `sql` | quoting, query options, generated names (a leaf) |
//! | `error`, `report`, `progress` | what a run tells its caller |
//! | `account` | what a run writes about itself: `run.json` and `report.html` (segflow-report), and a published run's report rendered again |

mod account;
mod baseline;
mod bucketing;
mod check;
mod columns;
mod contract;
#[cfg(feature = "ballista")]
mod distributed;
mod error;
mod execution;
mod if_changed;
mod in_memory;
mod keys;
mod output;
mod preview;
mod progress;
mod report;
mod results;
mod run;
mod sample;
mod segment;
mod select;
mod session;
mod sources;
mod sql;
mod steps;
mod stop;
mod stores;
mod tables;
mod value;

pub use account::{latest_run_id, render_published as render_report};
pub use bucketing::{Bucketing, Refusal, Runs, StepBucketing, Whole};
pub use check::{CompiledStep, analyse_bucketing, check, compile, plan};
pub use error::{EngineError, ErrorClass, Result};
pub use in_memory::{InMemoryRun, known_schemas, run_in_memory};
pub use output::{open_output, open_output_url, open_url, remove_runs};
pub use preview::{Preview, PreviewOptions, Previewed, preview};
pub use progress::{JobStates, Progress, ProgressEvent};
pub use report::{BucketedSource, BucketsReport};
pub use report::{
    CheckReport, EvaluationReport, FailedRun, KScoreReport, KSelectionReport, MetricReport,
    OutputReport, RUN_REPORT_SCHEMA_VERSION, RunOutcome, RunReport, SegmentReport, SourceReport,
    StepReport, ValueReport, ValueSegmentReport,
};
pub use run::{REJECTS_DIR, RunOptions, resolve_run_id, run, shown_vars};
pub use sample::sample_inputs;
pub use segflow_publish::{Latest, OutputFolder, RUN_DIR_PREFIX, RunEntry, RunStatus};
pub use session::RunResources;
pub use stop::{Leftovers, dead_spill_folders};
