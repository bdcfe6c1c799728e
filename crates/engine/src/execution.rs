//! Where a run's plans execute, and so where its step results live: in this process
//! ([`InProcess`]), or on a cluster whose executors cannot read this process's memory
//! ([`OnCluster`]: Ballista). Everything that differs between the two is a method of
//! [`Execution`], chosen once per run; the rest of the engine asks it and never tests
//! which one it has.
//!
//! - In this process, a result is run here and held (in memory, or spilled) by
//!   [`StepResults`]; rows can be set aside on the way, and the plan's scans report the
//!   rows read from each source.
//! - On a cluster, the executors write each result as Parquet under a folder of the run's
//!   staging area and it is registered as a table over those files; nothing passes
//!   through here, scan metrics stay on the cluster (sources are counted by a query of
//!   their own), and a table held here must be written there before a plan reads it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, UInt64Type};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::file_format::format_as_file_type;
use datafusion::datasource::file_format::parquet::ParquetFormatFactory;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use futures::future::BoxFuture;

use crate::progress::{JobStates, Progress};
use crate::results::{Materialised, StepResults};
use crate::sql::quote;

/// How a run's plans execute; see the module's text.
pub trait Execution: Send + Sync + std::fmt::Debug {
    /// Runs `query` and registers its output as the step result `query.name`.
    fn materialise<'a>(
        &'a self,
        ctx: &'a SessionContext,
        results: &'a StepResults,
        query: Query<'a>,
    ) -> BoxFuture<'a, DFResult<Ran>>;

    /// Makes the table `name`, batches held in this process, readable by the plans.
    fn share_local_table<'a>(
        &'a self,
        ctx: &'a SessionContext,
        results: &'a StepResults,
        name: &'a str,
    ) -> BoxFuture<'a, DFResult<()>>;

    /// Whether rows can be set aside while a result is materialised ([`Query::aside`]).
    /// Where not, they are found in the result afterwards, which then keeps every column.
    fn sets_aside(&self) -> bool;

    /// Whether the plans' scans report, here, the rows read from each source; where not,
    /// each source a step reads is counted by a query of its own.
    fn reports_scans(&self) -> bool;

    /// Whether the segment stage assigns the customers past its fit sample by a query the
    /// engine runs (the executors write `segments/`), rather than in this process.
    fn assigns_on_engine(&self) -> bool;
}

/// A query to materialise as a step result.
pub struct Query<'a> {
    /// The table the result is registered as.
    pub name: &'a str,
    pub frame: DataFrame,
    /// Boolean columns whose true values are counted on the way, so a large result need
    /// not be read again to count them.
    pub tally: &'a [&'a str],
    /// `(column, table)`: the rows whose boolean `column` is true are also registered as
    /// `table`, with every column (where [`Execution::sets_aside`]).
    pub aside: Option<(&'a str, &'a str)>,
    /// Only these columns of the output are held (in this process); all without.
    pub held: Option<&'a [&'a str]>,
    /// The step whose progress this is, and where the progress goes.
    pub step: &'a str,
    pub progress: &'a Progress,
    /// Keep the executed plan with its metrics.
    pub profile: bool,
}

/// What materialising a query did.
pub struct Ran {
    pub materialised: Materialised,
    /// The plan's scans of source files (none where they are not reported here).
    pub scans: Vec<Scan>,
    /// The executed plan with its metrics, when asked for.
    pub profile: Option<String>,
    /// Whether [`Query::aside`]'s rows were registered.
    pub set_aside: bool,
}

/// Plans run here; results are held by [`StepResults`].
#[derive(Debug, Default)]
pub struct InProcess;

impl Execution for InProcess {
    fn materialise<'a>(
        &'a self,
        ctx: &'a SessionContext,
        results: &'a StepResults,
        query: Query<'a>,
    ) -> BoxFuture<'a, DFResult<Ran>> {
        Box::pin(async move {
            let plan = query.frame.create_physical_plan().await?;
            let materialised = query
                .progress
                .watch(
                    query.step,
                    &plan,
                    results.materialise_setting_aside(
                        ctx,
                        query.name,
                        plan.clone(),
                        query.tally,
                        query.aside,
                        query.held,
                    ),
                )
                .await?;
            Ok(Ran {
                materialised,
                scans: source_scans(plan.as_ref(), results),
                profile: query.profile.then(|| profile(plan.as_ref())),
                set_aside: query.aside.is_some(),
            })
        })
    }

    fn share_local_table<'a>(
        &'a self,
        _: &'a SessionContext,
        _: &'a StepResults,
        _: &'a str,
    ) -> BoxFuture<'a, DFResult<()>> {
        Box::pin(async { Ok(()) })
    }

    fn sets_aside(&self) -> bool {
        true
    }

    fn reports_scans(&self) -> bool {
        true
    }

    fn assigns_on_engine(&self) -> bool {
        false
    }
}

/// Plans run on a cluster; each result is written as Parquet under `folder` by the
/// executors and read from there.
#[derive(Debug)]
pub struct OnCluster {
    /// A URL on a registered store, ending in `/`.
    folder: String,
    /// Where the state of a job writing a result can be asked, for progress.
    job_states: Option<Arc<dyn JobStates>>,
}

impl OnCluster {
    pub fn new(folder: &str, job_states: Option<Arc<dyn JobStates>>) -> OnCluster {
        OnCluster {
            folder: format!("{}/", folder.trim_end_matches('/')),
            job_states,
        }
    }

    /// The folder the result `name` is written to.
    fn url_of(&self, name: &str) -> String {
        format!("{}{name}/", self.folder)
    }

    /// Writes `query` as Parquet under the folder and registers the files as its table,
    /// counting the true values of `tally` with one more query over what was written.
    /// Returns the plan that ran (the job it submitted), for its metrics.
    async fn store(
        &self,
        ctx: &SessionContext,
        results: &StepResults,
        query: Query<'_>,
    ) -> DFResult<(Materialised, Arc<dyn ExecutionPlan>)> {
        let name = query.name;
        let url = self.url_of(name);
        // Read back with the plan's own schema (string views, nullability), so a later step
        // sees the same types as on a local run.
        let schema = query.frame.schema().as_arrow().clone();
        // What `DataFrame::write_parquet` does, keeping the plan.
        let (state, plan) = query.frame.into_parts();
        let copy = LogicalPlanBuilder::copy_to(
            plan,
            url.clone(),
            format_as_file_type(Arc::new(ParquetFormatFactory::new())),
            HashMap::new(),
            Vec::new(),
        )?
        .build()?;
        let physical = DataFrame::new(state, copy).create_physical_plan().await?;
        let written = query
            .progress
            .watch_job(
                query.step,
                &physical,
                self.job_states.as_deref(),
                datafusion::physical_plan::collect(physical.clone(), ctx.task_ctx()),
            )
            .await?;
        let rows = written_rows(&written)?;
        ctx.register_parquet(name, &url, ParquetReadOptions::new().schema(&schema))
            .await?;
        results.hold_stored(ctx, name);
        let trues = if query.tally.is_empty() {
            Vec::new()
        } else {
            let sums: Vec<String> = query
                .tally
                .iter()
                .map(|column| {
                    let column = quote(column);
                    format!("coalesce(sum(CASE WHEN {column} THEN 1 ELSE 0 END), 0)")
                })
                .collect();
            let counted = ctx
                .sql(&format!("SELECT {} FROM \"{name}\"", sums.join(", ")))
                .await?
                .collect()
                .await?;
            let row = counted
                .iter()
                .find(|batch| batch.num_rows() == 1)
                .ok_or_else(|| {
                    DataFusionError::Internal(format!("counting flags of {name}: no row"))
                })?;
            (0..query.tally.len())
                .map(|column| {
                    arrow::compute::cast(row.column(column), &DataType::UInt64)
                        .map(|value| value.as_primitive::<UInt64Type>().value(0))
                })
                .collect::<std::result::Result<_, _>>()?
        };
        Ok((
            Materialised {
                rows,
                spilled: false,
                trues,
            },
            physical,
        ))
    }
}

impl Execution for OnCluster {
    fn materialise<'a>(
        &'a self,
        ctx: &'a SessionContext,
        results: &'a StepResults,
        query: Query<'a>,
    ) -> BoxFuture<'a, DFResult<Ran>> {
        Box::pin(async move {
            let profiled = query.profile;
            let (materialised, ran) = self.store(ctx, results, query).await?;
            let profile = match profiled {
                true => Some(executed_profile(ctx, &ran).await),
                false => None,
            };
            Ok(Ran {
                materialised,
                scans: Vec::new(),
                profile,
                set_aside: false,
            })
        })
    }

    /// Writes the table as Parquet under the folder and registers the files in its place.
    /// The write runs in this process.
    fn share_local_table<'a>(
        &'a self,
        ctx: &'a SessionContext,
        results: &'a StepResults,
        name: &'a str,
    ) -> BoxFuture<'a, DFResult<()>> {
        Box::pin(async move {
            let url = self.url_of(name);
            let provider = ctx.table_provider(name).await?;
            let schema = provider.schema();
            let here = SessionContext::new_with_config_rt(ctx.copied_config(), ctx.runtime_env());
            here.register_table(name, provider)?;
            here.table(name)
                .await?
                .write_parquet(&url, DataFrameWriteOptions::new(), None)
                .await?;
            ctx.deregister_table(name)?;
            ctx.register_parquet(name, &url, ParquetReadOptions::new().schema(&schema))
                .await?;
            results.hold_stored(ctx, name);
            Ok(())
        })
    }

    fn sets_aside(&self) -> bool {
        false
    }

    fn reports_scans(&self) -> bool {
        false
    }

    fn assigns_on_engine(&self) -> bool {
        true
    }
}

/// The rows a write reports: one `count` per batch of its output.
fn written_rows(batches: &[RecordBatch]) -> DFResult<u64> {
    let mut rows = 0;
    for batch in batches {
        let counts = batch
            .column_by_name("count")
            .and_then(|column| column.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "a write reported {:?}, not a count of rows",
                    batch.schema()
                ))
            })?;
        rows += counts.iter().flatten().sum::<u64>();
    }
    Ok(rows)
}

/// One file scan of a step's plan: the files it read and the rows it produced.
#[derive(Debug, Clone)]
pub struct Scan {
    pub files: Vec<String>,
    pub rows: u64,
}

/// The executed plan with each operator's metrics, as `EXPLAIN ANALYZE` shows it.
pub fn profile(plan: &dyn ExecutionPlan) -> String {
    datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan)
        .indent(true)
        .to_string()
}

/// The plan as it ran with its metrics: on a cluster, the stages the executors ran (asked
/// of the scheduler), else as [`profile`] shows it.
async fn executed_profile(ctx: &SessionContext, plan: &Arc<dyn ExecutionPlan>) -> String {
    #[cfg(feature = "ballista")]
    if let Some(executed) = crate::distributed::executed_plan(ctx, plan).await {
        return executed;
    }
    let _ = ctx;
    profile(plan.as_ref())
}

/// The plan's scans of source files, with the rows each produced. A spilled step result
/// is read as files too; its rows are counted as that step's, so it is left out.
pub(crate) fn source_scans(plan: &dyn ExecutionPlan, results: &StepResults) -> Vec<Scan> {
    let mut scans = Vec::new();
    collect_scans(plan, &mut scans);
    scans.retain(|scan| !scan.files.iter().any(|file| results.holds(file)));
    scans
}

/// The plan's file scans. (Earlier steps' results held in memory keep no scan metrics; the
/// caller counts those.)
fn collect_scans(plan: &dyn ExecutionPlan, scans: &mut Vec<Scan>) {
    if let Some(exec) = plan.downcast_ref::<DataSourceExec>() {
        if let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() {
            scans.push(Scan {
                files: config
                    .file_groups
                    .iter()
                    .flat_map(|group| group.files())
                    .map(|file| file.object_meta.location.to_string())
                    .collect(),
                rows: plan
                    .metrics()
                    .and_then(|metrics| metrics.output_rows())
                    .unwrap_or(0) as u64,
            });
        }
        return;
    }
    for child in plan.children() {
        collect_scans(child.as_ref(), scans);
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array};
    use datafusion::datasource::MemTable;

    use super::*;

    async fn count_and_sum(ctx: &SessionContext, table: &str) -> (i64, i64) {
        let batches = ctx
            .sql(&format!("SELECT count(*), sum(v) FROM {table}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let value = |column: usize| {
            batches[0]
                .column(column)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0)
        };
        (value(0), value(1))
    }

    #[tokio::test]
    async fn stored_results_are_parquet_in_the_folder_with_their_flags_counted() {
        let ctx = SessionContext::new();
        let folder = tempfile::tempdir().unwrap();
        let results = StepResults::new(&ctx, None).unwrap();
        let cluster = OnCluster::new(&format!("file://{}/steps/", folder.path().display()), None);
        let frame = ctx
            .sql("SELECT value AS v, value % 3 = 0 AS by_three, value > 190000 AS large FROM generate_series(1, 200000)")
            .await
            .unwrap();
        let query = Query {
            name: "result",
            frame,
            tally: &["by_three", "large"],
            aside: None,
            held: None,
            step: "step",
            progress: &Progress::default(),
            profile: false,
        };
        let ran = cluster.materialise(&ctx, &results, query).await.unwrap();
        let stored = ran.materialised;
        assert_eq!(stored.rows, 200_000);
        assert_eq!(stored.trues, [66_666, 10_000]);
        assert!(!stored.spilled);
        assert!(ran.scans.is_empty() && !ran.set_aside);
        assert_eq!(
            count_and_sum(&ctx, "result").await,
            (200_000, 20_000_100_000)
        );
        let files: Vec<_> = std::fs::read_dir(folder.path().join("steps/result"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(
            !files.is_empty() && files.iter().all(|f| f.extension().unwrap() == "parquet"),
            "{files:?}"
        );
        // Read back with the plan's types, not the file's.
        let table = ctx.table("result").await.unwrap();
        assert_eq!(table.schema().field(1).data_type(), &DataType::Boolean);

        // A table only this process holds is written there too, and read from the files.
        let batch = RecordBatch::try_from_iter([(
            "v",
            Arc::new(Int64Array::from(vec![4, 5, 6])) as ArrayRef,
        )])
        .unwrap();
        let memory = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table("kept", Arc::new(memory)).unwrap();
        cluster
            .share_local_table(&ctx, &results, "kept")
            .await
            .unwrap();
        assert_eq!(count_and_sum(&ctx, "kept").await, (3, 15));
        assert!(folder.path().join("steps/kept").is_dir());
        let provider = ctx.table_provider("kept").await.unwrap();
        assert!(
            provider.downcast_ref::<MemTable>().is_none(),
            "the in-memory table is replaced by the files"
        );
    }
}
