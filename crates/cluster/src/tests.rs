use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array};
use arrow::datatypes::{Field, Schema};

use super::*;

fn settings(k: usize, seed: u64) -> KMeansSettings {
    KMeansSettings {
        k,
        seed,
        restarts: 1,
        max_iterations: 300,
        tolerance: 1e-4,
        fit_sample: None,
    }
}

/// Three tight blobs of 40, 30 and 20 points around (0, 0), (100, 0) and (0, 1000).
fn blobs() -> Vec<RecordBatch> {
    let centers = [(0.0, 0.0, 40), (100.0, 0.0, 30), (0.0, 1000.0, 20)];
    let (mut ids, mut xs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
    for (c, &(cx, cy, n)) in centers.iter().enumerate() {
        for i in 0..n {
            let jitter = (i as f64 * 0.37).sin();
            ids.push((c * 1000 + i) as i64);
            xs.push(cx + jitter);
            ys.push(cy + jitter * 2.0);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", arrow::datatypes::DataType::Int64, false),
        Field::new("x", arrow::datatypes::DataType::Float64, false),
        Field::new("y", arrow::datatypes::DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Float64Array::from(xs)),
            Arc::new(Float64Array::from(ys)),
        ],
    )
    .unwrap();
    // Two batches, so offsets across batches are exercised.
    vec![batch.slice(0, 50), batch.slice(50, 40)]
}

/// No transforms or roles on either feature.
fn plain() -> Vec<FeatureTransform> {
    vec![FeatureTransform::default(); 2]
}

fn features() -> Vec<String> {
    vec!["x".to_string(), "y".to_string()]
}

#[test]
fn recovers_well_separated_blobs_with_ids_by_size() {
    let result = segment(
        &blobs(),
        &features(),
        &plain(),
        ScalerKind::Standard,
        &settings(3, 42),
    )
    .unwrap();
    assert_eq!(result.sizes, [40, 30, 20]);
    assert_eq!(&result.assignments[..40], &[0; 40]);
    assert_eq!(&result.assignments[40..70], &[1; 30]);
    assert_eq!(&result.assignments[70..], &[2; 20]);
    assert!(result.converged);
    let expected_inertia: f64 = result.distances.iter().map(|d| d * d).sum();
    assert!((result.inertia - expected_inertia).abs() < 1e-9);
    let raw = result.preprocess.inverse(result.centroids.view());
    assert!((raw[(2, 1)] - 1000.0).abs() < 2.0, "{raw}");
}

#[test]
fn same_seed_same_result() {
    let a = segment(
        &blobs(),
        &features(),
        &plain(),
        ScalerKind::Standard,
        &settings(4, 7),
    )
    .unwrap();
    let b = segment(
        &blobs(),
        &features(),
        &plain(),
        ScalerKind::Standard,
        &settings(4, 7),
    )
    .unwrap();
    assert_eq!(a.assignments, b.assignments);
    assert_eq!(a.centroids, b.centroids);
    assert_eq!(a.iterations, b.iterations);
}

#[test]
fn restarts_never_do_worse_than_one_start() {
    let one = segment(
        &blobs(),
        &features(),
        &plain(),
        ScalerKind::Standard,
        &settings(5, 3),
    )
    .unwrap();
    let many = segment(
        &blobs(),
        &features(),
        &plain(),
        ScalerKind::Standard,
        &KMeansSettings {
            restarts: 5,
            ..settings(5, 3)
        },
    )
    .unwrap();
    assert!(many.inertia <= one.inertia + 1e-9);
}

#[test]
fn non_finite_feature_is_named_with_its_count() {
    let batch = &blobs()[0];
    let mut ys: Vec<Option<f64>> = batch
        .column(2)
        .as_primitive::<Float64Type>()
        .iter()
        .collect();
    ys[3] = None;
    ys[4] = Some(f64::NAN);
    let batch = RecordBatch::try_new(
        batch.schema(),
        vec![
            batch.column(0).clone(),
            batch.column(1).clone(),
            Arc::new(Float64Array::from(ys)),
        ],
    )
    .unwrap();
    let error = segment(
        &[batch],
        &features(),
        &plain(),
        ScalerKind::Standard,
        &settings(2, 1),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "feature `y` has 2 null, NaN or infinite values; k-means needs a number for every customer"
    );
}

#[test]
fn more_segments_than_customers_is_an_error() {
    let batch = blobs()[0].slice(0, 2);
    let error = segment(
        &[batch],
        &features(),
        &plain(),
        ScalerKind::Standard,
        &settings(3, 1),
    )
    .unwrap_err();
    assert!(matches!(error, ClusterError::TooFewRows { rows: 2, k: 3 }));
}

#[test]
fn output_batches_line_up_with_the_input() {
    let input = blobs();
    let result = segment(
        &input,
        &features(),
        &plain(),
        ScalerKind::Standard,
        &settings(3, 42),
    )
    .unwrap();
    let labels = segment_names(&result, &Default::default());
    let segments = segments_batches(&input, "id", &[], &result, &labels).unwrap();
    assert_eq!(segments.len(), 2);
    let names: Vec<String> = segments[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["id", "segment_id", "segment_name", "distance", "x", "y"]
    );
    let last = segments[1]
        .column(1)
        .as_primitive::<arrow::datatypes::Int32Type>();
    assert_eq!(last.value(last.len() - 1), 2);
    let named = segments[1].column(2).as_string::<i32>();
    assert_eq!(
        named.value(named.len() - 1),
        labels[result.assignments[result.assignments.len() - 1] as usize]
    );

    assert_eq!(
        labels,
        ["segment 0", "segment 1", "segment 2"],
        "no roles, plain names"
    );
    let profile = profile_batch(&input, &result, &labels).unwrap();
    let customers = profile
        .column_by_name("customers")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!(customers.values().to_vec(), [40, 30, 20]);
    let mean_y = profile
        .column_by_name("mean_y")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert!((mean_y.value(2) - 1000.0).abs() < 2.0);

    let median_y = profile
        .column_by_name("median_y")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert!((median_y.value(2) - 1000.0).abs() < 2.0);
    assert!(
        profile.column_by_name("revenue_share").unwrap().is_null(0),
        "no monetary role"
    );

    let centroids = centroids_batch(&result, &labels).unwrap();
    assert_eq!(centroids.num_rows(), 3);
    let names: Vec<String> = centroids
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["segment_id", "name", "x_scaled", "x", "y_scaled", "y"]
    );
}

#[test]
fn a_fit_on_a_sample_assigns_every_row_to_its_nearest_centroid() {
    let input = blobs();
    let full = segment(
        &input,
        &features(),
        &plain(),
        ScalerKind::Standard,
        &settings(3, 42),
    )
    .unwrap();
    let sampled_settings = KMeansSettings {
        fit_sample: Some(30),
        ..settings(3, 42)
    };
    let sampled = segment(
        &input,
        &features(),
        &plain(),
        ScalerKind::Standard,
        &sampled_settings,
    )
    .unwrap();
    assert_eq!(
        sampled.assignments.len(),
        full.assignments.len(),
        "every row is assigned"
    );
    // Far-apart blobs: 30 customers are enough to find them; everyone lands the same.
    assert_eq!(sampled.assignments, full.assignments);
    assert_eq!(sampled.sizes, full.sizes);
    // Each row's distance is to its nearest centroid.
    let scaled = sampled
        .preprocess
        .transform(
            feature_matrix(&input, &features()).unwrap().view(),
            &features(),
        )
        .unwrap();
    for (row, (&segment, distance)) in scaled
        .outer_iter()
        .zip(sampled.assignments.iter().zip(&sampled.distances))
    {
        let nearest = sampled
            .centroids
            .outer_iter()
            .map(|c| {
                c.iter()
                    .zip(row)
                    .map(|(m, x)| (m - x).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(f64::INFINITY, f64::min);
        let own = sampled.centroids.row(segment as usize);
        let own = own
            .iter()
            .zip(row)
            .map(|(m, x)| (m - x).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((own - nearest).abs() < 1e-12 && (own - distance).abs() < 1e-9);
    }
    let again = segment(
        &input,
        &features(),
        &plain(),
        ScalerKind::Standard,
        &sampled_settings,
    )
    .unwrap();
    assert_eq!(again.centroids, sampled.centroids, "the sample is seeded");
}

/// Customers 1..=n with features `x` and `y`.
fn customers_xy(x: &[f64], y: &[f64]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", arrow::datatypes::DataType::Int64, false),
            Field::new("x", arrow::datatypes::DataType::Float64, false),
            Field::new("y", arrow::datatypes::DataType::Float64, false),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(1..=x.len() as i64)),
            Arc::new(Float64Array::from(x.to_vec())),
            Arc::new(Float64Array::from(y.to_vec())),
        ],
    )
    .unwrap()
}

#[test]
fn fewer_distinct_customers_than_segments_is_an_error_with_the_counts() {
    // Five customers, two feature vectors among them.
    let batch = customers_xy(&[1.0, 1.0, 5.0, 5.0, 1.0], &[2.0, 2.0, 0.0, 0.0, 2.0]);
    let fit = |k| {
        segment(
            std::slice::from_ref(&batch),
            &features(),
            &plain(),
            ScalerKind::Standard,
            &settings(k, 1),
        )
    };
    let error = fit(3).unwrap_err();
    assert!(
        matches!(
            error,
            ClusterError::TooFewDistinct {
                rows: 5,
                distinct: 2,
                k: 3
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("only 2 distinct feature vectors"),
        "{error}"
    );
    let two = fit(2).unwrap();
    assert_eq!(two.sizes, [3, 2]);
}

#[test]
fn values_whose_squares_overflow_are_an_error_naming_the_feature() {
    let batch = customers_xy(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 1e308, 3.0]);
    let error = segment(
        &[batch],
        &features(),
        &plain(),
        ScalerKind::Standard,
        &settings(2, 1),
    )
    .unwrap_err();
    assert!(
        matches!(&error, ClusterError::TooLarge { column, .. } if column == "y"),
        "{error}"
    );
    assert!(error.to_string().contains("feature `y`"), "{error}");
}

#[test]
fn a_fixed_model_assigns_the_rows_it_was_fitted_on_as_the_fit_did() {
    let input = blobs();
    let fitted = segment(
        &input,
        &features(),
        &plain(),
        ScalerKind::Standard,
        &settings(3, 42),
    )
    .unwrap();
    let model = PreviousModel {
        preprocess: fitted.preprocess.clone(),
        centroids: fitted.centroids.clone(),
        ids: vec![7, 3, 5],
    };
    let assigned = segment_with_model(&input, &features(), &model).unwrap();
    assert_eq!(assigned.assignments, fitted.assignments);
    assert_eq!(assigned.sizes, fitted.sizes);
    assert_eq!(assigned.ids, [7, 3, 5], "the model's ids, as they are");
    assert_eq!(assigned.centroids, fitted.centroids);
    assert_eq!(assigned.iterations, 0);
    assert!((assigned.inertia - fitted.inertia).abs() < 1e-9 * fitted.inertia);
    let wrong = segment_with_model(&input, &features()[..1], &model).unwrap_err();
    assert!(
        wrong.to_string().contains("2 features and this run 1"),
        "{wrong}"
    );
}
