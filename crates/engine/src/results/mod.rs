//! Step results: the tables each step produces for the steps after it and the segment stage.
//!
//! A result is held in memory while it fits, and written to Arrow IPC files in the run's
//! scratch folder when it does not, so a run over an input larger than memory holds
//! batches, not whole tables. "Fits" means two things: the session's memory pool grants the
//! bytes (the same pool DataFusion's sorts and aggregations draw on), and held results
//! together stay within half the pool, so the steps still to run keep room to work.
//! A result is released (its memory or files freed) once no step still to run reads it.
//! A result can also be a view: a query over another result that each step reading it runs
//! as part of its own plan (a validate step's output is its flagged input minus the
//! quarantined rows), so a large table is not written out a second time.
//!
//! When the SQL runs on a cluster, results are not held here at all: each is written as
//! Parquet under a folder of the run's staging area that the executors reach, by the
//! executors themselves, and registered as a table reading those files
//! ([`crate::execution::OnCluster`]). They go when the staging folder does.
//!
//! Spill files are Arrow IPC with LZ4 rather than Parquet: they are read back once or twice
//! and then deleted, so cheap encoding matters more than size. They are IPC streams, not
//! IPC files: DataFusion splits a large IPC file into byte ranges to scan it in parallel and
//! reads each range into memory whole, while a stream is read batch by batch. One file per
//! partition keeps the scan parallel.
//!
//! Operators hand out zero-copy slices of larger arrays (an aggregate emits its groups as
//! slices of one output; a filter's string views point into its input's buffers). A held
//! batch that is a small slice of larger buffers is copied out of them, as the operators
//! reading it count every batch by all the buffers it keeps alive; held batches are counted
//! by those buffers, each once. String and binary views are compacted before they are held
//! or written, or every spilled batch would carry (and every read decompress) all of the
//! buffers its views point into.

mod sink;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::ipc::CompressionType;
use datafusion::common::utils::memory::RecordBatchMemoryCounter;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::options::ArrowReadOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::ExecutionPlanProperties;
use datafusion::prelude::{DataFrame, SessionContext};

use sink::{Destination, PartitionSink};
pub(crate) use sink::{compact_views, make_dir_in_scratch};

/// How the session compresses spill files (`datafusion.execution.spill_compression`): held
/// results and bucket files are written the same way.
pub(crate) fn spill_compression(ctx: &SessionContext) -> Option<CompressionType> {
    ctx.copied_config()
        .options()
        .execution
        .spill_compression
        .into()
}

/// The step results of one run and where they live.
#[derive(Debug)]
pub struct StepResults {
    /// Removed with everything in it when the run ends.
    scratch: tempfile::TempDir,
    /// Bytes held results may take together.
    budget: usize,
    held_bytes: Arc<AtomicUsize>,
    held: Mutex<HashMap<String, Held>>,
}

#[derive(Debug)]
enum Held {
    Memory {
        reservation: MemoryReservation,
        bytes: usize,
    },
    Files(PathBuf),
    /// A query over other held results, which it keeps until it is released itself.
    View {
        over: Vec<String>,
    },
    /// A query its reader runs as part of its own plan; what it reads is kept for the
    /// reader by the caller.
    Query,
    /// Parquet files under the store folder; removed with the run's staging folder.
    Stored,
}

/// What materialising a result did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialised {
    pub rows: u64,
    /// Whether the result went to disk.
    pub spilled: bool,
    /// Per column asked to be tallied, its rows that are true.
    pub trues: Vec<u64>,
}

impl StepResults {
    /// Scratch space in `spill_dir` (the system's temporary folder by default).
    pub fn new(ctx: &SessionContext, spill_dir: Option<&Path>) -> std::io::Result<StepResults> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("segflow-run-");
        let scratch = match spill_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                builder.tempdir_in(dir)?
            }
            None => builder.tempdir()?,
        };
        let pool_size = match ctx.runtime_env().memory_pool.memory_limit() {
            datafusion::execution::memory_pool::MemoryLimit::Finite(bytes) => bytes,
            _ => usize::MAX,
        };
        Ok(StepResults {
            scratch,
            budget: pool_size / 2,
            held_bytes: Arc::new(AtomicUsize::new(0)),
            held: Mutex::new(HashMap::new()),
        })
    }

    #[cfg(test)]
    /// Runs `plan` and registers its output as the table `name`, counting the true values
    /// of the boolean columns `tally` on the way (so a large result need not be read again
    /// to count them).
    pub async fn materialise(
        &self,
        ctx: &SessionContext,
        name: &str,
        plan: Arc<dyn ExecutionPlan>,
        tally: &[&str],
    ) -> Result<Materialised> {
        self.materialise_setting_aside(ctx, name, plan, tally, None, None)
            .await
    }

    /// As [`StepResults::materialise`], and with `aside = Some((column, table))`, also
    /// registers as `table` the rows whose boolean `column` is true, caught on the way: a
    /// validate step's quarantined rows, which are few, so that finding them does not read
    /// its whole flagged result again. `table` is held like any result, with every column.
    /// With `held`, the table `name` holds only those columns.
    pub async fn materialise_setting_aside(
        &self,
        ctx: &SessionContext,
        name: &str,
        plan: Arc<dyn ExecutionPlan>,
        tally: &[&str],
        aside: Option<(&str, &str)>,
        held: Option<&[&str]>,
    ) -> Result<Materialised> {
        let schema = plan.schema();
        let index_of = |columns: &[&str]| -> std::result::Result<Vec<usize>, _> {
            columns
                .iter()
                .map(|column| schema.index_of(column))
                .collect()
        };
        let held = held.map(index_of).transpose()?;
        let held_schema = match &held {
            Some(columns) => Arc::new(schema.project(columns)?),
            None => schema.clone(),
        };
        let tally = index_of(tally)?;
        let aside = match aside {
            Some((column, table)) => Some((schema.index_of(column)?, self.destination(ctx, table))),
            None => None,
        };
        let destination = self.destination(ctx, name);
        let compression = spill_compression(ctx);
        let task = ctx.task_ctx();
        let mut running = tokio::task::JoinSet::new();
        for partition in 0..plan.output_partitioning().partition_count() {
            let mut sink = self.sink(&destination, partition, &held_schema, &tally, compression);
            sink.held = held.clone();
            if let Some((column, aside)) = &aside {
                let aside_sink = self.sink(aside, partition, &schema, &[], compression);
                sink.aside = Some((*column, Box::new(aside_sink)));
            }
            running.spawn(sink.drain(plan.execute(partition, task.clone())?));
        }
        let mut sinks = Vec::new();
        while let Some(done) = running.join_next().await {
            sinks.push(done.map_err(|error| DataFusionError::External(Box::new(error)))??);
        }
        sinks.sort_by_key(|sink| sink.partition);
        let rows = sinks.iter().map(|sink| sink.rows).sum();
        let trues = (0..tally.len())
            .map(|column| sinks.iter().map(|sink| sink.trues[column]).sum())
            .collect();
        if let Some((_, aside)) = aside {
            let aside_sinks = sinks
                .iter_mut()
                .filter_map(|sink| sink.aside.take().map(|(_, aside)| *aside))
                .collect();
            self.register(ctx, aside, &schema, aside_sinks).await?;
        }
        let spilled = self.register(ctx, destination, &held_schema, sinks).await?;
        Ok(Materialised {
            rows,
            spilled,
            trues,
        })
    }

    fn destination(&self, ctx: &SessionContext, name: &str) -> Destination {
        Destination {
            name: name.to_string(),
            dir: self.scratch.path().join(name),
            reservation: MemoryConsumer::new(format!("result of {name}"))
                .register(&ctx.runtime_env().memory_pool),
            spilling: Arc::new(AtomicBool::new(false)),
        }
    }

    fn sink(
        &self,
        destination: &Destination,
        partition: usize,
        schema: &SchemaRef,
        tally: &[usize],
        compression: Option<CompressionType>,
    ) -> PartitionSink {
        PartitionSink {
            partition,
            schema: schema.clone(),
            dir: destination.dir.clone(),
            batches: Vec::new(),
            bytes: 0,
            counter: RecordBatchMemoryCounter::new(),
            rows: 0,
            tally: tally.to_vec(),
            trues: vec![0; tally.len()],
            reservation: destination.reservation.new_empty(),
            budget: self.budget,
            held_bytes: self.held_bytes.clone(),
            spilling: destination.spilling.clone(),
            compression,
            writer: None,
            aside: None,
            held: None,
        }
    }

    /// Registers what `sinks` (one per partition, in order) caught as the destination's
    /// table; returns whether it went to disk.
    async fn register(
        &self,
        ctx: &SessionContext,
        destination: Destination,
        schema: &SchemaRef,
        mut sinks: Vec<PartitionSink>,
    ) -> Result<bool> {
        let Destination {
            name,
            dir,
            reservation,
            spilling,
        } = destination;
        // One partition ran out of room: the whole result goes to disk, so the table is one
        // kind of thing and the memory the others held is given back.
        let spilled = spilling.load(Ordering::SeqCst);
        if spilled {
            for sink in &mut sinks {
                sink.spill()?;
                sink.finish()?;
            }
            let options = ArrowReadOptions {
                schema: Some(schema.as_ref()),
                file_extension: ".arrow",
                ..ArrowReadOptions::default()
            };
            ctx.register_arrow(&name, &format!("{}/", dir.display()), options)
                .await?;
            self.hold(ctx, &name, Held::Files(dir));
        } else {
            let bytes = sinks.iter().map(|sink| sink.bytes).sum();
            let partitions = sinks
                .into_iter()
                .map(|mut sink| {
                    reservation.grow(sink.reservation.size());
                    sink.reservation.free();
                    std::mem::take(&mut sink.batches)
                })
                .collect();
            let table = MemTable::try_new(schema.clone(), partitions)?;
            ctx.register_table(&name, Arc::new(table))?;
            self.hold(ctx, &name, Held::Memory { reservation, bytes });
        }
        Ok(spilled)
    }

    /// Registers `frame`, a query over the held result `over`, as the table `name` without
    /// running it: each step reading `name` runs the query as part of its own plan. `over`
    /// is kept until `name` is released.
    pub fn register_view(
        &self,
        ctx: &SessionContext,
        name: &str,
        frame: DataFrame,
        over: &str,
    ) -> Result<()> {
        ctx.register_table(name, frame.into_view())?;
        self.hold(
            ctx,
            name,
            Held::View {
                over: vec![over.to_string()],
            },
        );
        Ok(())
    }

    /// Registers `frame` as the table `name` without running it: its one reader runs the
    /// query as part of its own plan.
    pub fn register_query(&self, ctx: &SessionContext, name: &str, frame: DataFrame) -> Result<()> {
        ctx.register_table(name, frame.into_view())?;
        self.hold(ctx, name, Held::Query);
        Ok(())
    }

    /// Moves the held result `from` (and the results it is a view over) to the name `to`,
    /// so that a later result may be named `from`: a step's result of one bucket, kept
    /// while the next bucket runs the step again.
    pub async fn rename(&self, ctx: &SessionContext, from: &str, to: &str) -> Result<()> {
        let provider = ctx
            .deregister_table(from)?
            .ok_or_else(|| DataFusionError::Internal(format!("no result `{from}` to rename")))?;
        let held = self
            .held
            .lock()
            .expect("no panic while holding the lock")
            .remove(from);
        let held = match held {
            Some(Held::View { over }) => {
                let mut moved = Vec::with_capacity(over.len());
                for table in over {
                    let renamed = format!("{to}__{table}");
                    Box::pin(self.rename(ctx, &table, &renamed)).await?;
                    moved.push(renamed);
                }
                ctx.register_table(to, provider)?;
                Held::View { over: moved }
            }
            // The files move too: the next result named `from` writes to its folder.
            Some(Held::Files(dir)) => {
                let moved = self.scratch.path().join(to);
                std::fs::rename(&dir, &moved)?;
                let schema = provider.schema();
                let options = ArrowReadOptions {
                    schema: Some(schema.as_ref()),
                    file_extension: ".arrow",
                    ..ArrowReadOptions::default()
                };
                ctx.register_arrow(to, &format!("{}/", moved.display()), options)
                    .await?;
                Held::Files(moved)
            }
            Some(held) => {
                ctx.register_table(to, provider)?;
                held
            }
            None => {
                ctx.register_table(to, provider)?;
                Held::Query
            }
        };
        self.hold(ctx, to, held);
        Ok(())
    }

    /// Registers the held results `parts` (of one schema) as the table `name`, all their
    /// rows, keeping them until `name` is released: a step's result over every bucket.
    pub async fn register_union(
        &self,
        ctx: &SessionContext,
        name: &str,
        parts: &[String],
    ) -> Result<()> {
        let mut union: Option<DataFrame> = None;
        for part in parts {
            let frame = ctx.table(part.as_str()).await?;
            union = Some(match union {
                Some(union) => union.union(frame)?,
                None => frame,
            });
        }
        let union = union.ok_or_else(|| {
            DataFusionError::Internal(format!("no parts to register `{name}` over"))
        })?;
        ctx.register_table(name, union.into_view())?;
        self.hold(
            ctx,
            name,
            Held::View {
                over: parts.to_vec(),
            },
        );
        Ok(())
    }

    /// A folder of the run's scratch space, made if missing, removed with it.
    pub fn scratch_folder(&self, name: &str) -> std::io::Result<PathBuf> {
        let dir = self.scratch.path().join(name);
        make_dir_in_scratch(&dir)?;
        Ok(dir)
    }

    /// Registers nothing: `name` is already a table over Parquet files under the run's
    /// staging folder (written by a cluster's executors), removed with that folder.
    pub fn hold_stored(&self, ctx: &SessionContext, name: &str) {
        self.hold(ctx, name, Held::Stored);
    }

    fn hold(&self, ctx: &SessionContext, name: &str, held: Held) {
        let previous = self
            .held
            .lock()
            .expect("no panic while holding the lock")
            .insert(name.to_string(), held);
        if let Some(previous) = previous {
            self.free(ctx, previous);
        }
    }

    /// Whether `location` (an object store path) is one of the spilled results' files.
    pub fn holds(&self, location: &str) -> bool {
        let scratch = self.scratch.path().to_string_lossy();
        location
            .strip_prefix(scratch.trim_start_matches('/'))
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Drops the table `name` and what it held; later reads of it fail.
    pub fn release(&self, ctx: &SessionContext, name: &str) {
        if let Err(error) = ctx.deregister_table(name) {
            tracing::debug!(%error, table = name, "deregistering a released result");
        }
        let held = self
            .held
            .lock()
            .expect("no panic while holding the lock")
            .remove(name);
        if let Some(held) = held {
            self.free(ctx, held);
        }
    }

    fn free(&self, ctx: &SessionContext, held: Held) {
        match held {
            Held::Memory { reservation, bytes } => {
                self.held_bytes.fetch_sub(bytes, Ordering::SeqCst);
                drop(reservation);
            }
            Held::Files(dir) => {
                if let Err(error) = std::fs::remove_dir_all(&dir) {
                    tracing::debug!(%error, dir = %dir.display(), "removing spilled result");
                }
            }
            Held::View { over } => {
                for table in over {
                    self.release(ctx, &table);
                }
            }
            Held::Query | Held::Stored => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sink::{compact_slices, compact_views};
    use super::*;
    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::datatypes::DataType;
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::SessionConfig;

    fn session(memory: usize) -> SessionContext {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(memory)))
            .build_arc()
            .unwrap();
        SessionContext::new_with_config_rt(SessionConfig::new().with_target_partitions(3), runtime)
    }

    async fn plan_of(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        let frame = ctx.sql(sql).await.unwrap();
        frame.create_physical_plan().await.unwrap()
    }

    async fn materialise(ctx: &SessionContext, results: &StepResults, sql: &str) -> Materialised {
        let plan = plan_of(ctx, sql).await;
        results.materialise(ctx, "result", plan, &[]).await.unwrap()
    }

    async fn sum_of(ctx: &SessionContext, table: &str) -> (i64, i64) {
        let batches = ctx
            .sql(&format!("SELECT count(*), sum(v) FROM {table}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let count = batches[0].column(0).as_any();
        let sum = batches[0].column(1).as_any();
        (
            count
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .value(0),
            sum.downcast_ref::<arrow::array::Int64Array>()
                .unwrap()
                .value(0),
        )
    }

    async fn column_names(ctx: &SessionContext, table: &str) -> Vec<String> {
        let frame = ctx.table(table).await.unwrap();
        let fields = frame.schema().fields().iter();
        fields.map(|field| field.name().clone()).collect()
    }

    const QUERY: &str =
        "SELECT value AS v, repeat('x', 50) AS padding FROM generate_series(1, 200000)";

    #[tokio::test]
    async fn a_result_that_fits_stays_in_memory() {
        let ctx = session(1 << 30);
        let results = StepResults::new(&ctx, None).unwrap();
        let done = materialise(&ctx, &results, QUERY).await;
        assert_eq!(
            done,
            Materialised {
                rows: 200_000,
                spilled: false,
                trues: Vec::new()
            }
        );
        assert_eq!(sum_of(&ctx, "result").await, (200_000, 20_000_100_000));
        assert!(ctx.runtime_env().memory_pool.reserved() > 0);
        results.release(&ctx, "result");
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
        assert!(ctx.table("result").await.is_err());
    }

    #[tokio::test]
    async fn a_result_larger_than_its_budget_goes_to_disk_whole() {
        let ctx = session(4 << 20);
        let results = StepResults::new(&ctx, None).unwrap();
        let done = materialise(&ctx, &results, QUERY).await;
        assert_eq!(
            done,
            Materialised {
                rows: 200_000,
                spilled: true,
                trues: Vec::new()
            }
        );
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
        assert_eq!(sum_of(&ctx, "result").await, (200_000, 20_000_100_000));
        let dir = results.scratch.path().join("result");
        assert!(std::fs::read_dir(&dir).unwrap().count() >= 1);
        results.release(&ctx, "result");
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn results_moved_aside_and_read_as_one_keep_their_rows_and_files() {
        // One result on disk, one in memory, each under the name the next one takes.
        let ctx = session(4 << 20);
        let results = StepResults::new(&ctx, None).unwrap();
        assert!(materialise(&ctx, &results, QUERY).await.spilled);
        results.rename(&ctx, "result", "bucket_0").await.unwrap();
        let small = "SELECT value AS v, repeat('x', 50) AS padding FROM generate_series(1, 10)";
        assert!(!materialise(&ctx, &results, small).await.spilled);
        results.rename(&ctx, "result", "bucket_1").await.unwrap();
        assert!(ctx.table("result").await.is_err());
        // The first one's files moved: the second was not written among them.
        assert!(!results.scratch.path().join("result").exists());
        let parts = ["bucket_0".to_string(), "bucket_1".to_string()];
        results.register_union(&ctx, "all", &parts).await.unwrap();
        assert_eq!(sum_of(&ctx, "all").await, (200_010, 20_000_100_055));
        results.release(&ctx, "all");
        assert!(ctx.table("bucket_0").await.is_err());
        assert!(!results.scratch.path().join("bucket_0").exists());
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    }

    #[tokio::test]
    async fn scratch_goes_with_the_run() {
        let spill = tempfile::tempdir().unwrap();
        let ctx = session(4 << 20);
        let results = StepResults::new(&ctx, Some(&spill.path().join("new"))).unwrap();
        materialise(&ctx, &results, QUERY).await;
        assert_eq!(
            std::fs::read_dir(spill.path().join("new")).unwrap().count(),
            1
        );
        drop(results);
        assert_eq!(
            std::fs::read_dir(spill.path().join("new")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_slice_of_string_views_is_written_with_only_its_own_values() {
        let long = |i: usize| format!("a value longer than twelve bytes #{i}");
        let views = arrow::array::StringViewArray::from_iter_values((0..10_000).map(long));
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("s", DataType::Utf8View, false),
        ]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(views)]).unwrap();
        let slice = batch.slice(100, 10);

        let compacted = compact_views(&slice).unwrap();
        assert_eq!(compacted, slice);
        let buffer_bytes = |batch: &RecordBatch| -> usize {
            let views = batch.column(0).as_string_view();
            views.data_buffers().iter().map(|buffer| buffer.len()).sum()
        };
        assert!(buffer_bytes(&slice) > 300_000);
        assert!(buffer_bytes(&compacted) < 1_000);
        // Already compact: left as it is.
        let again = compact_views(&compacted).unwrap();
        assert!(std::ptr::eq(
            again.column(0).as_string_view().data_buffers()[0].as_ptr(),
            compacted.column(0).as_string_view().data_buffers()[0].as_ptr()
        ));
    }

    #[tokio::test]
    async fn tallies_true_values_in_memory_and_on_disk() {
        for memory in [1 << 30, 4 << 20] {
            let ctx = session(memory);
            let results = StepResults::new(&ctx, None).unwrap();
            let plan = plan_of(
                &ctx,
                &format!(
                    "SELECT *, v % 3 = 0 AS third, CASE WHEN v % 2 = 0 THEN true END AS even \
                     FROM ({QUERY})"
                ),
            )
            .await;
            let done = results
                .materialise(&ctx, "result", plan, &["even", "third"])
                .await
                .unwrap();
            assert_eq!(done.trues, vec![100_000, 66_666], "memory {memory}");
            assert_eq!(done.spilled, memory < 1 << 30);
        }
    }

    #[tokio::test]
    async fn rows_set_aside_are_the_flagged_ones_whether_held_or_spilled() {
        // From a pool that holds both to ones too small to hold the result, then the rows set
        // aside. The result holds the columns asked for; the rows set aside keep them all.
        for memory in [1 << 30, 8 << 20, 1 << 20] {
            let ctx = session(memory);
            let results = StepResults::new(&ctx, None).unwrap();
            let plan = plan_of(
                &ctx,
                &format!("SELECT *, v % 10 = 3 AS odd_one FROM ({QUERY})"),
            )
            .await;
            let done = results
                .materialise_setting_aside(
                    &ctx,
                    "result",
                    plan,
                    &["odd_one"],
                    Some(("odd_one", "aside")),
                    Some(&["v", "odd_one"]),
                )
                .await
                .unwrap();
            assert_eq!(done.rows, 200_000, "memory {memory}");
            assert_eq!(column_names(&ctx, "result").await, ["v", "odd_one"]);
            assert_eq!(
                column_names(&ctx, "aside").await,
                ["v", "padding", "odd_one"]
            );
            assert_eq!(done.trues, vec![20_000]);
            assert_eq!(sum_of(&ctx, "result").await, (200_000, 20_000_100_000));
            // Every tenth value from 3: 3 + 13 + ... + 199_993.
            assert_eq!(sum_of(&ctx, "aside").await, (20_000, 1_999_960_000));
            results.release(&ctx, "aside");
            assert!(ctx.table("aside").await.is_err());
            assert_eq!(sum_of(&ctx, "result").await.0, 200_000);
        }
    }

    #[tokio::test]
    async fn a_view_keeps_the_result_it_reads_until_it_is_released() {
        let ctx = session(4 << 20);
        let results = StepResults::new(&ctx, None).unwrap();
        materialise(&ctx, &results, QUERY).await;
        let frame = ctx
            .sql("SELECT v FROM result WHERE v % 2 = 0")
            .await
            .unwrap();
        results
            .register_view(&ctx, "even", frame, "result")
            .unwrap();
        let dir = results.scratch.path().join("result");
        assert_eq!(sum_of(&ctx, "even").await, (100_000, 10_000_100_000));
        assert!(dir.exists());
        results.release(&ctx, "even");
        assert!(!dir.exists());
        assert!(ctx.table("even").await.is_err());
        assert!(ctx.table("result").await.is_err());
    }

    #[test]
    fn a_small_slice_of_a_large_array_is_held_in_buffers_of_its_own() {
        let values = arrow::array::Int64Array::from_iter_values(0..1_000_000);
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap();
        let slice = batch.slice(500_000, 1_000);

        let compacted = compact_slices(&slice).unwrap();
        assert_eq!(compacted, slice);
        assert!(slice.get_array_memory_size() >= 8_000_000);
        assert!(compacted.get_array_memory_size() < 16_000);
        // The whole array, or a large share of it, is kept as it is.
        let half = batch.slice(0, 600_000);
        assert!(std::ptr::eq(
            compact_slices(&half).unwrap().column(0).to_data().buffers()[0].as_ptr(),
            half.column(0).to_data().buffers()[0].as_ptr()
        ));
    }

    #[tokio::test]
    async fn spilled_files_are_told_apart_from_other_files() {
        let ctx = session(4 << 20);
        let results = StepResults::new(&ctx, None).unwrap();
        let scratch = results
            .scratch
            .path()
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        assert!(results.holds(&format!("{scratch}/result/part-0.arrow")));
        assert!(!results.holds(&format!("{scratch}-other/part-0.arrow")));
        assert!(!results.holds("data/lines.parquet"));
    }
}
