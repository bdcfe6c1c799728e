//! How the steps of one call run, beyond which steps: shared by the steps and the
//! validate steps among them.

use crate::baseline::Baseline;
use crate::columns::ReadColumns;
use crate::execution::Execution;
use crate::progress::Progress;
use crate::results::StepResults;

/// How the steps run, beyond which steps.
#[derive(Clone, Copy)]
pub struct StepsSettings<'a> {
    pub results: &'a StepResults,
    /// Where the plans run (and so how results are materialised).
    pub execution: &'a dyn Execution,
    /// At most this many independent steps run at once (at least 1).
    pub max_concurrent: usize,
    /// Results kept after the last step reading them: the value and segment stages'
    /// inputs, or every result (`None`) when the caller reads them all.
    pub keep: Option<&'a [&'a str]>,
    /// The columns of each result to hold: those later steps read.
    pub read_columns: &'a ReadColumns,
    /// Add each step's executed plan with its metrics to its report.
    pub profile: bool,
    pub progress: &'a Progress,
    /// The previous run, for `change` checks.
    pub baseline: &'a Baseline,
}
