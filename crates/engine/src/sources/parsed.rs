//! What the sources segflow parses itself have in common (CSV with `on_error: quarantine`,
//! NDJSON with a declared schema): the files, the rows kept and set aside, and the rejects
//! table. A leaf: the parsers ([`super::lenient_csv`], [`super::ndjson`]) build on it, and
//! [`super::quarantine`] puts them to work.

use std::sync::Arc;

use arrow::array::{Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use segflow_pipeline::Source;

/// Rows parsed per Arrow batch.
pub const BATCH_ROWS: usize = 8192;

/// What reading a quarantining source did: its rejects and its row accounting.
#[derive(Debug)]
pub struct SourceRejects {
    pub source: String,
    pub rows_read: u64,
    pub rows_out: u64,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl SourceRejects {
    pub fn rows_quarantined(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
}

/// The rejects table of a source: one row per record that did not parse.
pub fn rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::Int64, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// A record that did not parse.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub file: String,
    /// 1-based line where the record starts.
    pub line: Option<u64>,
    /// The first column whose value does not cast, when that is the problem.
    pub column: Option<String>,
    pub reason: String,
    /// The record as its file has it (a CSV record written back as one line).
    pub raw: String,
}

/// A source's files as its store lists them (the files DataFusion's listing table reads),
/// in name order, so that messages and rejects name files in the same order on every run.
pub struct Listed {
    pub store: Arc<dyn ObjectStore>,
    /// The store's URL, which each file's path follows.
    pub base: String,
    pub files: Vec<object_store::ObjectMeta>,
}

pub async fn listed(ctx: &SessionContext, source: &Source) -> datafusion::error::Result<Listed> {
    let url = ListingTableUrl::parse(source.location.url.as_str())?;
    let store = ctx.runtime_env().object_store(url.object_store())?;
    let state = ctx.state();
    let mut files: Vec<object_store::ObjectMeta> = url
        .list_all_files(&state, store.as_ref(), &source.extension)
        .await?
        .try_collect()
        .await?;
    files.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(Listed {
        store,
        base: url.object_store().as_str().to_string(),
        files,
    })
}

pub async fn files(
    ctx: &SessionContext,
    source: &Source,
) -> datafusion::error::Result<Vec<SourceFile>> {
    let Listed { store, base, files } = listed(ctx, source).await?;
    Ok(files
        .into_iter()
        .map(|meta| SourceFile {
            store: store.clone(),
            url: format!("{base}{}", meta.location),
            path: meta.location,
        })
        .collect())
}

/// One file of a source: where to read it, and its URL for rejects and messages.
pub struct SourceFile {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    pub url: String,
}

pub struct Parsed {
    pub rows_read: u64,
    pub kept: Vec<RecordBatch>,
    pub bad: Vec<BadRow>,
}

/// `schema` with every column nullable: a batch before its bad rows are filtered out.
pub fn relaxed(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

pub fn rejects_batch(source: &str, bad: &[BadRow]) -> arrow::error::Result<RecordBatch> {
    let mut sources = StringBuilder::new();
    let mut files = StringBuilder::new();
    let mut lines = Int64Builder::new();
    let mut reasons = StringBuilder::new();
    let mut raws = StringBuilder::new();
    for row in bad {
        sources.append_value(source);
        files.append_value(&row.file);
        lines.append_option(row.line.map(|line| line as i64));
        reasons.append_value(&row.reason);
        raws.append_value(&row.raw);
    }
    RecordBatch::try_new(
        rejects_schema(),
        vec![
            Arc::new(sources.finish()),
            Arc::new(files.finish()),
            Arc::new(lines.finish()),
            Arc::new(reasons.finish()),
            Arc::new(raws.finish()),
        ],
    )
}
