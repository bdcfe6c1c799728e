//! The segment stage: one row per customer in, Parquet segments, centroids and profile out.

mod on_engine;
mod stream;

use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, Schema};
use datafusion::prelude::{DataFrame, SessionContext, cast, col};
use segflow_cluster::{
    ClusterError, DISTANCE, KMeansSettings, KScore, SEGMENT_ID, SegmentTotals, Segmentation,
    centroids_batch, profile_from_totals, segment_names, segments_batches,
};
use segflow_pipeline::{ScalerKind, Segment};
use segflow_publish::Staging;

use crate::report::{KScoreReport, KSelectionReport, SegmentReport};
use crate::warm_start::PreviousRun;
use crate::{EngineError, Result};

/// Rows per file under `segments/`: files stay a size warehouses load in parallel.
const ROWS_PER_SEGMENT_FILE: usize = 1_000_000;

/// With `on_engine`, customers past the fit sample are assigned by a query the session's
/// engine runs, not in this process.
pub async fn run_segment(
    ctx: &SessionContext,
    segment: &Segment,
    previous: Option<&PreviousRun>,
    staging: &mut Staging,
    on_engine: bool,
) -> Result<SegmentReport> {
    let started = Instant::now();
    let frame = input_frame(ctx, segment).await?;
    let sample = match segment.fit_sample {
        Some(size) => {
            let total = frame.clone().count().await.map_err(|error| {
                EngineError::Segment(format!("counting `{}`: {error}", segment.input))
            })?;
            (total > size).then_some((size, total))
        }
        None => None,
    };
    let stage = match sample {
        Some((size, total)) => {
            let on_engine = on_engine.then_some(ctx);
            stream::streamed_stage(frame, segment, previous, size, total, staging, on_engine)
                .await?
        }
        None => {
            let input = sorted_by_key(frame, segment)?
                .collect()
                .await
                .map_err(|error| {
                    EngineError::Segment(format!("reading `{}`: {error}", segment.input))
                })?;
            in_memory_stage(input, segment, previous, staging).await?
        }
    };
    let Stage {
        segmentation,
        names,
        scores,
        customers,
        customers_quarantined,
        fit_ms,
        current,
        totals,
    } = stage;
    write_model_outputs(segment, &segmentation, &names, &totals, staging).await?;
    // A model file alone has no segments to count movement against.
    if let Some(previous) = previous.filter(|previous| !previous.segments.is_empty()) {
        let by_id = segmentation
            .ids
            .iter()
            .copied()
            .zip(names.iter().cloned())
            .collect();
        let migration =
            crate::warm_start::migration(ctx, previous, &current, &segment.key, &by_id).await?;
        staging
            .write_parquet(
                "migration",
                "migration.parquet",
                migration.schema(),
                &[migration],
            )
            .await?;
    }
    let k_selection = match (&segment.k_selection, scores) {
        (Some(selection), Some(scores)) => {
            let batch = k_selection_batch(&scores, segmentation.centroids.nrows())?;
            staging
                .write_parquet(
                    "k_selection",
                    "k_selection.parquet",
                    batch.schema(),
                    &[batch],
                )
                .await?;
            Some(KSelectionReport {
                metric: selection.metric.as_str().to_string(),
                chosen: segmentation.centroids.nrows(),
                scores: scores
                    .iter()
                    .map(|score| KScoreReport {
                        k: score.k,
                        inertia: score.inertia,
                        silhouette: score.silhouette,
                        calinski_harabasz: score.calinski_harabasz,
                        davies_bouldin: score.davies_bouldin,
                    })
                    .collect(),
            })
        }
        _ => None,
    };
    Ok(SegmentReport {
        customers_quarantined,
        fitted_on: sample.map(|(size, _)| size as u64),
        warm_start_from: previous.map(|previous| previous.run_id.clone()),
        k_selection,
        names,
        input: segment.input.clone(),
        key: segment.key.clone(),
        features: segment.features.clone(),
        customers,
        k: segmentation.centroids.nrows(),
        seed: segment.seed,
        iterations: segmentation.iterations,
        converged: segmentation.converged,
        inertia: segmentation.inertia,
        ids: segmentation.ids.clone(),
        sizes: totals.sizes.clone(),
        fit_ms,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// What a stage fitted and wrote, for the outputs every stage shares.
struct Stage {
    /// The model; its `sizes` and `inertia` cover every customer.
    segmentation: Segmentation,
    names: Vec<String>,
    scores: Option<Vec<KScore>>,
    customers: u64,
    customers_quarantined: u64,
    /// Time spent fitting the model (scaling included), in milliseconds.
    fit_ms: u64,
    /// `key` and `segment_id` of every customer, when a migration is to be counted.
    current: Vec<RecordBatch>,
    totals: SegmentTotals,
}

/// The whole input in memory: fit on all of it, assign, write `segments/`.
async fn in_memory_stage(
    input: Vec<RecordBatch>,
    segment: &Segment,
    previous: Option<&PreviousRun>,
    staging: &mut Staging,
) -> Result<Stage> {
    let (input, invalid) = if segment.quarantine_invalid {
        split_invalid(&input, segment)?
    } else {
        (input, None)
    };
    let customers_quarantined = invalid.as_ref().map_or(0, |b| b.num_rows() as u64);
    if let Some(invalid) = invalid {
        staging
            .write_parquet(
                "_rejects/segment",
                "_rejects/segment.parquet",
                invalid.schema(),
                &[invalid],
            )
            .await?;
    }
    let settings = kmeans_settings(segment);
    tracing::info!(customers = rows(&input), k = segment.k, "fitting k-means");
    let fitting = Instant::now();
    let (segmentation, scores) = fit_model(&input, segment, previous, &settings)?;
    let fit_ms = fitting.elapsed().as_millis() as u64;
    let names = names_of(&segmentation, segment, previous);
    let segments = segments_batches(&input, &segment.key, &segment.carry, &segmentation)
        .map_err(cluster_error)?;
    let current = if previous.is_some_and(|p| !p.segments.is_empty()) {
        segments.clone()
    } else {
        Vec::new()
    };
    write_segments(segments, staging).await?;
    let totals = totals_of(&input, &segmentation)?;
    Ok(Stage {
        customers: rows(&input) as u64,
        segmentation,
        names,
        scores,
        customers_quarantined,
        fit_ms,
        current,
        totals,
    })
}

/// Fits from the previous run's model when there is one, else from scratch (choosing k
/// when asked).
fn fit_model(
    input: &[RecordBatch],
    segment: &Segment,
    previous: Option<&PreviousRun>,
    settings: &KMeansSettings,
) -> Result<(Segmentation, Option<Vec<KScore>>)> {
    match previous {
        Some(previous) => Ok((
            segflow_cluster::segment_from_previous(
                input,
                &segment.features,
                &previous.model,
                settings,
            )
            .map_err(cluster_error)?,
            None,
        )),
        None => fit(input, segment, settings),
    }
}

/// Per segment: customers, sums and medians of the raw features of `input` as assigned.
fn totals_of(input: &[RecordBatch], segmentation: &Segmentation) -> Result<SegmentTotals> {
    let k = segmentation.centroids.nrows();
    let features = &segmentation.features;
    let mut values = vec![vec![Vec::new(); features.len()]; k];
    let mut offset = 0;
    for batch in input {
        for (j, name) in features.iter().enumerate() {
            let column = batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
                .ok_or_else(|| EngineError::Segment(format!("feature `{name}` is not numeric")))?;
            for (i, value) in column.values().iter().enumerate() {
                values[segmentation.assignments[offset + i] as usize][j].push(*value);
            }
        }
        offset += batch.num_rows();
    }
    Ok(SegmentTotals {
        sizes: values
            .iter()
            .map(|v| v.first().map_or(0, Vec::len) as u64)
            .collect(),
        sums: values
            .iter()
            .map(|v| v.iter().map(|x| x.iter().sum()).collect())
            .collect(),
        medians: values
            .iter()
            .map(|v| v.iter().map(|x| segflow_cluster::median(x)).collect())
            .collect(),
    })
}

/// The segment stage without its outputs: every customer of the input with its segment,
/// as `segments/` would hold them (for tests of a whole pipeline on a few rows).
pub async fn segments_in_memory(
    ctx: &SessionContext,
    segment: &Segment,
) -> Result<Vec<RecordBatch>> {
    let input = read_input(ctx, segment).await?;
    let settings = kmeans_settings(segment);
    let (segmentation, _) = fit(&input, segment, &settings)?;
    segments_batches(&input, &segment.key, &segment.carry, &segmentation).map_err(cluster_error)
}

/// Customers whose features can all be clustered, and the others with the reason: the key,
/// `reason`, then the features as read.
fn split_invalid(
    input: &[RecordBatch],
    segment: &Segment,
) -> Result<(Vec<RecordBatch>, Option<RecordBatch>)> {
    use arrow::array::{Array, BooleanArray, StringArray};
    use arrow::compute::filter_record_batch;
    use arrow::datatypes::{Field, Float64Type};
    let mut kept = Vec::new();
    let mut rejected = Vec::new();
    for batch in input {
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); batch.num_rows()];
        for name in &segment.features {
            let values = batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
                .ok_or_else(|| EngineError::Segment(format!("feature `{name}` is not numeric")))?;
            for (i, reason) in reasons.iter_mut().enumerate() {
                if values.is_null(i) {
                    reason.push(format!("{name} is null"));
                } else if values.value(i).is_nan() {
                    reason.push(format!("{name} is NaN"));
                } else if values.value(i).is_infinite() {
                    reason.push(format!("{name} is infinite"));
                }
            }
        }
        let valid = BooleanArray::from_iter(reasons.iter().map(|r| Some(r.is_empty())));
        let invalid = BooleanArray::from_iter(reasons.iter().map(|r| Some(!r.is_empty())));
        let arrow_error = |error: arrow::error::ArrowError| EngineError::Segment(error.to_string());
        kept.push(filter_record_batch(batch, &valid).map_err(arrow_error)?);
        if invalid.true_count() == 0 {
            continue;
        }
        let bad = filter_record_batch(batch, &invalid).map_err(arrow_error)?;
        let reason = StringArray::from_iter_values(
            reasons
                .iter()
                .filter(|r| !r.is_empty())
                .map(|r| r.join("; ")),
        );
        let schema = bad.schema();
        let mut fields = vec![
            schema
                .field_with_name(&segment.key)
                .map_err(arrow_error)?
                .clone(),
            Field::new("reason", DataType::Utf8, false),
        ];
        let mut columns = vec![
            bad.column_by_name(&segment.key)
                .expect("the key was read")
                .clone(),
            std::sync::Arc::new(reason) as arrow::array::ArrayRef,
        ];
        for name in &segment.features {
            fields.push(schema.field_with_name(name).map_err(arrow_error)?.clone());
            columns.push(
                bad.column_by_name(name)
                    .expect("features were read")
                    .clone(),
            );
        }
        rejected.push(
            RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
                .map_err(arrow_error)?,
        );
    }
    let rejected = match rejected.first() {
        Some(first) => Some(
            arrow::compute::concat_batches(&first.schema(), &rejected)
                .map_err(|error| EngineError::Segment(error.to_string()))?,
        ),
        None => None,
    };
    Ok((kept, rejected))
}

/// Names by centroid row: from the roles, but a segment matched to a previous run's keeps
/// that run's name, and the pipeline's `names` win over both.
fn names_of(
    segmentation: &Segmentation,
    segment: &Segment,
    previous: Option<&PreviousRun>,
) -> Vec<String> {
    let mut names = segment_names(segmentation, &Default::default());
    if let Some(previous) = previous {
        for (name, id) in names.iter_mut().zip(&segmentation.ids) {
            if let Some(kept) = previous.names.get(id) {
                *name = kept.clone();
            }
        }
    }
    for (name, id) in names.iter_mut().zip(&segmentation.ids) {
        if let Some(given) = segment.names.get(id) {
            *name = given.clone();
        }
    }
    names
}

/// The fit, and with k chosen from a range, the score of every k tried.
fn fit(
    input: &[RecordBatch],
    segment: &Segment,
    settings: &KMeansSettings,
) -> Result<(Segmentation, Option<Vec<KScore>>)> {
    let (features, transforms) = (&segment.features, &segment.transforms);
    match &segment.k_selection {
        None => segflow_cluster::segment(input, features, transforms, segment.scaler, settings)
            .map(|segmentation| (segmentation, None)),
        Some(selection) => segflow_cluster::segment_choosing_k(
            input,
            features,
            transforms,
            segment.scaler,
            settings,
            selection,
        )
        .map(|(segmentation, scores)| (segmentation, Some(scores))),
    }
    .map_err(cluster_error)
}

/// `k_selection.parquet`: per k tried, its inertia (the elbow) and each metric, and which
/// k was kept.
fn k_selection_batch(scores: &[KScore], chosen: usize) -> Result<RecordBatch> {
    use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int32Array};
    use arrow::datatypes::Field;
    let float = |name: &str, value: fn(&KScore) -> f64| -> (Field, ArrayRef) {
        (
            Field::new(name, DataType::Float64, false),
            std::sync::Arc::new(Float64Array::from_iter_values(scores.iter().map(value))),
        )
    };
    let columns: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("k", DataType::Int32, false),
            std::sync::Arc::new(Int32Array::from_iter_values(
                scores.iter().map(|s| s.k as i32),
            )),
        ),
        float("inertia", |s| s.inertia),
        float("silhouette", |s| s.silhouette),
        float("calinski_harabasz", |s| s.calinski_harabasz),
        float("davies_bouldin", |s| s.davies_bouldin),
        (
            Field::new("chosen", DataType::Boolean, false),
            std::sync::Arc::new(BooleanArray::from_iter(
                scores.iter().map(|s| Some(s.k == chosen)),
            )),
        ),
    ];
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), arrays)
        .map_err(|error| EngineError::Segment(error.to_string()))
}

/// `model.json`: everything needed to place a customer in a segment without refitting,
/// features with their transforms and fitted clips, the scaler, the centroids in model
/// units and the names.
fn model_json(segment: &Segment, segmentation: &Segmentation, names: &[String]) -> Vec<u8> {
    let preprocess = &segmentation.preprocess;
    let features: Vec<serde_json::Value> = segment
        .features
        .iter()
        .zip(&preprocess.transforms)
        .zip(&preprocess.clips)
        .map(|((name, transform), clip)| {
            serde_json::json!({
                "name": name,
                "role": transform.role.map(|role| role.as_str()),
                "log1p": transform.log1p,
                "winsorize": transform.winsorize.zip(*clip).map(|((low_p, high_p), (low, high))| {
                    serde_json::json!({
                        "low_percentile": low_p,
                        "high_percentile": high_p,
                        "low": low,
                        "high": high,
                    })
                }),
            })
        })
        .collect();
    let model = serde_json::json!({
        "features": features,
        "scaler": {
            "kind": match preprocess.scaler.kind {
                ScalerKind::Standard => "standard",
                ScalerKind::Robust => "robust",
                ScalerKind::MinMax => "minmax",
            },
            "centers": preprocess.scaler.centers.to_vec(),
            "scales": preprocess.scaler.scales.to_vec(),
        },
        "k": segmentation.centroids.nrows(),
        "ids": segmentation.ids,
        "seed": segment.seed,
        "restarts": segment.restarts,
        "max_iterations": segment.max_iterations,
        "tolerance": segment.tolerance,
        "centroids": segmentation.centroids.outer_iter().map(|row| row.to_vec()).collect::<Vec<_>>(),
        "names": names,
        "sizes": segmentation.sizes,
        "inertia": segmentation.inertia,
    });
    serde_json::to_vec_pretty(&model).expect("a model serialises")
}

fn kmeans_settings(segment: &Segment) -> KMeansSettings {
    KMeansSettings {
        k: segment.k,
        seed: segment.seed,
        restarts: segment.restarts,
        max_iterations: segment.max_iterations,
        tolerance: segment.tolerance,
        fit_sample: segment.fit_sample,
    }
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// The key and the features as Float64, sorted by key so the fit does not depend on the
/// order partitions happened to finish in. Fails on a missing or non-numeric column and on a
/// key that is null or not unique.
/// The key, the features as Float64 and the carried columns, sorted by key so that the fit
/// does not depend on the order partitions happened to finish in. Fails on a missing or
/// non-numeric column and on a key that is null or not unique.
async fn input_frame(ctx: &SessionContext, segment: &Segment) -> Result<DataFrame> {
    let invalid = |message: String| EngineError::SegmentSpec(message);
    let table = ctx
        .table(segment.input.as_str())
        .await
        .map_err(|error| invalid(format!("cannot read `{}`: {error}", segment.input)))?;
    check_segment_schema(table.schema().as_arrow(), segment)
        .map_err(|(_, message)| invalid(message))?;
    check_key(ctx, segment).await?;
    let mut columns = vec![col(quoted(&segment.key))];
    columns.extend(
        segment
            .features
            .iter()
            .map(|name| cast(col(quoted(name)), DataType::Float64).alias(name)),
    );
    columns.extend(segment.carry.iter().map(|name| col(quoted(name))));
    table
        .select(columns)
        .map_err(|error| EngineError::Segment(error.to_string()))
}

/// `frame` sorted by the key: a fit on all customers sees them in one order, whatever
/// order the input arrived in.
fn sorted_by_key(frame: DataFrame, segment: &Segment) -> Result<DataFrame> {
    frame
        .sort(vec![col(quoted(&segment.key)).sort(true, true)])
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

async fn read_input(ctx: &SessionContext, segment: &Segment) -> Result<Vec<RecordBatch>> {
    sorted_by_key(input_frame(ctx, segment).await?, segment)?
        .collect()
        .await
        .map_err(|error| EngineError::Segment(format!("reading `{}`: {error}", segment.input)))
}

/// The key, features and carried columns exist, features are numeric, and none is named
/// like an output column. On failure, the key path to blame and the message.
pub fn check_segment_schema(schema: &Schema, segment: &Segment) -> Result<(), (String, String)> {
    let reserved = [SEGMENT_ID, DISTANCE];
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
    let key = quoted(&segment.key);
    let input = &segment.input;
    let sql = format!(
        "SELECT count(*) - count({key}) AS null_keys, \
         (SELECT count(*) FROM (SELECT {key} FROM {input} WHERE {key} IS NOT NULL GROUP BY {key} HAVING count(*) > 1)) AS repeated_keys \
         FROM {input}"
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|error| EngineError::Segment(error.to_string()))?
        .collect()
        .await
        .map_err(|error| EngineError::Segment(error.to_string()))?;
    // A distributed run may hand back empty batches before the one row.
    let batch = batches
        .iter()
        .find(|batch| batch.num_rows() == 1)
        .ok_or_else(|| EngineError::Segment(format!("checking the keys of `{input}`: no row")))?;
    let null_keys = batch.column(0).as_primitive::<Int64Type>().value(0);
    let repeated = batch.column(1).as_primitive::<Int64Type>().value(0);
    if null_keys > 0 || repeated > 0 {
        return Err(EngineError::SegmentData(format!(
            "key `{}` of `{input}` must identify one customer per row: {null_keys} row(s) have a null key, {repeated} key value(s) appear more than once",
            segment.key
        )));
    }
    Ok(())
}

/// Data the stage cannot cluster is a validation failure; the rest is a failed run.
fn cluster_error(error: ClusterError) -> EngineError {
    match error {
        ClusterError::NotFinite { .. }
        | ClusterError::TooFewRows { .. }
        | ClusterError::LogOfNonPositive { .. } => EngineError::SegmentData(error.to_string()),
        _ => EngineError::Segment(error.to_string()),
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `segments/` from batches in memory, in files of at most `ROWS_PER_SEGMENT_FILE` rows.
async fn write_segments(segments: Vec<RecordBatch>, staging: &mut Staging) -> Result<()> {
    let schema = segments
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| EngineError::Segment("no customers to segment".to_string()))?;
    let mut part = 0;
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    for batch in segments {
        pending_rows += batch.num_rows();
        pending.push(batch);
        if pending_rows >= ROWS_PER_SEGMENT_FILE {
            let name = format!("segments/part-{part:05}.parquet");
            staging
                .write_parquet("segments", &name, schema.clone(), &pending)
                .await?;
            part += 1;
            pending.clear();
            pending_rows = 0;
        }
    }
    if !pending.is_empty() {
        let name = format!("segments/part-{part:05}.parquet");
        staging
            .write_parquet("segments", &name, schema, &pending)
            .await?;
    }
    Ok(())
}

/// `centroids.parquet`, `model.json` and `profile.parquet`.
async fn write_model_outputs(
    segment: &Segment,
    segmentation: &Segmentation,
    names: &[String],
    totals: &SegmentTotals,
    staging: &mut Staging,
) -> Result<()> {
    let centroids = centroids_batch(segmentation, names).map_err(cluster_error)?;
    staging
        .write_parquet(
            "centroids",
            "centroids.parquet",
            centroids.schema(),
            &[centroids],
        )
        .await?;
    staging
        .write_bytes("model.json", model_json(segment, segmentation, names))
        .await?;
    let profile = profile_from_totals(segmentation, names, totals).map_err(cluster_error)?;
    staging
        .write_parquet("profile", "profile.parquet", profile.schema(), &[profile])
        .await?;
    Ok(())
}
