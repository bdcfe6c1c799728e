//! The files of a Parquet source checked against each other, and against the declared
//! columns, before DataFusion reads them. DataFusion merges the files' schemas and reads a
//! column a file lacks as null: a file that lost a column would be a silent hole in the
//! data. Reading every footer here (DataFusion reads them all to infer a schema anyway)
//! lets a problem name its file, and a corrupt file fail as the source's, not a step's.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use segflow_pipeline::Source;

use crate::error::describe;
use crate::{EngineError, Result};

/// Footers read at once: enough to hide a store's latency, few enough to be polite to it.
const CONCURRENT_FOOTERS: usize = 16;

/// What the files of a Parquet source agree on.
#[derive(Debug, Default)]
pub struct ParquetFiles {
    /// The schema to read them with when the pipeline declares none and the files differ
    /// only in integer or float widths (each column as its widest type; DataFusion casts
    /// the narrower files). `None`: let DataFusion infer it.
    pub widened: Option<SchemaRef>,
    /// Declared nullable columns some files lack (read as null there), one line each.
    pub notes: Vec<String>,
}

/// Reads the footer of every file of `source` and checks them; see the module's text.
pub async fn check_files(ctx: &SessionContext, source: &Source) -> Result<ParquetFiles> {
    let failed = |error: datafusion::error::DataFusionError| EngineError::Source {
        source_name: source.name.clone(),
        url: source.location.url.to_string(),
        error: Box::new(error),
    };
    let super::parsed::Listed { store, base, files } =
        super::parsed::listed(ctx, source).await.map_err(failed)?;
    let file_url = |meta: &ObjectMeta| format!("{base}{}", meta.location);
    let schemas: Vec<(String, SchemaRef)> = futures::stream::iter(files)
        .map(|meta| {
            let store = store.clone();
            let file = file_url(&meta);
            async move {
                // The schema exactly as DataFusion reads it from the footer.
                match DFParquetMetadata::new(store.as_ref(), &meta)
                    .fetch_schema()
                    .await
                {
                    Ok(schema) => Ok((file, Arc::new(schema))),
                    Err(error) => {
                        // DataFusion and parquet each prefix the same words.
                        let message = describe(&error);
                        let mut message = message.as_str();
                        while let Some(rest) = message.strip_prefix("Parquet error: ") {
                            message = rest;
                        }
                        Err((file, message.to_string()))
                    }
                }
            }
        })
        .buffered(CONCURRENT_FOOTERS)
        .map_err(|(file, error)| EngineError::SourceFile {
            source_name: source.name.clone(),
            file,
            message: format!("not a readable Parquet file: {error}"),
        })
        .try_collect()
        .await?;
    match &source.schema {
        Some(columns) => {
            let mut notes = Vec::new();
            for column in columns {
                let lacking: Vec<&str> = schemas
                    .iter()
                    .filter(|(_, schema)| schema.field_with_name(&column.name).is_err())
                    .map(|(file, _)| file.as_str())
                    .collect();
                let Some(first) = lacking.first() else {
                    continue;
                };
                if !column.nullable {
                    return Err(EngineError::SourceFile {
                        source_name: source.name.clone(),
                        file: first.to_string(),
                        message: format!(
                            "has no column `{}`, which is declared `nullable: false`{}",
                            column.name,
                            others(lacking.len())
                        ),
                    });
                }
                notes.push(format!(
                    "{first} has no column `{}`: read as null there{}",
                    column.name,
                    others(lacking.len())
                ));
            }
            Ok(ParquetFiles {
                widened: None,
                notes,
            })
        }
        None => agree(source, &schemas).map(|widened| ParquetFiles {
            widened,
            notes: Vec::new(),
        }),
    }
}

/// The first file of a Parquet source whose data does not decode (a corrupt page), and
/// why: footers are checked up front, but a page is only read when a step reads it, and
/// that error names no file. Each file is read whole, so this is for after a failure.
pub async fn corrupt_file(ctx: &SessionContext, source: &Source) -> Option<(String, String)> {
    let url = ListingTableUrl::parse(source.location.url.as_str()).ok()?;
    let store = ctx.runtime_env().object_store(url.object_store()).ok()?;
    let state = ctx.state();
    let mut files: Vec<ObjectMeta> = url
        .list_all_files(&state, store.as_ref(), &source.extension)
        .await
        .ok()?
        .try_collect()
        .await
        .ok()?;
    files.sort_by(|a, b| a.location.cmp(&b.location));
    for meta in files {
        let file = format!("{}{}", url.object_store().as_str(), meta.location);
        let options = datafusion::prelude::ParquetReadOptions::new().file_extension("");
        let read = async {
            let mut stream = ctx
                .read_parquet(file.as_str(), options)
                .await?
                .execute_stream()
                .await?;
            while let Some(batch) = stream.next().await {
                batch?;
            }
            Ok::<(), datafusion::error::DataFusionError>(())
        };
        if let Err(error) = read.await {
            return Some((file, describe(&error)));
        }
    }
    None
}

/// ` (and N other files)` when more than one file is at fault.
fn others(files: usize) -> String {
    match files {
        0 | 1 => String::new(),
        2 => " (and 1 other file)".to_string(),
        n => format!(" (and {} other files)", n - 1),
    }
}

/// With no declared schema, the files must have the same columns; a column's type may
/// differ only in width. Returns the widened schema when widths differ.
fn agree(source: &Source, schemas: &[(String, SchemaRef)]) -> Result<Option<SchemaRef>> {
    let Some((first_file, first)) = schemas.first() else {
        return Ok(None);
    };
    let problem = |file: &str, message: String| EngineError::SourceFile {
        source_name: source.name.clone(),
        file: file.to_string(),
        message,
    };
    let mut fields: Vec<Field> = first.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut seen_in: BTreeMap<String, &str> = fields
        .iter()
        .map(|field| (field.name().clone(), first_file.as_str()))
        .collect();
    let mut widened = false;
    for (file, schema) in &schemas[1..] {
        for field in &fields {
            if schema.field_with_name(field.name()).is_err() {
                return Err(problem(
                    file,
                    format!(
                        "has no column `{}`, which {} has; declare the source's `schema` (with the column `nullable: true`) to read such files",
                        field.name(),
                        seen_in[field.name()]
                    ),
                ));
            }
        }
        for theirs in schema.fields() {
            let Some(ours) = fields.iter_mut().find(|f| f.name() == theirs.name()) else {
                return Err(problem(
                    file,
                    format!(
                        "has a column `{}` that {first_file} does not; declare the source's `schema` (with the column `nullable: true`) to read such files",
                        theirs.name()
                    ),
                ));
            };
            if ours.data_type() == theirs.data_type() {
                continue;
            }
            match wider(ours.data_type(), theirs.data_type()) {
                Some(data_type) => {
                    *ours = ours
                        .clone()
                        .with_data_type(data_type)
                        .with_nullable(ours.is_nullable() || theirs.is_nullable());
                    widened = true;
                }
                None => {
                    return Err(problem(
                        file,
                        format!(
                            "column `{}` is {}, but {} in {}",
                            theirs.name(),
                            theirs.data_type(),
                            ours.data_type(),
                            seen_in[theirs.name()]
                        ),
                    ));
                }
            }
            seen_in.insert(theirs.name().clone(), file.as_str());
        }
    }
    Ok(widened.then(|| Arc::new(Schema::new_with_metadata(fields, first.metadata().clone()))))
}

/// The type both `a` and `b` cast to without loss: the wider of two signed integers, or
/// of two floats. Anything else is a real disagreement.
fn wider(a: &DataType, b: &DataType) -> Option<DataType> {
    let rank = |data_type: &DataType| match data_type {
        DataType::Int8 => Some((0, 1)),
        DataType::Int16 => Some((0, 2)),
        DataType::Int32 => Some((0, 3)),
        DataType::Int64 => Some((0, 4)),
        DataType::Float16 => Some((1, 1)),
        DataType::Float32 => Some((1, 2)),
        DataType::Float64 => Some((1, 3)),
        _ => None,
    };
    let (kind_a, width_a) = rank(a)?;
    let (kind_b, width_b) = rank(b)?;
    (kind_a == kind_b).then(|| {
        if width_a >= width_b {
            a.clone()
        } else {
            b.clone()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_floats_widen_within_their_kind_only() {
        assert_eq!(
            wider(&DataType::Int32, &DataType::Int64),
            Some(DataType::Int64)
        );
        assert_eq!(
            wider(&DataType::Float64, &DataType::Float32),
            Some(DataType::Float64)
        );
        assert_eq!(wider(&DataType::Int64, &DataType::Float64), None);
        assert_eq!(wider(&DataType::Utf8, &DataType::Int64), None);
    }
}
