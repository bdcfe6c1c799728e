//! The segment stage's input: the checks it must pass before anything is fitted (columns
//! exist and features are numeric, one row per key), and the frame the stage reads.

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema};
use datafusion::prelude::{DataFrame, SessionContext, cast, col};
use segflow_cluster::{DISTANCE, SEGMENT_ID, SEGMENT_NAME};
use segflow_pipeline::Segment;

use crate::sql::quote;
use crate::{EngineError, Result};

/// The key, the features as Float64 and the carried columns, sorted by key so that the fit
/// does not depend on the order partitions happened to finish in. Fails on a missing or
/// non-numeric column and on a key that is null or not unique.
pub async fn input_frame(ctx: &SessionContext, segment: &Segment) -> Result<DataFrame> {
    let invalid = |message: String| EngineError::SegmentSpec(message);
    let table = ctx
        .table(segment.input.as_str())
        .await
        .map_err(|error| invalid(format!("cannot read `{}`: {error}", segment.input)))?;
    check_segment_schema(table.schema().as_arrow(), segment)
        .map_err(|(_, message)| invalid(message))?;
    check_key(ctx, segment).await?;
    let mut columns = vec![col(quote(&segment.key))];
    columns.extend(
        segment
            .features
            .iter()
            .map(|name| cast(col(quote(name)), DataType::Float64).alias(name)),
    );
    columns.extend(segment.carry.iter().map(|name| col(quote(name))));
    table
        .select(columns)
        .map_err(|error| EngineError::Segment(error.to_string()))
}

/// `frame` sorted by the key: a fit on all customers sees them in one order, whatever
/// order the input arrived in.
pub fn sorted_by_key(frame: DataFrame, segment: &Segment) -> Result<DataFrame> {
    frame
        .sort(vec![col(quote(&segment.key)).sort(true, true)])
        .map(one_partition)
        .map_err(|error| EngineError::Segment(error.to_string()))
}

/// `frame` planned as one partition. The segment stage reads its input sorted by key;
/// sorted in several partitions at once, the first to start can take the whole memory pool
/// before the others ask for their share, and their merges then fail for want of a few
/// kilobytes. One sort gets the pool and spills when it must.
fn one_partition(frame: DataFrame) -> DataFrame {
    let (mut state, plan) = frame.into_parts();
    state.config_mut().options_mut().execution.target_partitions = 1;
    DataFrame::new(state, plan)
}

pub async fn read_input(ctx: &SessionContext, segment: &Segment) -> Result<Vec<RecordBatch>> {
    sorted_by_key(input_frame(ctx, segment).await?, segment)?
        .collect()
        .await
        .map_err(|error| EngineError::table(&segment.input, error))
}

/// The key, features and carried columns exist, features are numeric, and none is named
/// like an output column. On failure, the key path to blame and the message.
/// The schema `segments` will be published with, from its input's: the key as read,
/// `segment_id`, `segment_name`, `distance`, the features (as float64), then the `carry`
/// columns as read,
/// as segflow-cluster's `segments_batches` writes them. For `segflow check` to judge a
/// contract before any data is read; the input's columns must exist.
pub fn planned_segments_schema(input: &Schema, segment: &Segment) -> Schema {
    let field = |name: &str| {
        input
            .field_with_name(name)
            .expect("check_segment_schema found every column")
            .clone()
    };
    let mut fields = vec![
        field(&segment.key).with_nullable(false),
        arrow::datatypes::Field::new(SEGMENT_ID, arrow::datatypes::DataType::Int32, false),
        arrow::datatypes::Field::new(SEGMENT_NAME, arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new(DISTANCE, arrow::datatypes::DataType::Float64, false),
    ];
    fields.extend(segment.features.iter().map(|name| {
        arrow::datatypes::Field::new(name, arrow::datatypes::DataType::Float64, false)
    }));
    fields.extend(segment.carry.iter().map(|name| field(name)));
    Schema::new(fields)
}

pub fn check_segment_schema(schema: &Schema, segment: &Segment) -> Result<(), (String, String)> {
    let reserved = [SEGMENT_ID, SEGMENT_NAME, DISTANCE];
    let columns = std::iter::once(("segment.key".to_string(), &segment.key))
        .chain(
            segment
                .features
                .iter()
                .enumerate()
                .map(|(i, name)| (format!("segment.features[{i}]"), name)),
        )
        .chain(
            segment
                .carry
                .iter()
                .enumerate()
                .map(|(i, name)| (format!("segment.carry[{i}]"), name)),
        );
    for (key, name) in columns {
        let Ok(field) = schema.field_with_name(name) else {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let message = format!(
                "column `{name}` is not in `{}`{}; its columns: {}",
                segment.input,
                segflow_pipeline::did_you_mean(name, &names),
                names.join(", ")
            );
            return Err((key, message));
        };
        if reserved.contains(&name.as_str()) {
            let message =
                format!("`{name}` is the name of an output column; rename it in the input");
            return Err((key, message));
        }
        if key.starts_with("segment.features") && !field.data_type().is_numeric() {
            let message = format!(
                "feature `{name}` of `{}` is {}, not a number",
                segment.input,
                field.data_type()
            );
            return Err((key, message));
        }
    }
    Ok(())
}

/// Every customer must appear once: a null or repeated key is bad data upstream.
async fn check_key(ctx: &SessionContext, segment: &Segment) -> Result<()> {
    let problems = crate::keys::key_problems(ctx, &segment.input, &segment.key).await?;
    if problems != (0, 0) {
        return Err(EngineError::SegmentData(crate::keys::key_message(
            &segment.input,
            &segment.key,
            problems,
        )));
    }
    Ok(())
}
