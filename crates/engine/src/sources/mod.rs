//! Registers each source as a DataFusion table reading straight from its store; sources
//! that quarantine bad rows are parsed by segflow itself ([`lenient_csv`], [`ndjson`]).
//! Also names the source, file and row behind a step that its data stopped, and counts
//! each source's rows for the run report ([`counts`]), and lists the files it reads for
//! the manifest ([`inputs`]).

pub mod counts;
pub mod inputs;
mod lenient_csv;
mod ndjson;
mod parquet_files;
mod parsed;
mod quarantine;
mod schema;

use std::collections::BTreeMap;

use arrow::error::ArrowError;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use segflow_pipeline::{Format, OnError, Pipeline, Source};
use segflow_plan::PlannedStep;

pub use parsed::SourceRejects;
pub use schema::arrow_schema;

use crate::{EngineError, Result};
use quarantine::register_quarantining;

/// The sources as registered: the rejects of those with `on_error: quarantine` (read
/// now), and what the run report should say about a source's files, by source.
#[derive(Debug, Default)]
pub struct Registered {
    pub rejects: Vec<SourceRejects>,
    pub notes: BTreeMap<String, Vec<String>>,
}

/// Registers every source.
pub async fn register_sources(ctx: &SessionContext, sources: &[Source]) -> Result<Registered> {
    let mut registered = Registered::default();
    for source in sources {
        if source.on_error == OnError::Quarantine {
            ensure_files(ctx, source).await?;
            registered
                .rejects
                .push(register_quarantining(ctx, source).await?);
        } else {
            let notes = register_source(ctx, source).await?;
            if !notes.is_empty() {
                registered.notes.insert(source.name.clone(), notes);
            }
        }
    }
    Ok(registered)
}

/// Registers one source, failing when its path matches no file (which would otherwise read
/// as an empty table) or when its Parquet files disagree (see [`parquet_files`]). Returns
/// notes on its files for the run report.
pub async fn register_source(ctx: &SessionContext, source: &Source) -> Result<Vec<String>> {
    ensure_files(ctx, source).await?;
    let files = match source.format {
        Format::Parquet => parquet_files::check_files(ctx, source).await?,
        Format::Csv | Format::Ndjson => Default::default(),
    };
    for note in &files.notes {
        tracing::warn!(source = %source.name, "{note}");
    }
    let registered = register(ctx, source, files.widened).await;
    if source.format == Format::Ndjson {
        check_ndjson_lines(ctx, source, registered.is_ok()).await?;
    }
    registered.map_err(|error| source_error(source, error))?;
    Ok(files.notes)
}

/// DataFusion's NDJSON reader fails a step (or schema inference) at a line that does not
/// fit, without naming the file or line, and reads a null into a `nullable: false`
/// column. So every line is read once here first, with the declared schema (or the one
/// DataFusion inferred; when inference itself failed, for JSON syntax only), and the first
/// line at fault fails the run as a bad row of the source. It costs a second read of the
/// files; it buys a message a person can act on, before any step runs.
async fn check_ndjson_lines(ctx: &SessionContext, source: &Source, registered: bool) -> Result<()> {
    let schema = match (&source.schema, registered) {
        (Some(columns), _) => std::sync::Arc::new(arrow_schema(columns)),
        (None, true) => match ctx.table(source.name.as_str()).await {
            Ok(table) => std::sync::Arc::new(table.schema().as_arrow().clone()),
            Err(_) => return Ok(()),
        },
        (None, false) => std::sync::Arc::new(arrow::datatypes::Schema::empty()),
    };
    let bad = quarantine::first_bad_row(ctx, source, schema)
        .await
        .map_err(|error| source_error(source, error))?;
    let inferred = if source.schema.is_none() && bad.as_ref().is_some_and(|b| b.column.is_some()) {
        "; its type was inferred from the files: declare the source's `schema` to say which is right"
    } else {
        ""
    };
    match bad {
        Some(bad) => Err(EngineError::BadRow {
            source_name: source.name.clone(),
            file: bad.file,
            line: bad.line,
            reason: format!("{}{inferred}", bad.reason),
        }),
        None => Ok(()),
    }
}

async fn ensure_files(ctx: &SessionContext, source: &Source) -> Result<()> {
    if has_files(ctx, source)
        .await
        .map_err(|error| source_error(source, error))?
    {
        return Ok(());
    }
    Err(EngineError::NoFiles {
        source_name: source.name.clone(),
        url: source.location.url.to_string(),
        extension: source.extension.clone(),
    })
}

fn source_error(source: &Source, error: datafusion::error::DataFusionError) -> EngineError {
    EngineError::Source {
        source_name: source.name.clone(),
        url: source.location.url.to_string(),
        error: Box::new(error),
    }
}

async fn has_files(ctx: &SessionContext, source: &Source) -> datafusion::error::Result<bool> {
    let url = ListingTableUrl::parse(source.location.url.as_str())?;
    let store = ctx.runtime_env().object_store(url.object_store())?;
    let state = ctx.state();
    let mut files = url
        .list_all_files(&state, store.as_ref(), &source.extension)
        .await?;
    Ok(files.try_next().await?.is_some())
}

/// Registers `source` with DataFusion, read with its declared schema, else `widened`, else
/// the schema DataFusion infers.
async fn register(
    ctx: &SessionContext,
    source: &Source,
    widened: Option<arrow::datatypes::SchemaRef>,
) -> datafusion::error::Result<()> {
    let schema = source
        .schema
        .as_deref()
        .map(arrow_schema)
        .or_else(|| widened.map(|schema| schema.as_ref().clone()));
    let url = source.location.url.as_str();
    let compression = if source.extension.ends_with(".gz") {
        FileCompressionType::GZIP
    } else {
        FileCompressionType::UNCOMPRESSED
    };
    match source.format {
        Format::Csv => {
            let mut options = CsvReadOptions::new()
                .has_header(source.csv.has_header)
                .delimiter(source.csv.delimiter)
                .quote(source.csv.quote)
                .file_extension(&source.extension)
                .file_compression_type(compression)
                .null_regex(source.csv.null_value.as_deref().map(regex_literal));
            if let Some(schema) = &schema {
                options = options.schema(schema);
            }
            ctx.register_csv(&source.name, url, options).await
        }
        Format::Ndjson => {
            let mut options = JsonReadOptions::default()
                .file_extension(&source.extension)
                .file_compression_type(compression);
            if let Some(schema) = &schema {
                options = options.schema(schema);
            }
            ctx.register_json(&source.name, url, options).await
        }
        Format::Parquet => {
            let mut options = ParquetReadOptions::new().file_extension(&source.extension);
            if let Some(schema) = &schema {
                options = options.schema(schema);
            }
            ctx.register_parquet(&source.name, url, options).await
        }
    }
}

/// The declared text matches exactly, not as a pattern.
fn regex_literal(text: &str) -> String {
    let mut escaped = String::from("^");
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('$');
    escaped
}

/// A step (or the segment stage, reading a source directly) that failed because of a
/// source's data fails with an error that names no file: DataFusion's CSV reader counts a
/// bad row's line within its batch, a cut gzip stream or a corrupt Parquet page is an I/O
/// or decoding error. Then the sources it reads are looked at again to name the source,
/// the file (and for a row, the line and column); other errors come back as they were.
pub async fn name_the_source(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    selected: &[&PlannedStep],
    error: EngineError,
) -> EngineError {
    let (cause, reads): (&DataFusionError, Vec<&str>) = match &error {
        EngineError::Step {
            step, error: cause, ..
        } => match selected.iter().find(|p| &p.step.name == step) {
            Some(planned) => (cause, planned.reads.iter().map(String::as_str).collect()),
            None => return error,
        },
        EngineError::Table {
            table,
            error: cause,
        } => (cause, vec![table.as_str()]),
        _ => return error,
    };
    let Some(fault) = SourceFault::of(cause.find_root()) else {
        return error;
    };
    for source in &pipeline.sources {
        if !reads.contains(&source.name.as_str()) {
            continue;
        }
        if let Some(named) = fault.find_in(ctx, source).await {
            return named;
        }
    }
    error
}

/// What kind of source fault an error's root cause may be.
enum SourceFault {
    /// A CSV row that does not parse.
    BadRow,
    /// A file that cannot be read through: a gzip stream cut short.
    Unreadable,
    /// Parquet data that does not decode.
    CorruptParquet,
}

impl SourceFault {
    fn of(root: &DataFusionError) -> Option<SourceFault> {
        match root {
            DataFusionError::ParquetError(_) => Some(SourceFault::CorruptParquet),
            DataFusionError::IoError(_) => Some(SourceFault::Unreadable),
            DataFusionError::ArrowError(arrow_error, _) => match **arrow_error {
                ArrowError::ParseError(_) | ArrowError::CsvError(_) => Some(SourceFault::BadRow),
                ArrowError::IoError(..) => Some(SourceFault::Unreadable),
                ArrowError::ParquetError(_) => Some(SourceFault::CorruptParquet),
                _ => None,
            },
            _ => None,
        }
    }

    /// The fault in `source`, named, if it is there.
    async fn find_in(&self, ctx: &SessionContext, source: &Source) -> Option<EngineError> {
        let in_file = |(file, message): (String, String)| EngineError::SourceFile {
            source_name: source.name.clone(),
            file,
            message,
        };
        match self {
            SourceFault::BadRow if source.format == Format::Csv => {
                let table = ctx.table(source.name.as_str()).await.ok()?;
                let schema = std::sync::Arc::new(table.schema().as_arrow().clone());
                let bad = quarantine::first_bad_row(ctx, source, schema)
                    .await
                    .ok()??;
                Some(EngineError::BadRow {
                    source_name: source.name.clone(),
                    file: bad.file,
                    line: bad.line,
                    reason: bad.reason,
                })
            }
            SourceFault::Unreadable if source.extension.ends_with(".gz") => {
                let (file, problem) = corrupt_gzip_file(ctx, source).await?;
                Some(in_file((
                    file,
                    format!("not a readable gzip file: {problem}"),
                )))
            }
            SourceFault::CorruptParquet if source.format == Format::Parquet => {
                let (file, problem) = parquet_files::corrupt_file(ctx, source).await?;
                Some(in_file((file, format!("corrupt Parquet data: {problem}"))))
            }
            _ => None,
        }
    }
}

/// The first file of a gzip source that does not decompress (cut short, corrupt), and why:
/// a read that failed in the middle of a step names no file.
async fn corrupt_gzip_file(ctx: &SessionContext, source: &Source) -> Option<(String, String)> {
    use object_store::ObjectStoreExt;
    for file in parsed::files(ctx, source).await.ok()? {
        let bytes = file.store.get(&file.path).await.ok()?.bytes().await.ok()?;
        let decompressed = tokio::task::spawn_blocking(move || {
            let mut decoder = flate2::read::MultiGzDecoder::new(&bytes[..]);
            std::io::copy(&mut decoder, &mut std::io::sink()).map(|_| ())
        })
        .await
        .ok()?;
        if let Err(error) = decompressed {
            return Some((file.url, error.to_string()));
        }
    }
    None
}

/// The bytes of the files `source` reads, as listed.
pub async fn listed_bytes(ctx: &SessionContext, source: &Source) -> datafusion::error::Result<u64> {
    let listed = parsed::listed(ctx, source).await?;
    Ok(listed.files.iter().map(|file| file.size).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_value_is_matched_literally() {
        assert_eq!(regex_literal("N/A"), "^N/A$");
        assert_eq!(regex_literal("?."), "^\\?\\.$");
    }
}
