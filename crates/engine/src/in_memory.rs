//! Runs steps on a handful of rows given in memory, for `segflow test`: no store is
//! registered and no source file is read, so a test sees only the rows it gives.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, new_null_array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::MemTable;
use datafusion::datasource::empty::EmptyTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use segflow_pipeline::{Literal, Pipeline, Segment};
use segflow_plan::StepGraph;

use crate::sources::arrow_schema;
use crate::{EngineError, Result, StepReport};

/// The schema of every table that can be planned without reading data: sources with a
/// declared schema, and the steps that read only such tables. Others are absent.
pub async fn known_schemas(pipeline: &Pipeline, graph: &StepGraph) -> HashMap<String, SchemaRef> {
    let ctx = SessionContext::new();
    let mut schemas = HashMap::new();
    for source in &pipeline.sources {
        if let Some(columns) = &source.schema {
            let schema = Arc::new(arrow_schema(columns));
            if ctx
                .register_table(
                    source.name.as_str(),
                    Arc::new(EmptyTable::new(schema.clone())),
                )
                .is_ok()
            {
                schemas.insert(source.name.clone(), schema);
            }
        }
    }
    for planned in &graph.steps {
        if !planned
            .reads
            .iter()
            .all(|table| schemas.contains_key(table))
        {
            continue;
        }
        let step = &planned.step;
        let schema = match &step.validate {
            // A validate step passes its input's rows on unchanged.
            Some(validate) => schemas.get(&validate.input).cloned(),
            None => match ctx
                .sql_with_options(&step.sql, crate::steps::query_only())
                .await
            {
                Ok(frame) => Some(Arc::new(frame.schema().as_arrow().clone())),
                Err(_) => None,
            },
        };
        if let Some(schema) = schema
            && ctx
                .register_table(
                    step.name.as_str(),
                    Arc::new(EmptyTable::new(schema.clone())),
                )
                .is_ok()
        {
            schemas.insert(step.name.clone(), schema);
        }
    }
    schemas
}

/// A value that does not fit its column: the row (0-based), the column and why.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    pub row: usize,
    pub column: String,
    pub message: String,
}

/// The types a table of literals gets when no schema is known: integers Int64, numbers
/// Float64, booleans Boolean, anything with text (or only nulls) Utf8.
pub fn inferred_schema(columns: &[String], rows: &[Vec<Option<Literal>>]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let values = rows.iter().filter_map(|row| row[index].as_ref());
            let data_type = literal_type(values).unwrap_or(DataType::Utf8);
            Field::new(name, data_type, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// One batch of `schema` from rows of literals given for `columns` (a subset of the
/// schema's, in any order); columns not given are null. Each value is cast to its
/// column's type as `CAST` would, and the first that does not cast is reported.
pub fn literal_batch(
    schema: &SchemaRef,
    columns: &[String],
    rows: &[Vec<Option<Literal>>],
) -> std::result::Result<RecordBatch, CellError> {
    // Given rows may leave out columns the step does not use, even non-nullable ones.
    let nullable = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|field| field.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let arrays = nullable
        .fields()
        .iter()
        .map(
            |field| match columns.iter().position(|c| c == field.name()) {
                Some(index) => {
                    let values: Vec<Option<&Literal>> =
                        rows.iter().map(|row| row[index].as_ref()).collect();
                    literal_array(&values, field.data_type()).map_err(|(row, message)| CellError {
                        row,
                        column: field.name().clone(),
                        message,
                    })
                }
                None => Ok(new_null_array(field.data_type(), rows.len())),
            },
        )
        .collect::<std::result::Result<Vec<ArrayRef>, CellError>>()?;
    RecordBatch::try_new(nullable, arrays).map_err(|error| CellError {
        row: 0,
        column: String::new(),
        message: error.to_string(),
    })
}

fn literal_type<'a>(values: impl Iterator<Item = &'a Literal>) -> Option<DataType> {
    values
        .map(|value| match value {
            Literal::Integer(_) => DataType::Int64,
            Literal::Float(_) => DataType::Float64,
            Literal::Boolean(_) => DataType::Boolean,
            Literal::Text(_) => DataType::Utf8,
        })
        .reduce(|a, b| match (a, b) {
            (a, b) if a == b => a,
            (DataType::Int64 | DataType::Float64, DataType::Int64 | DataType::Float64) => {
                DataType::Float64
            }
            _ => DataType::Utf8,
        })
}

/// The literals as an array of the type they share, then cast to `target`; on failure,
/// the first row that does not cast alone.
fn literal_array(
    values: &[Option<&Literal>],
    target: &DataType,
) -> std::result::Result<ArrayRef, (usize, String)> {
    let source = source_array(values);
    let strict = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    match cast_with_options(&source, target, &strict) {
        Ok(array) => Ok(array),
        Err(error) => {
            for (row, value) in values.iter().enumerate() {
                let single = source_array(&[*value]);
                if cast_with_options(&single, target, &strict).is_err() {
                    let shown = value.map(Literal::display).unwrap_or_default();
                    return Err((row, format!("`{shown}` is not a value of type {target}")));
                }
            }
            Err((0, error.to_string()))
        }
    }
}

fn source_array(values: &[Option<&Literal>]) -> ArrayRef {
    match literal_type(values.iter().flatten().copied()) {
        Some(DataType::Int64) => Arc::new(Int64Array::from_iter(values.iter().map(|v| match v {
            Some(Literal::Integer(n)) => Some(*n),
            _ => None,
        }))),
        Some(DataType::Float64) => {
            Arc::new(Float64Array::from_iter(values.iter().map(|v| match v {
                Some(Literal::Integer(n)) => Some(*n as f64),
                Some(Literal::Float(x)) => Some(*x),
                _ => None,
            })))
        }
        Some(DataType::Boolean) => {
            Arc::new(BooleanArray::from_iter(values.iter().map(|v| match v {
                Some(Literal::Boolean(b)) => Some(*b),
                _ => None,
            })))
        }
        _ => Arc::new(StringArray::from_iter(
            values.iter().map(|v| v.map(Literal::display)),
        )),
    }
}

/// Per table a query reads, the columns it uses (after DataFusion pushed projections down
/// to the scans). A validate step's output is a view over its flagged input, so a scan of
/// that input counts as reading the step, its flag columns left out.
pub(crate) async fn used_columns(
    ctx: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<HashMap<String, Vec<String>>> {
    used_columns_of(
        ctx.sql_with_options(sql, crate::steps::query_only())
            .await?,
    )
}

/// As [`used_columns`], of a query planned already.
pub(crate) fn used_columns_of(
    frame: datafusion::prelude::DataFrame,
) -> datafusion::error::Result<HashMap<String, Vec<String>>> {
    let plan = frame.into_optimized_plan()?;
    let mut used: HashMap<String, Vec<String>> = HashMap::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let table = scan.table_name.table();
            let table = crate::validate::validated_step(table).unwrap_or(table);
            let columns = used.entry(table.to_string()).or_default();
            for field in scan.projected_schema.fields() {
                if !crate::validate::is_flag_column(field.name()) && !columns.contains(field.name())
                {
                    columns.push(field.name().clone());
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(used)
}

/// What running steps on given rows produced.
#[derive(Debug, Default)]
pub struct InMemoryRun {
    /// Every table the run holds: the given ones and each step's result.
    pub tables: HashMap<String, Vec<RecordBatch>>,
    /// Per validate step with quarantine checks, its rejects.
    pub rejects: HashMap<String, Vec<RecordBatch>>,
    /// The segment stage's rows, when it ran.
    pub segments: Option<Vec<RecordBatch>>,
    pub reports: Vec<StepReport>,
}

/// Runs the named steps (in plan order) on `given` tables alone, then the segment stage
/// when `segment` is given.
pub async fn run_in_memory(
    graph: &StepGraph,
    steps: &[String],
    given: Vec<(String, RecordBatch)>,
    segment: Option<&Segment>,
) -> Result<InMemoryRun> {
    let ctx = SessionContext::new();
    let mut run = InMemoryRun::default();
    let mut rows = HashMap::new();
    for (name, batch) in given {
        rows.insert(name.clone(), batch.num_rows() as u64);
        let table = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]])
            .map_err(|error| EngineError::Segment(error.to_string()))?;
        ctx.register_table(name.as_str(), Arc::new(table))
            .map_err(|error| EngineError::Segment(error.to_string()))?;
        run.tables.insert(name, vec![batch]);
    }
    let wanted: HashSet<&str> = steps.iter().map(String::as_str).collect();
    let selected: Vec<_> = graph
        .steps
        .iter()
        .filter(|planned| wanted.contains(planned.step.name.as_str()))
        .collect();
    let results = crate::results::StepResults::new(&ctx, None)
        .map_err(|error| EngineError::Resources(format!("scratch folder: {error}")))?;
    let settings = crate::steps::StepsSettings {
        results: &results,
        max_concurrent: 1,
        keep: None,
        read_columns: &crate::check::ReadColumns::default(),
        profile: false,
        progress: &crate::Progress::default(),
    };
    let outcome = crate::steps::run_steps(&ctx, &selected, settings, rows).await?;
    for planned in &selected {
        let name = &planned.step.name;
        let batches = ctx
            .table(name.as_str())
            .await
            .map_err(|error| EngineError::Segment(error.to_string()))?
            .collect()
            .await
            .map_err(|error| EngineError::Step {
                step: name.clone(),
                origin: planned.step.sql_origin(),
                error: Box::new(error),
            })?;
        run.tables.insert(name.clone(), batches);
    }
    for rejects in outcome.rejects {
        let batches = ctx
            .table(rejects.table.as_str())
            .await
            .map_err(|error| EngineError::Segment(error.to_string()))?
            .collect()
            .await
            .map_err(|error| EngineError::Segment(error.to_string()))?;
        run.rejects.insert(rejects.step, batches);
    }
    run.reports = outcome.reports;
    if let Some(segment) = segment {
        run.segments = Some(crate::segment::segments_in_memory(&ctx, segment).await?);
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;

    use super::*;

    fn text(value: &str) -> Option<Literal> {
        Some(Literal::Text(value.to_string()))
    }

    #[test]
    fn literals_are_cast_to_the_columns_types_and_missing_columns_are_null() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "at",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("price", DataType::Float64, true),
            Field::new("country", DataType::Utf8, true),
        ]));
        let columns = vec!["at".to_string(), "id".to_string(), "price".to_string()];
        let rows = vec![
            vec![
                text("2011-01-02 10:00:00"),
                Some(Literal::Integer(1)),
                Some(Literal::Integer(3)),
            ],
            vec![
                text("2011-01-03"),
                Some(Literal::Integer(2)),
                Some(Literal::Float(2.5)),
            ],
        ];
        let batch = literal_batch(&schema, &columns, &rows).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(0).data_type(), &DataType::Int64);
        assert_eq!(batch.column(3).null_count(), 2, "country was not given");
        let price = batch
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(price.values(), &[3.0, 2.5]);
    }

    #[test]
    fn a_value_that_does_not_cast_is_named_by_row_and_column() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "quantity",
            DataType::Int64,
            true,
        )]));
        let rows = vec![vec![Some(Literal::Integer(1))], vec![text("six")]];
        let error = literal_batch(&schema, &["quantity".to_string()], &rows).unwrap_err();
        assert_eq!((error.row, error.column.as_str()), (1, "quantity"));
        assert_eq!(error.message, "`six` is not a value of type Int64");
    }

    #[test]
    fn types_are_inferred_from_values_without_a_schema() {
        let rows = vec![
            vec![Some(Literal::Integer(1)), Some(Literal::Integer(1)), None],
            vec![Some(Literal::Float(0.5)), text("x"), None],
        ];
        let columns = ["a".to_string(), "b".to_string(), "c".to_string()];
        let schema = inferred_schema(&columns, &rows);
        let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            [&DataType::Float64, &DataType::Utf8, &DataType::Utf8]
        );
    }
}
