//! The value stage's input: its columns checked before anything is read (they exist and
//! are numbers), then each customer's history read, in the model's periods, with the
//! customers the models cannot read told apart with the reason.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::prelude::{SessionContext, cast, col};
use rayon::slice::ParallelSliceMut;
use segflow_pipeline::{Value, value_columns};
use segflow_value::history::sort_key;
use segflow_value::{History, Spend};

use crate::sql::quote;
use crate::{EngineError, Result};

/// The value input's columns exist, and those of the history are numbers: each problem
/// with the key path to blame.
pub fn check_value_schema(schema: &Schema, value: &Value) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut columns = vec![("value.key".to_string(), value.key.as_str(), false)];
    columns.extend(
        value
            .columns
            .named()
            .into_iter()
            .map(|(role, column)| (format!("value.columns.{role}"), column, true)),
    );
    if let Some(evaluate) = &value.evaluate {
        columns.push((
            "value.evaluate.actual_purchases".to_string(),
            evaluate.actual_purchases.as_str(),
            true,
        ));
    }
    for (key, name, numeric) in columns {
        let Ok(field) = schema.field_with_name(name) else {
            problems.push((
                key,
                format!(
                    "column `{name}` is not in `{}`{}; its columns: {}",
                    value.input,
                    segflow_pipeline::did_you_mean(name, &names),
                    names.join(", ")
                ),
            ));
            continue;
        };
        if numeric && !field.data_type().is_numeric() {
            problems.push((
                key,
                format!(
                    "`{name}` of `{}` is {}, not a number",
                    value.input,
                    field.data_type()
                ),
            ));
        }
    }
    problems
}

/// Every customer's row as read: the key, and the history's columns as Float64 (null where
/// the input has none).
pub struct ValueInput {
    pub keys: ArrayRef,
    pub frequency: Float64Array,
    pub recency: Float64Array,
    pub age: Float64Array,
    pub monetary_value: Option<Float64Array>,
    pub actual_purchases: Option<Float64Array>,
}

pub async fn read_value_input(ctx: &SessionContext, value: &Value) -> Result<ValueInput> {
    let table = ctx
        .table(value.input.as_str())
        .await
        .map_err(|error| EngineError::table(&value.input, error))?;
    if let Some((_, message)) = check_value_schema(table.schema().as_arrow(), value)
        .into_iter()
        .next()
    {
        return Err(EngineError::ValueSpec(message));
    }
    let as_float = |name: &str| cast(col(quote(name)), DataType::Float64).alias(name);
    let mut columns = vec![col(quote(&value.key))];
    columns.extend(
        value
            .columns
            .named()
            .into_iter()
            .map(|(_, name)| as_float(name)),
    );
    if let Some(evaluate) = &value.evaluate {
        columns.push(as_float(&evaluate.actual_purchases));
    }
    let frame = table
        .select(columns)
        .map_err(|error| EngineError::Value(error.to_string()))?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame
        .collect()
        .await
        .map_err(|error| EngineError::table(&value.input, error))?;
    let batch =
        concat_batches(&schema, &batches).map_err(|error| EngineError::Value(error.to_string()))?;
    let float = |index: usize| batch.column(index).as_primitive::<Float64Type>().clone();
    let monetary = value.columns.monetary_value.is_some();
    Ok(ValueInput {
        keys: batch.column(0).clone(),
        frequency: float(1),
        recency: float(2),
        age: float(3),
        monetary_value: monetary.then(|| float(4)),
        actual_purchases: value
            .evaluate
            .as_ref()
            .map(|_| float(4 + usize::from(monetary))),
    })
}

/// The customers the models can read, column by column in the canonical order (by
/// history, then spend), and the rows of the others with the reason.
///
/// Every sum over customers runs in the canonical order, so the outputs are the same on
/// any engine, partitioning or number of threads; customers with equal histories are next
/// to each other in it, so the distinct histories come from one pass. Columns in that
/// order let every later pass read them front to back.
pub struct Sorted {
    /// Each customer's row of the input.
    pub rows: Vec<u32>,
    pub histories: Vec<History>,
    /// With a `monetary_value` column.
    pub spends: Option<Vec<Spend>>,
    /// With `evaluate`: the purchases in the later period.
    pub actual_purchases: Option<Vec<f64>>,
    pub refused: Vec<(u32, String)>,
}

impl Sorted {
    pub fn len(&self) -> usize {
        self.rows.len()
    }
}

/// Tells the customers the models can read from the others, and puts the former in the
/// canonical order; recency and T go from days to the model's periods.
pub fn sort_customers(input: &ValueInput, value: &Value) -> Sorted {
    let period = value.time_unit.days();
    let read = |array: &Float64Array, row: usize| array.is_valid(row).then(|| array.value(row));
    // Per customer: the history's and the spend's bits (for the non-negative values they
    // hold, bits sort as the numbers do), and the row.
    let mut keyed: Vec<([u64; 3], u64, u32)> = Vec::with_capacity(input.keys.len());
    let mut refused = Vec::new();
    for row in 0..input.keys.len() {
        let named = [
            ("frequency", read(&input.frequency, row)),
            ("recency", read(&input.recency, row)),
            ("T", read(&input.age, row)),
        ];
        if let Some((role, _)) = named.iter().find(|(_, v)| v.is_none()) {
            refused.push((row as u32, format!("{role} is null")));
            continue;
        }
        let [frequency, recency, age] = named.map(|(_, v)| v.unwrap_or_default());
        let history = History::new(frequency, recency / period, age / period);
        if let Some(problem) = history.problem() {
            refused.push((row as u32, problem.to_string()));
            continue;
        }
        let spend = match &input.monetary_value {
            None => 0.0,
            Some(monetary) => match read(monetary, row) {
                Some(m) if frequency > 0.0 && !(m > 0.0 && m.is_finite()) => {
                    refused.push((
                        row as u32,
                        "monetary_value must be positive for a customer with repeat purchases"
                            .to_string(),
                    ));
                    continue;
                }
                None if frequency > 0.0 => {
                    refused.push((
                        row as u32,
                        "monetary_value is null for a customer with repeat purchases".to_string(),
                    ));
                    continue;
                }
                m => m.unwrap_or(0.0),
            },
        };
        if let Some(actual) = &input.actual_purchases
            && !read(actual, row).is_some_and(|a| a >= 0.0 && a.is_finite())
        {
            refused.push((
                row as u32,
                "the later period's purchases (evaluate.actual_purchases) are null or negative"
                    .to_string(),
            ));
            continue;
        }
        keyed.push((sort_key(&history), spend.to_bits(), row as u32));
    }
    keyed.par_sort_unstable();
    let history_of = |bits: &[u64; 3]| {
        History::new(
            f64::from_bits(bits[0]),
            f64::from_bits(bits[1]),
            f64::from_bits(bits[2]),
        )
    };
    Sorted {
        rows: keyed.iter().map(|&(_, _, row)| row).collect(),
        histories: keyed.iter().map(|(bits, _, _)| history_of(bits)).collect(),
        spends: input.monetary_value.as_ref().map(|_| {
            keyed
                .iter()
                .map(|k| Spend {
                    frequency: f64::from_bits(k.0[0]),
                    monetary_value: f64::from_bits(k.1),
                })
                .collect()
        }),
        actual_purchases: input
            .actual_purchases
            .as_ref()
            .map(|actual| keyed.iter().map(|k| actual.value(k.2 as usize)).collect()),
        refused,
    }
}

/// `rejects/value/`: the refused customers' keys, reasons and columns as read.
pub fn rejects_batch(
    input: &ValueInput,
    value: &Value,
    refused: &[(u32, String)],
) -> Result<RecordBatch> {
    let rows = UInt32Array::from_iter_values(refused.iter().map(|(row, _)| *row));
    let failed = |error: arrow::error::ArrowError| EngineError::Value(error.to_string());
    let mut fields = vec![
        Field::new(&value.key, input.keys.data_type().clone(), true),
        Field::new("reason", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        take(&input.keys, &rows, None).map_err(failed)?,
        Arc::new(StringArray::from_iter_values(
            refused.iter().map(|(_, reason)| reason.as_str()),
        )),
    ];
    let mut read = vec![
        (value.columns.frequency.as_str(), &input.frequency),
        (value.columns.recency.as_str(), &input.recency),
        (value.columns.age.as_str(), &input.age),
    ];
    if let (Some(name), Some(array)) = (&value.columns.monetary_value, &input.monetary_value) {
        read.push((name.as_str(), array));
    }
    if let (Some(evaluate), Some(array)) = (&value.evaluate, &input.actual_purchases) {
        read.push((evaluate.actual_purchases.as_str(), array));
    }
    for (name, array) in read {
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(take(array, &rows, None).map_err(failed)?);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(failed)
}

/// A few of the refused customers' keys, for a message.
pub fn sample_keys(input: &ValueInput, refused: &[(u32, String)]) -> Vec<String> {
    refused
        .iter()
        .take(5)
        .map(|(row, reason)| {
            let key = arrow::util::display::array_value_to_string(&input.keys, *row as usize)
                .unwrap_or_default();
            format!("{key} ({reason})")
        })
        .collect()
}

/// `schema` with the value stage's columns added (as the segment stage reads them).
pub fn with_value_columns(schema: &Schema, value: &Value) -> Schema {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(
        value_columns(value.spend_model)
            .iter()
            .map(|name| Field::new(*name, DataType::Float64, true)),
    );
    Schema::new(fields)
}
