//! Registers each source as a DataFusion table reading straight from its store.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use segflow_pipeline::{Column, ColumnType, Format, OnError, Source};

use crate::lenient_csv::{SourceRejects, register_quarantining};
use crate::{EngineError, Result};

/// Registers every source; those with `on_error: quarantine` are read now, and their
/// rejects come back.
pub async fn register_sources(
    ctx: &SessionContext,
    sources: &[Source],
) -> Result<Vec<SourceRejects>> {
    let mut rejects = Vec::new();
    for source in sources {
        if source.on_error == OnError::Quarantine {
            ensure_files(ctx, source).await?;
            rejects.push(register_quarantining(ctx, source).await?);
        } else {
            register_source(ctx, source).await?;
        }
    }
    Ok(rejects)
}

/// Registers one source, failing when its path matches no file (which would otherwise read
/// as an empty table).
pub async fn register_source(ctx: &SessionContext, source: &Source) -> Result<()> {
    ensure_files(ctx, source).await?;
    register(ctx, source)
        .await
        .map_err(|error| source_error(source, error))
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

async fn register(ctx: &SessionContext, source: &Source) -> datafusion::error::Result<()> {
    let schema = source.schema.as_deref().map(arrow_schema);
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

pub fn arrow_schema(columns: &[Column]) -> Schema {
    Schema::new(
        columns
            .iter()
            .map(|column| Field::new(&column.name, arrow_type(column.data_type), column.nullable))
            .collect::<Vec<_>>(),
    )
}

fn arrow_type(column_type: ColumnType) -> DataType {
    match column_type {
        ColumnType::String => DataType::Utf8,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
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
