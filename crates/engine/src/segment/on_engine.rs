//! The segment stage's second pass as a query, for a run whose SQL executes on a cluster:
//! every customer's nearest centroid is computed where the engine runs the query (Ballista's
//! executors), and the executors write `segments/`, so the customers never pass through
//! this process. Only the fitted model travels, as literals in the query: clips, `log1p`,
//! the scaler's centers and scales, and the centroids. The query uses only built-in
//! functions (`least`, `greatest`, `ln`, `sqrt`, `CASE`), which every executor has.
//!
//! It computes what [`segflow_cluster::assign_rows`] does, in the same order: clip, `log1p`
//! (as `ln(1 + x)`, which may differ from Rust's `ln_1p` in the last bit), scale, squared
//! distance summed over features in order, and the first centroid at the smallest distance.

use std::ops::Not;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::functions::expr_fn::{abs, coalesce, greatest, isnan, least, ln, sqrt};
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{Expr, lit, when};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext, ident};
use segflow_cluster::{ClusterError, DISTANCE, SEGMENT_ID, SEGMENT_NAME, Segmentation};
use segflow_pipeline::Segment;
use segflow_publish::Staging;

use super::local::split_invalid;
use super::stage::cluster_error;
use crate::tables::run_column_exprs;
use crate::{EngineError, Result};

const SEGMENTS: &str = "segments";

/// What the pass found, for the stage's report and outputs.
pub(super) struct Assigned {
    pub customers: u64,
    pub customers_quarantined: u64,
    pub sizes: Vec<u64>,
    /// [centroid row][feature]
    pub sums: Vec<Vec<f64>>,
    pub inertia: f64,
    /// `key` and `segment_id` of every customer, when asked for.
    pub current: Vec<RecordBatch>,
}

/// Assigns every customer of `frame` (key, features as Float64, carried columns) to the
/// nearest centroid of `model` (named `names`, in the order of its ids) and writes
/// `segments/` into `staging` from the engine.
/// Customers with a null, NaN or infinite feature are quarantined (`rejects/segment`) or
/// fail the stage, as `segment.quarantine_invalid` says.
pub(super) async fn assign_on_engine(
    ctx: &SessionContext,
    frame: DataFrame,
    segment: &Segment,
    model: &Segmentation,
    names: &[String],
    staging: &mut Staging,
    keep_current: bool,
) -> Result<Assigned> {
    let failed = |error: datafusion::error::DataFusionError| {
        EngineError::Segment(format!("assigning `{}`: {error}", segment.input))
    };
    let features = &model.features;
    let finite: Vec<Expr> = features.iter().map(|name| is_finite(ident(name))).collect();
    let all_finite = finite
        .iter()
        .cloned()
        .reduce(Expr::and)
        .unwrap_or(lit(true));

    let customers_quarantined =
        screen(&frame, segment, model, &finite, &all_finite, staging).await?;
    let key_type = frame
        .schema()
        .field_with_unqualified_name(&segment.key)
        .map_err(failed)?
        .data_type()
        .clone();

    let scaled = frame
        .filter(all_finite)
        .and_then(|valid| {
            let mut columns = passed_through(&valid);
            columns.extend(
                features
                    .iter()
                    .enumerate()
                    .map(|(j, name)| scaled_feature(model, j, ident(name)).alias(z(j))),
            );
            valid.select(columns)
        })
        .map_err(failed)?;
    let k = model.centroids.nrows();
    let with_distances = {
        let mut columns = passed_through(&scaled);
        columns.extend((0..k).map(|c| {
            let squared = (0..features.len())
                .map(|j| {
                    let difference = ident(z(j)) - lit(model.centroids[[c, j]]);
                    difference.clone() * difference
                })
                .reduce(|sum, term| sum + term)
                .unwrap_or(lit(0.0));
            squared.alias(d(c))
        }));
        scaled.select(columns).map_err(failed)?
    };
    let nearest = if k == 1 {
        ident(d(0))
    } else {
        least((0..k).map(|c| ident(d(c))).collect())
    };
    // The first centroid at the smallest distance, as the local assignment picks it.
    let mut case = when(ident(d(0)).eq(ident(NEAREST)), lit(model.ids[0] as i32));
    for c in 1..k {
        case.when(ident(d(c)).eq(ident(NEAREST)), lit(model.ids[c] as i32));
    }
    let segment_id = case
        .otherwise(lit(model.ids[k - 1] as i32))
        .map_err(failed)?;
    // The name by the same test, so that it cannot disagree with the id.
    let mut named = when(ident(d(0)).eq(ident(NEAREST)), lit(names[0].as_str()));
    for (c, name) in names.iter().enumerate().take(k).skip(1) {
        named.when(ident(d(c)).eq(ident(NEAREST)), lit(name.as_str()));
    }
    let name = non_null(
        named
            .otherwise(lit(names[k - 1].as_str()))
            .map_err(failed)?,
        &DataType::Utf8,
    );
    let mut output = vec![
        non_null(ident(&segment.key), &key_type).alias(&segment.key),
        segment_id.alias(SEGMENT_ID),
        name.alias(SEGMENT_NAME),
        non_null(sqrt(ident(NEAREST)), &DataType::Float64).alias(DISTANCE),
    ];
    output.extend(
        features
            .iter()
            .map(|name| non_null(ident(name), &DataType::Float64).alias(name)),
    );
    output.extend(segment.carry.iter().map(ident));
    // The executors write the files, so the run's columns are theirs to add.
    output.extend(run_column_exprs(staging.run_columns()));
    let mut with_nearest = passed_through(&with_distances);
    with_nearest.push(nearest.alias(NEAREST));
    let segments = with_distances
        .select(with_nearest)
        .and_then(|frame| frame.select(output))
        .map_err(failed)?;

    let folder = format!("{}{SEGMENTS}/", staging.url());
    let mut parquet = TableParquetOptions::default();
    // As the files segflow writes itself.
    parquet.global.compression = Some("snappy".to_string());
    segments
        .write_parquet(&folder, DataFrameWriteOptions::new(), Some(parquet))
        .await
        .map_err(failed)?;
    let customers = staging.adopt_parquet(SEGMENTS, SEGMENTS).await?;

    let written = ctx
        .read_parquet(&folder, ParquetReadOptions::new())
        .await
        .map_err(failed)?;
    let (sizes, sums, inertia) = totals(written.clone(), model).await.map_err(failed)?;
    let current = if keep_current {
        written
            .select(vec![ident(&segment.key), ident(SEGMENT_ID)])
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?
    } else {
        Vec::new()
    };
    Ok(Assigned {
        customers,
        customers_quarantined,
        sizes,
        sums,
        inertia,
        current,
    })
}

/// Counts the customers the model cannot place: a feature that is not a finite number, or
/// one that `log1p` cannot take once clipped. The first fail the stage or go to
/// `rejects/segment` (with the reasons the local stage gives: they are few, so they are
/// read here and set aside by the same code); the second fail it. Returns the quarantined.
async fn screen(
    frame: &DataFrame,
    segment: &Segment,
    model: &Segmentation,
    finite: &[Expr],
    all_finite: &Expr,
    staging: &mut Staging,
) -> Result<u64> {
    let failed = |error: datafusion::error::DataFusionError| {
        EngineError::Segment(format!("checking `{}`: {error}", segment.input))
    };
    let flag = |condition: Expr| when(condition, lit(1_i64)).otherwise(lit(0_i64)).map(sum);
    let mut counts = Vec::new();
    for (j, is_finite) in finite.iter().enumerate() {
        counts.push(
            flag(is_finite.clone().not())
                .map_err(failed)?
                .alias(format!("bad_{j}")),
        );
        if model.preprocess.transforms[j].log1p {
            let clipped = clipped(model, j, ident(&model.features[j]));
            counts.push(
                flag(all_finite.clone().and(clipped.lt_eq(lit(-1.0))))
                    .map_err(failed)?
                    .alias(format!("log_{j}")),
            );
        }
    }
    let counted = frame
        .clone()
        .aggregate(vec![], counts)
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let row = counted
        .iter()
        .find(|batch| batch.num_rows() == 1)
        .ok_or_else(|| EngineError::Segment("counting invalid customers: no row".to_string()))?;
    let count_of = |name: &str| -> usize {
        row.column_by_name(name)
            .map(|column| column.as_primitive::<Int64Type>())
            .filter(|column| !column.is_null(0))
            .map_or(0, |column| column.value(0) as usize)
    };
    for (j, column) in model.features.iter().enumerate() {
        let bad = count_of(&format!("log_{j}"));
        if bad > 0 {
            return Err(cluster_error(ClusterError::LogOfNonPositive {
                column: column.clone(),
                count: bad,
            }));
        }
    }
    let bad: Vec<usize> = (0..model.features.len())
        .map(|j| count_of(&format!("bad_{j}")))
        .collect();
    if bad.iter().all(|&count| count == 0) {
        return Ok(0);
    }
    if !segment.quarantine_invalid {
        let (j, &count) = bad
            .iter()
            .enumerate()
            .find(|(_, count)| **count > 0)
            .expect("one feature has bad values");
        return Err(cluster_error(ClusterError::NotFinite {
            column: model.features[j].clone(),
            count,
        }));
    }
    let invalid = frame
        .clone()
        .filter(all_finite.clone().not())
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let (_, rejected) = split_invalid(&invalid, segment)?;
    let Some(rejected) = rejected else {
        return Ok(0);
    };
    let quarantined = rejected.num_rows() as u64;
    staging
        .write_parquet(
            "rejects/segment",
            "rejects/segment.parquet",
            rejected.schema(),
            &[rejected],
        )
        .await?;
    Ok(quarantined)
}

/// Per centroid row: customers, the sums of each raw feature, and (over all rows) the sum
/// of squared distances, from the written segments.
async fn totals(
    written: DataFrame,
    model: &Segmentation,
) -> datafusion::error::Result<(Vec<u64>, Vec<Vec<f64>>, f64)> {
    let k = model.centroids.nrows();
    let mut aggregates = vec![count(lit(1)).alias("customers")];
    aggregates.extend(
        model
            .features
            .iter()
            .enumerate()
            .map(|(j, name)| sum(ident(name)).alias(format!("sum_{j}"))),
    );
    aggregates.push(sum(ident(DISTANCE) * ident(DISTANCE)).alias("inertia"));
    let grouped = written
        .aggregate(vec![ident(SEGMENT_ID)], aggregates)?
        .collect()
        .await?;
    let mut sizes = vec![0; k];
    let mut sums = vec![vec![0.0; model.features.len()]; k];
    let mut inertia = 0.0;
    for batch in &grouped {
        let ids = batch.column(0).as_primitive::<Int32Type>();
        let customers = batch.column(1).as_primitive::<Int64Type>();
        let float = |i: usize| batch.column(i).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let row = model
                .ids
                .iter()
                .position(|&id| id as i32 == ids.value(i))
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(format!(
                        "segment id {} is not the model's",
                        ids.value(i)
                    ))
                })?;
            sizes[row] = customers.value(i) as u64;
            for (j, total) in sums[row].iter_mut().enumerate() {
                *total = float(2 + j).value(i);
            }
            inertia += float(2 + model.features.len()).value(i);
        }
    }
    Ok((sizes, sums, inertia))
}

/// Whether a feature is a number k-means can use: not null, not NaN, not infinite.
fn is_finite(value: Expr) -> Expr {
    coalesce(vec![
        value
            .clone()
            .is_not_null()
            .and(isnan(value.clone()).not())
            .and(abs(value).lt(lit(f64::INFINITY))),
        lit(false),
    ])
}

/// Feature `j` clipped to the model's winsorising bounds, if it has them.
fn clipped(model: &Segmentation, j: usize, value: Expr) -> Expr {
    match model.preprocess.clips[j] {
        Some((low, high)) => least(vec![greatest(vec![value, lit(low)]), lit(high)]),
        None => value,
    }
}

/// Feature `j` in model units: clipped, `log1p` when asked, then scaled.
fn scaled_feature(model: &Segmentation, j: usize, value: Expr) -> Expr {
    let mut value = clipped(model, j, value);
    if model.preprocess.transforms[j].log1p {
        value = ln(lit(1.0) + value);
    }
    let scaler = &model.preprocess.scaler;
    (value - lit(scaler.centers[j])) / lit(scaler.scales[j])
}

/// A column the filter already made non-null, declared so: the written files then say
/// NOT NULL, as the local stage's do (the default value is never used).
fn non_null(value: Expr, data_type: &DataType) -> Expr {
    match ScalarValue::new_default(data_type) {
        Ok(default) => coalesce(vec![value, lit(default)]),
        Err(_) => value,
    }
}

/// Every column of `frame` as it is, to select beside new ones.
fn passed_through(frame: &DataFrame) -> Vec<Expr> {
    frame
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect()
}

const NEAREST: &str = "__segflow_nearest";

fn z(j: usize) -> String {
    format!("__segflow_z{j}")
}

fn d(c: usize) -> String {
    format!("__segflow_d{c}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ndarray::array;
    use segflow_cluster::ScalerKind;
    use segflow_cluster::{Preprocessor, Scaler};
    use segflow_pipeline::FeatureTransform;
    use segflow_publish::OutputFolder;

    use super::*;

    /// Two well-apart groups of customers and two that cannot be placed (NaN, null).
    const INPUT: &str = "SELECT id, CAST(x AS DOUBLE) AS x, tag FROM (VALUES \
        (1, 0.0, 'a'), (2, 1.0, 'b'), (3, 10.0, 'c'), (4, 11.0, 'd'), \
        (5, CAST('NaN' AS DOUBLE), 'e'), (6, NULL, 'f')) AS t(id, x, tag)";

    fn segment(quarantine_invalid: bool) -> Segment {
        Segment {
            contract: None,
            input: "customers".to_string(),
            key: "id".to_string(),
            features: vec!["x".to_string()],
            transforms: vec![transform(true)],
            scaler: segflow_pipeline::ScalerKind::Standard,
            names: Default::default(),
            actions: Default::default(),
            units: Default::default(),
            carry: vec!["tag".to_string()],
            k: 2,
            k_selection: None,
            warm_start: None,
            fixed_model: false,
            quarantine_invalid,
            fit_sample: Some(2),
            seed: 7,
            restarts: 1,
            max_iterations: 10,
            tolerance: 1e-4,
            checks: Vec::new(),
        }
    }

    fn transform(log1p: bool) -> FeatureTransform {
        FeatureTransform {
            log1p,
            winsorize: None,
            role: None,
        }
    }

    /// Clipped to [0.5, 10.5], log1p, centred on 1.2 and scaled by 1.1; segment ids in the
    /// reverse of centroid order.
    fn model() -> Segmentation {
        Segmentation {
            features: vec!["x".to_string()],
            preprocess: Preprocessor {
                transforms: vec![segflow_cluster::FeatureTransform {
                    log1p: true,
                    winsorize: None,
                    role: None,
                }],
                clips: vec![Some((0.5, 10.5))],
                scaler: Scaler {
                    kind: ScalerKind::Standard,
                    centers: array![1.2],
                    scales: array![1.1],
                },
            },
            centroids: array![[-0.5], [1.0]],
            ids: vec![1, 0],
            assignments: Vec::new(),
            distances: Vec::new(),
            sizes: vec![2, 2],
            inertia: 0.0,
            iterations: 1,
            converged: true,
        }
    }

    fn names() -> Vec<String> {
        vec!["Low".to_string(), "High".to_string()]
    }

    async fn staging(dir: &std::path::Path) -> Staging {
        let url = format!("file://{}/", dir.display());
        let folder = OutputFolder::new(
            Arc::new(object_store::local::LocalFileSystem::new()),
            object_store::path::Path::from_url_path(dir.to_str().unwrap()).unwrap(),
            &url,
        );
        folder
            .stage(segflow_publish::RunColumns::new("run", Some("2011-12-10")))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_query_assigns_as_the_local_stage_and_sets_the_unplaceable_aside() {
        let ctx = SessionContext::new();
        let frame = ctx.sql(INPUT).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut staging = staging(dir.path()).await;
        let model = model();
        let assigned = assign_on_engine(
            &ctx,
            frame.clone(),
            &segment(true),
            &model,
            &names(),
            &mut staging,
            true,
        )
        .await
        .unwrap();
        assert_eq!(assigned.customers, 4);
        assert_eq!(assigned.customers_quarantined, 2);

        // What the local stage computes for the same customers.
        let valid = ctx
            .sql(&format!(
                "SELECT * FROM ({INPUT}) WHERE id <= 4 ORDER BY id"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let (rows, distances) = segflow_cluster::assign_rows(&model, &valid).unwrap();
        let mut expected: Vec<(i64, i32)> = (1..=4)
            .zip(&rows)
            .map(|(id, &row)| (id, model.ids[row as usize] as i32))
            .collect();
        let mut found: Vec<(i64, i32)> = assigned
            .current
            .iter()
            .flat_map(|batch| {
                let ids = batch.column(0).as_primitive::<Int64Type>().clone();
                let segments = batch.column(1).as_primitive::<Int32Type>().clone();
                (0..batch.num_rows())
                    .map(move |i| (ids.value(i), segments.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        found.sort();
        expected.sort();
        assert_eq!(found, expected);
        assert_eq!(
            found,
            [(1, 1), (2, 1), (3, 0), (4, 0)],
            "the ids, not centroid rows"
        );
        assert_eq!(assigned.sizes, [2, 2]);
        assert_eq!(assigned.sums, [vec![1.0], vec![21.0]]);
        let inertia: f64 = distances.iter().map(|d| d * d).sum();
        assert!(
            (assigned.inertia - inertia).abs() < 1e-12,
            "{} vs {inertia}",
            assigned.inertia
        );

        // The set-aside customers, with the local stage's reasons.
        let rejects = staging
            .files()
            .iter()
            .find(|file| file.name == "rejects/segment.parquet")
            .expect("rejects are staged");
        assert_eq!(rejects.rows(), Some(2));
        let segments: Vec<&str> = staging
            .files()
            .iter()
            .filter(|file| file.name.starts_with("segments/"))
            .map(|file| file.name.as_str())
            .collect();
        assert_eq!(segments, ["segments/part-00000.parquet"]);
        let schema = &staging
            .files()
            .iter()
            .find(|f| f.name == segments[0])
            .unwrap();
        let schema = &schema.table.as_ref().unwrap().schema;
        let columns: Vec<(&str, bool)> = schema
            .fields()
            .iter()
            .map(|field| (field.name().as_str(), field.is_nullable()))
            .collect();
        assert_eq!(
            columns,
            [
                ("id", false),
                ("segment_id", false),
                ("segment_name", false),
                ("distance", false),
                ("x", false),
                ("tag", false),
                ("run_id", false),
                ("as_of", false),
            ],
            "carried columns as the input has them"
        );
    }

    #[tokio::test]
    async fn customers_that_cannot_be_placed_fail_the_stage_unless_set_aside() {
        let ctx = SessionContext::new();
        let frame = ctx.sql(INPUT).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut staging = staging(dir.path()).await;
        let error = assign_on_engine(
            &ctx,
            frame,
            &segment(false),
            &model(),
            &names(),
            &mut staging,
            false,
        )
        .await
        .err()
        .expect("NaN and null features fail the stage");
        assert!(matches!(error, EngineError::SegmentData(_)), "{error}");
        assert!(
            error
                .to_string()
                .contains("feature `x` has 2 null, NaN or infinite values"),
            "{error}"
        );

        // log1p of a value at or below -1, once clipped: no number to place.
        let frame = ctx
            .sql("SELECT id, CAST(x AS DOUBLE) AS x, tag FROM (VALUES (1, -3.0, 'a'), (2, 1.0, 'b')) AS t(id, x, tag)")
            .await
            .unwrap();
        let mut unclipped = model();
        unclipped.preprocess.clips = vec![None];
        let error = assign_on_engine(
            &ctx,
            frame,
            &segment(true),
            &unclipped,
            &names(),
            &mut staging,
            false,
        )
        .await
        .err()
        .expect("log1p of -3 fails the stage");
        assert!(
            error
                .to_string()
                .contains("log1p needs values above -1, and 1 is not"),
            "{error}"
        );
    }
}
