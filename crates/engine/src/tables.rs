//! A registered table (a step's result, rejects, values) staged as a table of the run:
//! streamed whole through this process, or, split by partition columns, written by the
//! engine that holds it (this process, or a cluster's executors).

use datafusion::common::ScalarValue;
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::prelude::{SessionContext, ident};
use segflow_publish::{AS_OF_COLUMN, AsOf, RUN_ID_COLUMN, RunColumns, Staging, warehouse_type};

use crate::{EngineError, Result};

/// Streams the registered table `source` into the staged Parquet file `file` of `table`.
pub(crate) async fn stage_table(
    ctx: &SessionContext,
    staging: &mut Staging,
    source: &str,
    table: &str,
    file: &str,
) -> Result<()> {
    let failed = |error: DataFusionError| EngineError::Step {
        step: table.to_string(),
        origin: "staging".to_string(),
        error: Box::new(error),
    };
    let frame = ctx.table(source).await.map_err(failed)?;
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let mut batches = frame.execute_stream().await.map_err(failed)?;
    let mut writer = staging.table_writer(table, file, schema)?;
    while let Some(batch) = futures::StreamExt::next(&mut batches).await {
        writer.write(&batch.map_err(failed)?).await?;
    }
    writer.finish(staging).await?;
    Ok(())
}

/// Stages the registered table `source` as `table`, its rows split into Hive folders by
/// the values of `partition_by` (`<column>=<value>/`, the columns then only in the
/// folder names, as Hive, Spark and DuckDB expect). DataFusion's partitioned writer does
/// the split where the table is; the columns are cast to the types every published table
/// has and end in the run's, as [`Staging::adopt_parquet`] requires.
pub(crate) async fn stage_partitioned(
    ctx: &SessionContext,
    staging: &mut Staging,
    source: &str,
    table: &str,
    partition_by: &[String],
) -> Result<u64> {
    let failed = |error: DataFusionError| EngineError::Step {
        step: source.to_string(),
        origin: format!("publishing it as `{table}`"),
        error: Box::new(error),
    };
    let frame = ctx.table(source).await.map_err(failed)?;
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    // Refuses a column of the run's names before anything is written.
    staging.published_schema(table, &schema)?;
    let published = |field: &arrow::datatypes::Field| {
        let column = ident(field.name());
        let published = warehouse_type(field.data_type());
        if &published == field.data_type() {
            column
        } else {
            cast(column, published).alias(field.name())
        }
    };
    let is_partition = |field: &&std::sync::Arc<arrow::datatypes::Field>| {
        partition_by.iter().any(|name| name == field.name())
    };
    // The file's columns, the run's, then the partition columns the writer takes out.
    let mut columns: Vec<Expr> = schema
        .fields()
        .iter()
        .filter(|field| !is_partition(field))
        .map(|field| published(field))
        .collect();
    columns.extend(run_column_exprs(staging.run_columns()));
    for name in partition_by {
        let field = schema
            .field_with_name(name)
            .map_err(|error| failed(error.into()))?;
        columns.push(published(field));
    }
    let folder = format!("{}{table}/", staging.url());
    let mut parquet = TableParquetOptions::default();
    // As the files segflow writes itself.
    parquet.global.compression = Some("snappy".to_string());
    frame
        .select(columns)
        .map_err(failed)?
        .write_parquet(
            &folder,
            DataFrameWriteOptions::new().with_partition_by(partition_by.to_vec()),
            Some(parquet),
        )
        .await
        .map_err(failed)?;
    Ok(staging.adopt_parquet(table, table).await?)
}

/// The run's columns as literals, typed as [`RunColumns`] types them: for the queries whose
/// results the engine writes itself.
pub(crate) fn run_column_exprs(columns: &RunColumns) -> Vec<Expr> {
    let mut exprs = vec![lit(columns.run_id.as_str()).alias(RUN_ID_COLUMN)];
    if let Some(as_of) = &columns.as_of {
        let value = match as_of {
            AsOf::Date(days) => ScalarValue::Date32(Some(*days)),
            AsOf::Timestamp(micros) => {
                ScalarValue::TimestampMicrosecond(Some(*micros), Some("UTC".into()))
            }
            AsOf::Text(text) => ScalarValue::Utf8(Some(text.clone())),
        };
        exprs.push(lit(value).alias(AS_OF_COLUMN));
    }
    exprs
}
