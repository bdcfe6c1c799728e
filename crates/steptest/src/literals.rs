//! The rows a step test gives or expects, as Arrow batches: literals from YAML or CSV cast
//! to the columns' types as SQL's `CAST` would, with the first value that does not fit
//! named by row and column.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, new_null_array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use segflow_pipeline::Literal;

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
