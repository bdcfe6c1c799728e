//! The Arrow schema of a source's declared columns: the one mapping from the pipeline's
//! column types to Arrow's, shared by the sources DataFusion reads and those segflow parses.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use segflow_pipeline::{Column, ColumnType};

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
