//! The stage's results as Arrow batches, with column names a warehouse can rely on.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::Role;

use crate::scaler::percentile;
use crate::{ClusterError, Result, Segmentation};

pub const SEGMENT_ID: &str = "segment_id";
pub const DISTANCE: &str = "distance";
/// In `segments`, where a plain `name` would read as the customer's.
pub const SEGMENT_NAME: &str = "segment_name";

/// One batch per input batch: the key column as read, `segment_id`, `segment_name`
/// (`names` in the order of `segmentation.ids`), `distance`, the raw feature values, then
/// the `carry` columns as read.
pub fn segments_batches(
    input: &[RecordBatch],
    key: &str,
    carry: &[String],
    segmentation: &Segmentation,
    names: &[String],
) -> Result<Vec<RecordBatch>> {
    let mut offset = 0;
    let mut out = Vec::with_capacity(input.len());
    for batch in input {
        let rows = batch.num_rows();
        let key_column = column(batch, key)?;
        let assigned = &segmentation.assignments[offset..offset + rows];
        let mut fields = vec![
            Field::new(key, key_column.data_type().clone(), false),
            Field::new(SEGMENT_ID, DataType::Int32, false),
            Field::new(SEGMENT_NAME, DataType::Utf8, false),
            Field::new(DISTANCE, DataType::Float64, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            key_column,
            Arc::new(Int32Array::from_iter_values(
                assigned
                    .iter()
                    .map(|&c| segmentation.ids[c as usize] as i32),
            )),
            Arc::new(StringArray::from_iter_values(
                assigned.iter().map(|&c| names[c as usize].as_str()),
            )),
            Arc::new(Float64Array::from(
                segmentation.distances[offset..offset + rows].to_vec(),
            )),
        ];
        for name in &segmentation.features {
            fields.push(Field::new(name, DataType::Float64, false));
            columns.push(column(batch, name)?);
        }
        let schema = batch.schema();
        for name in carry {
            let field = schema
                .field_with_name(name)
                .map_err(|_| ClusterError::MissingColumn(name.clone()))?;
            fields.push(field.clone());
            columns.push(column(batch, name)?);
        }
        out.push(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?);
        offset += rows;
    }
    Ok(out)
}

/// `segment_id`, `name`, then per feature its centroid in model (scaled) units as
/// `<feature>_scaled` and in raw units as `<feature>`.
pub fn centroids_batch(segmentation: &Segmentation, names: &[String]) -> Result<RecordBatch> {
    let raw = segmentation
        .preprocess
        .inverse(segmentation.centroids.view());
    let mut fields = vec![
        Field::new(SEGMENT_ID, DataType::Int32, false),
        Field::new("name", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            segmentation.ids.iter().map(|&id| id as i32),
        )),
        Arc::new(StringArray::from_iter_values(names)),
    ];
    for (j, name) in segmentation.features.iter().enumerate() {
        fields.push(Field::new(
            format!("{name}_scaled"),
            DataType::Float64,
            false,
        ));
        columns.push(Arc::new(Float64Array::from(
            segmentation.centroids.column(j).to_vec(),
        )));
        fields.push(Field::new(name, DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from(raw.column(j).to_vec())));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Per segment: `segment_id`, `name`, `customers`, `share` of all customers,
/// `revenue_share` (of the summed raw values of the `monetary` feature; null without one),
/// then per feature `mean_<feature>` and `median_<feature>` of the raw values and
/// `<feature>_centroid_scaled`, the centroid in model units.
pub fn profile_batch(
    input: &[RecordBatch],
    segmentation: &Segmentation,
    names: &[String],
) -> Result<RecordBatch> {
    let k = segmentation.sizes.len();
    let features = &segmentation.features;
    // values[feature][segment]: the raw values of the segment's customers.
    let mut values = vec![vec![Vec::new(); k]; features.len()];
    let mut offset = 0;
    for batch in input {
        for (j, name) in features.iter().enumerate() {
            let column = column(batch, name)?;
            let floats = column
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| ClusterError::NotFloat {
                    column: name.clone(),
                    found: column.data_type().clone(),
                })?;
            for (i, value) in floats.values().iter().enumerate() {
                values[j][segmentation.assignments[offset + i] as usize].push(*value);
            }
        }
        offset += batch.num_rows();
    }
    let totals = SegmentTotals {
        sizes: segmentation.sizes.clone(),
        sums: (0..k)
            .map(|c| values.iter().map(|v| v[c].iter().sum()).collect())
            .collect(),
        medians: (0..k)
            .map(|c| values.iter().map(|v| median(&v[c])).collect())
            .collect(),
    };
    profile_from_totals(segmentation, names, &totals)
}

/// What the profile needs of each segment (by centroid row), gathered in one pass or
/// streamed: customers, per feature the sum of raw values and the median.
#[derive(Debug, Clone, Default)]
pub struct SegmentTotals {
    pub sizes: Vec<u64>,
    /// [segment][feature]
    pub sums: Vec<Vec<f64>>,
    /// [segment][feature]; a streamed stage takes them from its sample.
    pub medians: Vec<Vec<Option<f64>>>,
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (!sorted.is_empty()).then(|| percentile(&sorted, 0.5))
}

/// The profile from per-segment totals; see [`profile_batch`].
pub fn profile_from_totals(
    segmentation: &Segmentation,
    names: &[String],
    totals: &SegmentTotals,
) -> Result<RecordBatch> {
    let k = totals.sizes.len();
    let features = &segmentation.features;
    let total: u64 = totals.sizes.iter().sum();
    let monetary = segmentation
        .preprocess
        .transforms
        .iter()
        .position(|t| t.role == Some(Role::Monetary));
    let revenue: Option<Vec<f64>> = monetary.map(|j| (0..k).map(|c| totals.sums[c][j]).collect());
    let all_revenue: f64 = revenue.iter().flatten().sum();
    let mut fields = vec![
        Field::new(SEGMENT_ID, DataType::Int32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("customers", DataType::Int64, false),
        Field::new("share", DataType::Float64, false),
        Field::new("revenue_share", DataType::Float64, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(
            segmentation.ids.iter().map(|&id| id as i32),
        )),
        Arc::new(StringArray::from_iter_values(names)),
        Arc::new(Int64Array::from_iter_values(
            totals.sizes.iter().map(|&n| n as i64),
        )),
        Arc::new(Float64Array::from_iter_values(
            totals.sizes.iter().map(|&n| n as f64 / total.max(1) as f64),
        )),
        Arc::new(Float64Array::from_iter((0..k).map(|c| {
            revenue
                .as_ref()
                .map(|revenue| revenue[c] / if all_revenue != 0.0 { all_revenue } else { 1.0 })
        }))),
    ];
    for (j, name) in features.iter().enumerate() {
        fields.push(Field::new(format!("mean_{name}"), DataType::Float64, true));
        columns.push(Arc::new(Float64Array::from_iter((0..k).map(|c| {
            (totals.sizes[c] > 0).then(|| totals.sums[c][j] / totals.sizes[c] as f64)
        }))));
        fields.push(Field::new(
            format!("median_{name}"),
            DataType::Float64,
            true,
        ));
        columns.push(Arc::new(Float64Array::from_iter(
            (0..k).map(|c| totals.medians[c][j]),
        )));
        fields.push(Field::new(
            format!("{name}_centroid_scaled"),
            DataType::Float64,
            false,
        ));
        columns.push(Arc::new(Float64Array::from(
            segmentation.centroids.column(j).to_vec(),
        )));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    batch
        .column_by_name(name)
        .cloned()
        .ok_or_else(|| ClusterError::MissingColumn(name.to_string()))
}
