//! Progress of a run as it happens, for a display the caller draws (the engine never
//! prints).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use datafusion::physical_plan::ExecutionPlan;

/// How often a running step's row counts are read.
const TICK: Duration = Duration::from_millis(200);

/// What the run is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent {
    StepStarted {
        step: String,
    },
    /// Rows a running step has read so far from its sources and earlier results.
    StepRows {
        step: String,
        rows_read: u64,
    },
    StepDone {
        step: String,
        rows_out: u64,
        duration_ms: u64,
    },
}

/// Where progress goes: nowhere by default.
#[derive(Clone, Default)]
pub struct Progress {
    report: Option<Arc<dyn Fn(ProgressEvent) + Send + Sync>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.report.is_some() {
            "Progress(reported)"
        } else {
            "Progress(none)"
        })
    }
}

impl Progress {
    pub fn to(report: impl Fn(ProgressEvent) + Send + Sync + 'static) -> Progress {
        Progress {
            report: Some(Arc::new(report)),
        }
    }

    fn send(&self, event: ProgressEvent) {
        if let Some(report) = &self.report {
            report(event);
        }
    }

    pub fn step_started(&self, step: &str) {
        self.send(ProgressEvent::StepStarted {
            step: step.to_string(),
        });
    }

    pub fn step_done(&self, step: &str, rows_out: u64, duration_ms: u64) {
        self.send(ProgressEvent::StepDone {
            step: step.to_string(),
            rows_out,
            duration_ms,
        });
    }

    pub fn step_rows(&self, step: &str, rows_read: u64) {
        self.send(ProgressEvent::StepRows {
            step: step.to_string(),
            rows_read,
        });
    }

    /// Runs `work` (which executes `plan`), reporting the rows the plan's leaves have
    /// produced every tick.
    pub async fn watch<T>(
        &self,
        step: &str,
        plan: &Arc<dyn ExecutionPlan>,
        work: impl Future<Output = T>,
    ) -> T {
        if self.report.is_none() {
            return work.await;
        }
        let mut work = std::pin::pin!(work);
        let mut ticks = tokio::time::interval(TICK);
        ticks.tick().await;
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = ticks.tick() => self.step_rows(step, rows_read(plan.as_ref())),
            }
        }
    }
}

/// Rows the plan's leaves (file scans, in-memory tables) have produced so far.
fn rows_read(plan: &dyn ExecutionPlan) -> u64 {
    let children = plan.children();
    if children.is_empty() {
        return plan
            .metrics()
            .and_then(|metrics| metrics.output_rows())
            .unwrap_or(0) as u64;
    }
    children
        .into_iter()
        .map(|child| rows_read(child.as_ref()))
        .sum()
}
