//! One output partition of a result being materialised: it holds batches while the run's
//! budget and memory pool allow, and writes them (and every batch after them) to an Arrow
//! IPC stream in the result's scratch folder once any partition of the result runs out of
//! room. Also the compaction that keeps held and written batches from carrying buffers
//! they no longer use.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arrow::array::{
    Array, ArrayRef, AsArray, GenericByteViewArray, MutableArrayData, RecordBatch, make_array,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{ByteViewType, DataType, SchemaRef};
use arrow::ipc::CompressionType;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use datafusion::common::utils::memory::RecordBatchMemoryCounter;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;

/// Makes `dir` (if missing) in a folder that must exist: never the run's scratch space
/// itself again, which a stopped run's cleanup removes while the run's last writes may
/// still be on their way.
pub(crate) fn make_dir_in_scratch(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        made => made,
    }
}

/// One output partition of a plan being materialised.
pub(super) struct PartitionSink {
    pub(super) partition: usize,
    pub(super) schema: SchemaRef,
    pub(super) dir: PathBuf,
    pub(super) batches: Vec<RecordBatch>,
    /// Memory size of `batches`.
    pub(super) bytes: usize,
    /// Counts a buffer shared by several of `batches` once.
    pub(super) counter: RecordBatchMemoryCounter,
    pub(super) rows: u64,
    /// The columns whose true values are counted, and their counts.
    pub(super) tally: Vec<usize>,
    pub(super) trues: Vec<u64>,
    pub(super) reservation: MemoryReservation,
    pub(super) budget: usize,
    pub(super) held_bytes: Arc<AtomicUsize>,
    /// Set by the first partition that runs out of room; from then on all of them write.
    pub(super) spilling: Arc<AtomicBool>,
    /// As DataFusion compresses its own spill files (`datafusion.execution.spill_compression`).
    pub(super) compression: Option<CompressionType>,
    pub(super) writer: Option<StreamWriter<BufWriter<File>>>,
    /// The boolean column picking the rows set aside, and where they go.
    pub(super) aside: Option<(usize, Box<PartitionSink>)>,
    /// The columns of the plan's output this sink holds (those of `schema`); all without.
    pub(super) held: Option<Vec<usize>>,
}

/// A result being materialised: the table it becomes and what its partitions share.
pub(super) struct Destination {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) reservation: MemoryReservation,
    /// Set by the first partition that runs out of room; from then on all of them write.
    pub(super) spilling: Arc<AtomicBool>,
}

impl PartitionSink {
    pub(super) async fn drain(
        mut self,
        mut stream: SendableRecordBatchStream,
    ) -> Result<PartitionSink> {
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            for (&column, trues) in self.tally.iter().zip(&mut self.trues) {
                *trues += flags(&batch, column)?.true_count() as u64;
            }
            if let Some((column, aside)) = &mut self.aside {
                let picked = flags(&batch, *column)?;
                if picked.true_count() > 0 {
                    aside.push(filter_record_batch(&batch, picked)?)?;
                }
            }
            match &self.held {
                Some(columns) => self.push(batch.project(columns)?)?,
                None => self.push(batch)?,
            }
        }
        Ok(self)
    }

    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        if !self.spilling.load(Ordering::SeqCst) {
            let compacted = compact_slices(&compact_views(&batch)?)?;
            if self.try_hold(&compacted) {
                self.batches.push(compacted);
                return Ok(());
            }
        }
        self.spilling.store(true, Ordering::SeqCst);
        self.spill()?;
        self.write(&batch)
    }

    fn try_hold(&mut self, batch: &RecordBatch) -> bool {
        // Counted even when refused: the batch is then written and its buffers dropped.
        let size = self.counter.count_batch(batch);
        let held = self.held_bytes.fetch_add(size, Ordering::SeqCst) + size;
        if held > self.budget || self.reservation.try_grow(size).is_err() {
            self.held_bytes.fetch_sub(size, Ordering::SeqCst);
            return false;
        }
        self.bytes += size;
        true
    }

    /// Moves the held batches to this partition's file and gives their memory back.
    pub(super) fn spill(&mut self) -> Result<()> {
        if self.writer.is_none() {
            make_dir_in_scratch(&self.dir)?;
            let path = self.dir.join(format!("part-{}.arrow", self.partition));
            let options = IpcWriteOptions::default().try_with_compression(self.compression)?;
            let file = BufWriter::new(File::create(path)?);
            self.writer = Some(StreamWriter::try_new_with_options(
                file,
                &self.schema,
                options,
            )?);
        }
        for batch in std::mem::take(&mut self.batches) {
            self.write(&batch)?;
        }
        self.held_bytes.fetch_sub(self.bytes, Ordering::SeqCst);
        self.bytes = 0;
        self.reservation.free();
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let writer = self.writer.as_mut().expect("spill() opened the file");
        writer.write(&compact_views(batch)?)?;
        Ok(())
    }

    pub(super) fn finish(&mut self) -> Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            writer.finish()?;
        }
        Ok(())
    }
}

fn flags(batch: &RecordBatch, column: usize) -> Result<&arrow::array::BooleanArray> {
    batch
        .column(column)
        .as_boolean_opt()
        .ok_or_else(|| DataFusionError::Internal(format!("flag column {column} is not boolean")))
}

/// `batch` with each column that is a small slice of a larger array copied to buffers of its
/// own. Operators reading a held result count each batch by the buffers it keeps alive:
/// an aggregate's output sliced into batches would be counted, batch after batch, at the
/// size of the whole output, and a sort over it would run out of memory it does not use.
pub(super) fn compact_slices(batch: &RecordBatch) -> Result<RecordBatch> {
    /// Below this much unused buffer, copying costs more than it frees.
    const SLACK: usize = 64 << 10;
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| {
            let data = column.to_data();
            let used = data.get_slice_memory_size().unwrap_or(usize::MAX);
            let kept = column.get_array_memory_size();
            if kept <= used.saturating_mul(2).saturating_add(SLACK) {
                return Ok(column.clone());
            }
            let mut copy = MutableArrayData::new(vec![&data], false, data.len());
            copy.try_extend(0, 0, data.len())?;
            Ok(make_array(copy.freeze()))
        })
        .collect::<Result<_>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `batch` with each string or binary view column copied to buffers holding only the
/// values it references, when its buffers hold more than twice that.
pub(crate) fn compact_views(batch: &RecordBatch) -> Result<RecordBatch> {
    fn compact<T: ByteViewType + ?Sized>(views: &GenericByteViewArray<T>) -> Option<ArrayRef> {
        let buffers: usize = views.data_buffers().iter().map(|buffer| buffer.len()).sum();
        (buffers > 2 * views.total_buffer_bytes_used()).then(|| Arc::new(views.gc()) as ArrayRef)
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| {
            let compacted = match column.data_type() {
                DataType::Utf8View => compact(column.as_string_view()),
                DataType::BinaryView => compact(column.as_binary_view()),
                _ => None,
            };
            compacted.unwrap_or_else(|| column.clone())
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}
