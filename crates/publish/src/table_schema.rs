//! The schema every published table gets: types a warehouse loads without casting, and the
//! run's own columns (`run_id`, `as_of`), so that a file copied on its own still says which
//! run it is.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

pub const RUN_ID_COLUMN: &str = "run_id";
pub const AS_OF_COLUMN: &str = "as_of";

/// The run's values that every published table carries as its last columns.
#[derive(Debug, Clone, PartialEq)]
pub struct RunColumns {
    pub run_id: String,
    pub as_of: Option<AsOf>,
}

/// The pipeline's `as_of` variable, typed as a warehouse would want it.
#[derive(Debug, Clone, PartialEq)]
pub enum AsOf {
    /// `YYYY-MM-DD`: days since 1970-01-01.
    Date(i32),
    /// An RFC 3339 time: microseconds since the epoch, UTC.
    Timestamp(i64),
    /// Anything else, as written.
    Text(String),
}

impl AsOf {
    pub fn parse(value: &str) -> AsOf {
        if let Ok(date) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
            return AsOf::Date((date - epoch).num_days() as i32);
        }
        if let Ok(time) = chrono::DateTime::parse_from_rfc3339(value) {
            return AsOf::Timestamp(time.timestamp_micros());
        }
        AsOf::Text(value.to_string())
    }

    fn data_type(&self) -> DataType {
        match self {
            AsOf::Date(_) => DataType::Date32,
            AsOf::Timestamp(_) => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            AsOf::Text(_) => DataType::Utf8,
        }
    }

    fn array(&self, rows: usize) -> ArrayRef {
        match self {
            AsOf::Date(days) => Arc::new(Date32Array::from(vec![*days; rows])),
            AsOf::Timestamp(micros) => {
                Arc::new(TimestampMicrosecondArray::from(vec![*micros; rows]).with_timezone("UTC"))
            }
            AsOf::Text(text) => Arc::new(StringArray::from(vec![text.as_str(); rows])),
        }
    }
}

impl RunColumns {
    pub fn new(run_id: &str, as_of: Option<&str>) -> RunColumns {
        RunColumns {
            run_id: run_id.to_string(),
            as_of: as_of.map(AsOf::parse),
        }
    }

    /// The columns' fields, in the order they end every table.
    pub fn fields(&self) -> Vec<Field> {
        let mut fields = vec![Field::new(RUN_ID_COLUMN, DataType::Utf8, false)];
        if let Some(as_of) = &self.as_of {
            fields.push(Field::new(AS_OF_COLUMN, as_of.data_type(), false));
        }
        fields
    }

    fn arrays(&self, rows: usize) -> Vec<ArrayRef> {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![
            self.run_id.as_str();
            rows
        ]))];
        if let Some(as_of) = &self.as_of {
            arrays.push(as_of.array(rows));
        }
        arrays
    }

    /// The schema a table of `schema` is published with: its columns in warehouse types,
    /// then the run's. A table with a column of the run's names of its own is refused: which
    /// of the two a reader got would depend on the reader.
    pub fn published_schema(&self, schema: &SchemaRef) -> Result<SchemaRef, String> {
        let own: Vec<Field> = self.fields();
        if let Some(clash) = own
            .iter()
            .find(|field| schema.field_with_name(field.name()).is_ok())
        {
            return Err(format!(
                "has a column `{}` of its own; every published table gets `{}` from the run, so rename it in the SQL",
                clash.name(),
                own.iter()
                    .map(|field| field.name().as_str())
                    .collect::<Vec<_>>()
                    .join("` and `")
            ));
        }
        let mut fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|field| {
                let data_type = warehouse_type(field.data_type());
                field.as_ref().clone().with_data_type(data_type)
            })
            .collect();
        fields.extend(own);
        Ok(Arc::new(Schema::new_with_metadata(
            fields,
            schema.metadata().clone(),
        )))
    }

    /// `batch` as a batch of `published` (from [`RunColumns::published_schema`]).
    pub fn published_batch(
        &self,
        batch: &RecordBatch,
        published: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        let mut columns = batch
            .columns()
            .iter()
            .zip(published.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    arrow::compute::cast(column, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        columns.extend(self.arrays(batch.num_rows()));
        RecordBatch::try_new(published.clone(), columns)
    }

    /// Whether a file someone else wrote (a cluster's executors) ends in the run's columns.
    pub fn ends_schema(&self, schema: &Schema) -> bool {
        let own = self.fields();
        let fields = schema.fields();
        fields.len() >= own.len()
            && fields[fields.len() - own.len()..]
                .iter()
                .zip(&own)
                .all(|(field, own)| field.name() == own.name())
    }
}

/// What a column of `data_type` is published as. Engines choose string views and
/// dictionaries as they see fit (DataFusion does locally, Ballista does not), and compute
/// timestamps in nanoseconds, which Spark refuses by default and BigQuery truncates: the
/// files a warehouse loads keep plain strings and microseconds, whichever engine ran.
pub fn warehouse_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, values) => warehouse_type(values),
        DataType::Timestamp(TimeUnit::Nanosecond, zone) => {
            DataType::Timestamp(TimeUnit::Microsecond, zone.clone())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int32Array, StringViewArray, TimestampNanosecondArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn as_of_is_a_date_a_timestamp_or_text() {
        assert_eq!(AsOf::parse("2011-12-10"), AsOf::Date(15318));
        assert_eq!(
            AsOf::parse("2011-12-10T06:00:00+01:00"),
            AsOf::Timestamp(1_323_493_200_000_000)
        );
        assert_eq!(AsOf::parse("week-49"), AsOf::Text("week-49".to_string()));
    }

    #[test]
    fn a_table_is_published_in_warehouse_types_with_the_runs_columns_last() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8View, false),
            Field::new(
                "country",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new(
                "first_purchase",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
            Field::new("spend", DataType::Decimal128(12, 2), true),
        ]));
        let run = RunColumns::new("2011-12-10", Some("2011-12-10"));
        let published = run.published_schema(&schema).unwrap();
        let types: Vec<(&str, &DataType)> = published
            .fields()
            .iter()
            .map(|field| (field.name().as_str(), field.data_type()))
            .collect();
        let micros = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            types,
            [
                ("id", &DataType::Utf8),
                ("country", &DataType::Utf8),
                ("first_purchase", &micros),
                ("spend", &DataType::Decimal128(12, 2)),
                ("run_id", &DataType::Utf8),
                ("as_of", &DataType::Date32),
            ]
        );
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringViewArray::from(vec!["a", "b"])),
                Arc::new(DictionaryArray::<Int32Type>::new(
                    Int32Array::from(vec![0, 0]),
                    Arc::new(StringArray::from(vec!["UK"])),
                )),
                Arc::new(
                    TimestampNanosecondArray::from(vec![1_323_475_200_123_456_789, 0])
                        .with_timezone("UTC"),
                ),
                Arc::new(
                    arrow::array::Decimal128Array::from(vec![1234, 5])
                        .with_precision_and_scale(12, 2)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let out = run.published_batch(&batch, &published).unwrap();
        let times = out
            .column(2)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(times.value(0), 1_323_475_200_123_456);
        let run_ids = out
            .column(4)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            run_ids.iter().flatten().collect::<Vec<_>>(),
            ["2011-12-10"; 2]
        );
        assert!(run.ends_schema(&published));
        assert!(!run.ends_schema(&batch.schema()));
    }

    #[test]
    fn a_table_with_a_run_column_of_its_own_is_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "as_of",
            DataType::Date32,
            true,
        )]));
        let error = RunColumns::new("r", Some("2011-12-10"))
            .published_schema(&schema)
            .unwrap_err();
        assert_eq!(
            error,
            "has a column `as_of` of its own; every published table gets `run_id` and `as_of` from the run, so rename it in the SQL"
        );
        // Without an as_of variable, the table's own as_of is just a column.
        assert!(RunColumns::new("r", None).published_schema(&schema).is_ok());
    }
}
