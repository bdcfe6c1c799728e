//! Reading a source row by row with segflow's own parsers: quarantining sources keep the
//! rows that parse as their table and set the others aside; a strict read that failed is
//! re-read to name its first bad row.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use segflow_pipeline::{Format, Source};

use super::parsed::{
    BadRow, Parsed, SourceFile, SourceRejects, files, rejects_batch, rejects_schema,
};
use super::schema::arrow_schema;
use super::{lenient_csv, ndjson};
use crate::{EngineError, Result};

/// Reads every file of `source`, registers the rows that parse as its table and returns the
/// rest. Fails the run when the rows do not add up.
pub async fn register_quarantining(ctx: &SessionContext, source: &Source) -> Result<SourceRejects> {
    let error = |error: datafusion::error::DataFusionError| EngineError::Source {
        source_name: source.name.clone(),
        url: source.location.url.to_string(),
        error: Box::new(error),
    };
    let schema = Arc::new(arrow_schema(source.schema.as_deref().unwrap_or_default()));
    let mut kept = Vec::new();
    let mut bad = Vec::new();
    let mut rows_read = 0;
    for file in files(ctx, source).await.map_err(error)? {
        let parsed = read_file(&file, source, &schema, false)
            .await
            .map_err(error)?;
        rows_read += parsed.rows_read;
        kept.extend(parsed.kept);
        bad.extend(parsed.bad);
    }
    let rows_out: u64 = kept.iter().map(|b| b.num_rows() as u64).sum();
    let rejects = SourceRejects {
        source: source.name.clone(),
        rows_read,
        rows_out,
        schema: rejects_schema(),
        batches: vec![rejects_batch(&source.name, &bad).map_err(|e| error(e.into()))?],
    };
    if rows_read != rows_out + rejects.rows_quarantined() {
        return Err(EngineError::RowAccounting {
            at: format!("source `{}`", source.name),
            rows_in: rows_read,
            rows_out,
            rows_quarantined: rejects.rows_quarantined(),
        });
    }
    let table = MemTable::try_new(schema, vec![kept]).map_err(error)?;
    ctx.register_table(source.name.as_str(), Arc::new(table))
        .map_err(error)?;
    Ok(rejects)
}

/// The first row of `source` that does not parse against `schema` (declared or inferred), if any: used
/// to name the file, line and column when a strict read fails.
pub async fn first_bad_row(
    ctx: &SessionContext,
    source: &Source,
    schema: SchemaRef,
) -> datafusion::error::Result<Option<BadRow>> {
    for file in files(ctx, source).await? {
        let parsed = read_file(&file, source, &schema, true).await?;
        if let Some(bad) = parsed.bad.into_iter().next() {
            return Ok(Some(bad));
        }
    }
    Ok(None)
}

/// One file parsed by its format's parser.
async fn read_file(
    file: &SourceFile,
    source: &Source,
    schema: &SchemaRef,
    stop_at_first: bool,
) -> datafusion::error::Result<Parsed> {
    match source.format {
        Format::Csv => lenient_csv::read_file(file, source, schema, stop_at_first).await,
        Format::Ndjson => ndjson::read_file(file, source, schema, stop_at_first).await,
        Format::Parquet => Err(datafusion::error::DataFusionError::Internal(
            "Parquet rows are typed by their writer: never parsed row by row".to_string(),
        )),
    }
}
