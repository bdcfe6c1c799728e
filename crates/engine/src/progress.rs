//! Progress of a run as it happens, for a display the caller draws (the engine never
//! prints).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use datafusion::physical_plan::ExecutionPlan;

/// How often a running step's row counts are read.
const TICK: Duration = Duration::from_millis(200);

/// How often a job's state is asked of its scheduler: as often as Ballista's own client
/// asks, so short jobs are seen too.
const JOB_TICK: Duration = Duration::from_millis(50);

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
    /// Where a step running elsewhere is, as its engine tells (e.g. queued or running on a
    /// cluster).
    StepState {
        step: String,
        state: String,
    },
}

/// Asks where a plan submitted elsewhere stands (a cluster's scheduler knows its job).
pub trait JobStates: Send + Sync + std::fmt::Debug {
    /// `None` while there is nothing to tell, or for a plan that is not such a job.
    fn state<'a>(
        &'a self,
        plan: &'a Arc<dyn ExecutionPlan>,
    ) -> futures::future::BoxFuture<'a, Option<String>>;
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

    /// Where steps run once per bucket report: not a line per step and bucket, but the one
    /// line `line`, telling which bucket and step are running.
    pub fn per_bucket(&self, line: &str, bucket: usize, buckets: usize) -> Progress {
        let Some(report) = self.report.clone() else {
            return Progress::default();
        };
        let line = line.to_string();
        let at = format!("bucket {}/{buckets}", bucket + 1);
        Progress::to(move |event| {
            let state = match event {
                ProgressEvent::StepStarted { step } => format!("{at}: {step}"),
                ProgressEvent::StepRows { step, rows_read } => {
                    format!("{at}: {step}, {rows_read} rows read")
                }
                ProgressEvent::StepState { step, state } => format!("{at}: {step} {state}"),
                ProgressEvent::StepDone { .. } => return,
            };
            report(ProgressEvent::StepState {
                step: line.clone(),
                state,
            });
        })
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

    pub fn step_state(&self, step: &str, state: &str) {
        self.send(ProgressEvent::StepState {
            step: step.to_string(),
            state: state.to_string(),
        });
    }

    /// Runs `work` (which executes `plan`, a job submitted elsewhere), reporting the job's
    /// state from `states` every tick it changes.
    pub async fn watch_job<T>(
        &self,
        step: &str,
        plan: &Arc<dyn ExecutionPlan>,
        states: Option<&dyn JobStates>,
        work: impl Future<Output = T>,
    ) -> T {
        let Some(states) = states.filter(|_| self.report.is_some()) else {
            return work.await;
        };
        // Asked beside the work, not between its polls, so a slow answer never stalls it.
        let watching = async {
            let mut ticks = tokio::time::interval(JOB_TICK);
            let mut told: Option<String> = None;
            loop {
                ticks.tick().await;
                let state = states.state(plan).await;
                if let Some(state) = state.filter(|state| told.as_ref() != Some(state)) {
                    self.step_state(step, &state);
                    told = Some(state);
                }
            }
        };
        tokio::select! {
            done = work => done,
            _ = watching => unreachable!("watching a job never ends on its own"),
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use datafusion::physical_plan::empty::EmptyExec;

    use super::*;

    /// Says nothing at first, then "queued" twice, then "running" for good.
    #[derive(Debug, Default)]
    struct Scripted {
        asked: AtomicUsize,
    }

    impl JobStates for Scripted {
        fn state<'a>(
            &'a self,
            _: &'a Arc<dyn ExecutionPlan>,
        ) -> futures::future::BoxFuture<'a, Option<String>> {
            let asked = self.asked.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match asked {
                    0 => None,
                    1 | 2 => Some("queued".to_string()),
                    _ => Some("running".to_string()),
                }
            })
        }
    }

    #[tokio::test]
    async fn a_job_state_is_reported_when_it_changes_while_the_work_runs() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let collected = events.clone();
        let progress = Progress::to(move |event| collected.lock().unwrap().push(event));
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(EmptyExec::new(Arc::new(arrow::datatypes::Schema::empty())));
        let states = Scripted::default();
        let done = progress
            .watch_job("s", &plan, Some(&states), async {
                tokio::time::sleep(JOB_TICK * 8).await;
                42
            })
            .await;
        assert_eq!(done, 42);
        let told: Vec<String> = events
            .lock()
            .unwrap()
            .iter()
            .map(|event| match event {
                ProgressEvent::StepState { step, state } => format!("{step}: {state}"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(told, ["s: queued", "s: running"]);
        assert!(states.asked.load(Ordering::SeqCst) >= 4, "asked every tick");

        // Nothing is asked when no one listens.
        let quiet = Scripted::default();
        Progress::default()
            .watch_job("s", &plan, Some(&quiet), async {})
            .await;
        assert_eq!(quiet.asked.load(Ordering::SeqCst), 0);
    }
}
