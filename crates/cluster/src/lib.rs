//! segflow-cluster: customers in, segments out.
//!
//! Arrow batches with a key column and numeric feature columns -> z-scored matrix -> seeded
//! k-means (`kmeans`: greedy k-means++, then Lloyd with Hamerly's bounds) -> assignments,
//! centroids and a per-segment profile as Arrow batches.
//!
//! Restarts (the best of several seeded fits), the scale-relative convergence test (as
//! scikit-learn's: the tolerance times the mean variance of the features), iteration counts
//! and inertia (a sum, in model units) are decided here.

mod kmeans;
mod metrics;
mod naming;
mod output;
mod params;
mod scaler;
mod transform;
mod warm;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;

pub use metrics::{calinski_harabasz, davies_bouldin, silhouette};
pub use naming::segment_names;
pub use output::{
    DISTANCE, SEGMENT_ID, SEGMENT_NAME, SegmentTotals, centroids_batch, median, profile_batch,
    profile_from_totals, segments_batches,
};
pub use params::{FeatureTransform, KMetric, KSelection, Role, ScalerKind};
pub use scaler::Scaler;
pub use transform::Preprocessor;
pub use warm::{PreviousModel, match_ids, segment_from_previous, segment_with_model};

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("column `{0}` is not in the segment input")]
    MissingColumn(String),
    #[error("feature `{column}` must be Float64 here, found {found}")]
    NotFloat { column: String, found: DataType },
    #[error(
        "feature `{column}` has {count} null, NaN or infinite value{}; k-means needs a number for every customer",
        if *count == 1 { "" } else { "s" }
    )]
    NotFinite { column: String, count: usize },
    #[error(
        "feature `{column}`: log1p needs values above -1, and {count} {} not (clip them with `winsorize`, or drop the transform)",
        if *count == 1 { "is" } else { "are" }
    )]
    LogOfNonPositive { column: String, count: usize },
    #[error("{rows} customer{} cannot form {k} segments: k must not exceed the number of customers", if *rows == 1 { "" } else { "s" })]
    TooFewRows { rows: usize, k: usize },
    #[error(
        "the {rows} customers have only {distinct} distinct feature vector{}: k-means cannot form {k} segments (lower k, or add features that tell customers apart)",
        if *distinct == 1 { "" } else { "s" }
    )]
    TooFewDistinct {
        rows: usize,
        distinct: usize,
        k: usize,
    },
    #[error(
        "feature `{column}` has values too large to cluster (up to {largest:e}): their squared distances overflow a 64-bit float; cap them in the SQL or with `winsorize`"
    )]
    TooLarge { column: String, largest: f64 },
    #[error("the previous model does not fit this run: {0}")]
    PreviousModel(String),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

/// How to fit.
#[derive(Debug, Clone)]
pub struct KMeansSettings {
    pub k: usize,
    pub seed: u64,
    /// Independent k-means++ starts; the lowest inertia wins.
    pub restarts: usize,
    pub max_iterations: usize,
    /// Converged when the summed squared centroid movement is at most this times the mean
    /// feature variance of the scaled data (scikit-learn's rule).
    pub tolerance: f64,
    /// Fit transforms, scaler and centroids on a seeded sample of this many rows (when
    /// there are more), then assign every row to its nearest centroid.
    pub fit_sample: Option<usize>,
}

/// A fitted model and where every customer landed.
#[derive(Debug, Clone)]
pub struct Segmentation {
    pub features: Vec<String>,
    /// Clips, transforms and scaler: raw values to model units.
    pub preprocess: Preprocessor,
    /// k x features, in scaled units, largest segment first.
    pub centroids: Array2<f64>,
    /// The segment id of each centroid row: 0..k in row order, or the ids matched to a
    /// previous run's segments.
    pub ids: Vec<u32>,
    /// Centroid row of each input row, in input order (`ids` gives its segment id).
    pub assignments: Vec<u32>,
    /// Euclidean distance of each input row to its segment's centroid, in scaled units.
    pub distances: Vec<f64>,
    pub sizes: Vec<u64>,
    /// Sum of squared distances to the assigned centroids, in scaled units.
    pub inertia: f64,
    /// Lloyd iterations of the kept start.
    pub iterations: usize,
    pub converged: bool,
}

/// Fits k-means on `features` of `batches` and assigns every row.
///
/// Segment ids are ordered by size, largest first (ties by centroid), so that they do not
/// depend on the order k-means++ happened to pick its seeds in.
pub fn segment(
    batches: &[RecordBatch],
    features: &[String],
    transforms: &[FeatureTransform],
    scaler: ScalerKind,
    settings: &KMeansSettings,
) -> Result<Segmentation> {
    let prepared = prepare(batches, features, transforms, scaler, settings)?;
    let best = best_fit(&prepared, settings)?;
    Ok(relabel_by_size(
        best,
        features.to_vec(),
        prepared.preprocess,
        None,
    ))
}

/// One k tried when choosing k: the fit's inertia and each metric.
#[derive(Debug, Clone, PartialEq)]
pub struct KScore {
    pub k: usize,
    pub inertia: f64,
    pub silhouette: f64,
    pub calinski_harabasz: f64,
    pub davies_bouldin: f64,
}

impl KScore {
    pub fn metric(&self, metric: KMetric) -> f64 {
        match metric {
            KMetric::Silhouette => self.silhouette,
            KMetric::CalinskiHarabasz => self.calinski_harabasz,
            KMetric::DaviesBouldin => self.davies_bouldin,
        }
    }
}

/// Fits every k from `selection.min` to `settings.k` (at most the number of rows), scores
/// each with every metric, and keeps the best fit by `selection.metric` (the smallest k on
/// a tie). The silhouette is computed on a sample of `selection.sample` rows.
pub fn segment_choosing_k(
    batches: &[RecordBatch],
    features: &[String],
    transforms: &[FeatureTransform],
    scaler: ScalerKind,
    settings: &KMeansSettings,
    selection: &KSelection,
) -> Result<(Segmentation, Vec<KScore>)> {
    let (min_k, metric, silhouette_sample) = (selection.min, selection.metric, selection.sample);
    let prepared = prepare(
        batches,
        features,
        transforms,
        scaler,
        &KMeansSettings {
            k: min_k,
            ..settings.clone()
        },
    )?;
    // A k past the number of distinct customers would only split identical ones.
    let largest = distinct_up_to(prepared.scaled.view(), settings.k);
    let mut scores = Vec::new();
    let mut best: Option<(f64, Fitted)> = None;
    for k in min_k..=largest {
        let fitted = best_fit(
            &prepared,
            &KMeansSettings {
                k,
                ..settings.clone()
            },
        )?;
        let labels = fitted.assignments.as_slice().expect("contiguous");
        let data = prepared.scaled.view();
        let score = KScore {
            k,
            inertia: fitted.inertia,
            silhouette: metrics::silhouette(data, labels, k, silhouette_sample, settings.seed),
            calinski_harabasz: metrics::calinski_harabasz(data, labels, k),
            davies_bouldin: metrics::davies_bouldin(data, labels, k),
        };
        // Davies-Bouldin is better low; the others high.
        let value = match metric {
            KMetric::DaviesBouldin => -score.metric(metric),
            _ => score.metric(metric),
        };
        if best.as_ref().is_none_or(|(b, _)| value > *b) {
            best = Some((value, fitted));
        }
        scores.push(score);
    }
    let (_, best) = best.expect("min_k <= rows");
    Ok((
        relabel_by_size(best, features.to_vec(), prepared.preprocess, None),
        scores,
    ))
}

/// The data in model units and what it takes to get there.
pub(crate) struct Prepared {
    preprocess: Preprocessor,
    /// Every row, in model units.
    scaled: Array2<f64>,
    /// The rows k-means is fitted on, when a sample.
    sample_rows: Option<Vec<usize>>,
    /// Convergence threshold in model units.
    tolerance_scale: f64,
}

fn prepare(
    batches: &[RecordBatch],
    features: &[String],
    transforms: &[FeatureTransform],
    scaler: ScalerKind,
    settings: &KMeansSettings,
) -> Result<Prepared> {
    let raw = feature_matrix(batches, features)?;
    let rows = raw.nrows();
    if rows < settings.k {
        return Err(ClusterError::TooFewRows {
            rows,
            k: settings.k,
        });
    }
    let sample_rows = settings.fit_sample.filter(|&size| size < rows).map(|size| {
        // The input is sorted by key, so a seeded pick of row numbers is the same
        // customers however the input arrived.
        let mut rng = Xoshiro256Plus::seed_from_u64(settings.seed);
        let mut picked = rand::seq::index::sample(&mut rng, rows, size).into_vec();
        picked.sort_unstable();
        picked
    });
    let preprocess = match &sample_rows {
        Some(picked) => Preprocessor::fit(
            raw.select(Axis(0), picked).view(),
            features,
            transforms,
            scaler,
        )?,
        None => Preprocessor::fit(raw.view(), features, transforms, scaler)?,
    };
    let scaled = preprocess.transform(raw.view(), features)?;
    check_magnitudes(&raw, &scaled, features)?;
    let fitted = match &sample_rows {
        Some(picked) => scaled.select(Axis(0), picked),
        None => scaled.clone(),
    };
    check_distinct(fitted.view(), settings.k)?;
    let mut prepared = Prepared::new(preprocess, scaled);
    prepared.sample_rows = sample_rows;
    Ok(prepared)
}

/// Fails when a feature's values in model units are so large that the squared distances
/// k-means sums (over every feature and customer) would overflow to infinity: a fit on
/// them has no meaning, and an infinite inertia would be published as if it had.
pub(crate) fn check_magnitudes(
    raw: &Array2<f64>,
    scaled: &Array2<f64>,
    features: &[String],
) -> Result<()> {
    let terms = (scaled.nrows() * scaled.ncols()).max(1) as f64;
    for (j, column) in scaled.axis_iter(Axis(1)).enumerate() {
        let largest = column.iter().fold(0.0_f64, |most, x| most.max(x.abs()));
        // A distance between two points is at most twice the largest magnitude.
        if !(4.0 * largest * largest * terms).is_finite() {
            let raw_largest = raw
                .column(j)
                .iter()
                .fold(0.0_f64, |most, x| most.max(x.abs()));
            return Err(ClusterError::TooLarge {
                column: features[j].clone(),
                largest: raw_largest,
            });
        }
    }
    Ok(())
}

/// Fails when the rows (in model units) hold fewer than `k` distinct vectors: k-means
/// would leave segments empty, or duplicate a centroid. Stops counting at `k`.
pub(crate) fn check_distinct(rows: ArrayView2<f64>, k: usize) -> Result<()> {
    let distinct = distinct_up_to(rows, k);
    if distinct >= k {
        return Ok(());
    }
    Err(ClusterError::TooFewDistinct {
        rows: rows.nrows(),
        distinct,
        k,
    })
}

/// The number of distinct rows, counted up to `limit`.
fn distinct_up_to(rows: ArrayView2<f64>, limit: usize) -> usize {
    let mut seen = std::collections::HashSet::new();
    for row in rows.outer_iter() {
        if seen.len() >= limit {
            break;
        }
        // -0.0 and 0.0 are one value.
        seen.insert(
            row.iter()
                .map(|x| (x + 0.0).to_bits())
                .collect::<Vec<u64>>(),
        );
    }
    seen.len()
}

impl Prepared {
    pub(crate) fn new(preprocess: Preprocessor, scaled: Array2<f64>) -> Prepared {
        let mean_variance = scaled.var_axis(Axis(0), 0.0).mean().unwrap_or(0.0);
        Prepared {
            preprocess,
            scaled,
            sample_rows: None,
            tolerance_scale: mean_variance.max(f64::MIN_POSITIVE),
        }
    }
}

/// The best of `settings.restarts` seeded fits.
/// The best of `settings.restarts` seeded fits (on the sample, when there is one), with
/// every row assigned to its nearest centroid.
fn best_fit(prepared: &Prepared, settings: &KMeansSettings) -> Result<Fitted> {
    let tolerance = settings.tolerance * prepared.tolerance_scale;
    let sample = prepared
        .sample_rows
        .as_ref()
        .map(|rows| prepared.scaled.select(Axis(0), rows));
    let data = sample.as_ref().map_or(prepared.scaled.view(), |s| s.view());
    let mut best: Option<Fitted> = None;
    for restart in 0..settings.restarts {
        let seed = settings.seed.wrapping_add(restart as u64);
        let fitted = fit_once(data, settings, seed, tolerance);
        if best.as_ref().is_none_or(|b| fitted.inertia < b.inertia) {
            best = Some(fitted);
        }
    }
    let best = best.expect("restarts is at least 1");
    Ok(match sample {
        Some(_) => Fitted {
            iterations: best.iterations,
            converged: best.converged,
            ..assign(prepared.scaled.view(), best.centroids)
        },
        None => best,
    })
}

/// For rows not seen by the fit (a stream of batches after a sampled fit): each row's
/// centroid row and distance, in model units.
pub fn assign_rows(
    segmentation: &Segmentation,
    batches: &[RecordBatch],
) -> Result<(Vec<u32>, Vec<f64>)> {
    let raw = feature_matrix(batches, &segmentation.features)?;
    let scaled = segmentation
        .preprocess
        .transform(raw.view(), &segmentation.features)?;
    let fitted = assign(scaled.view(), segmentation.centroids.clone());
    Ok((
        fitted.assignments.iter().map(|&c| c as u32).collect(),
        fitted.squared_distances.iter().map(|d| d.sqrt()).collect(),
    ))
}

/// Every row's nearest centroid, squared distance and the inertia.
pub(crate) fn assign(data: ArrayView2<f64>, centroids: Array2<f64>) -> Fitted {
    let mut assignments = Array1::zeros(data.nrows());
    let mut squared_distances = Array1::zeros(data.nrows());
    for (i, row) in data.outer_iter().enumerate() {
        let (best, distance) = centroids
            .outer_iter()
            .map(|centroid| {
                row.iter()
                    .zip(centroid)
                    .map(|(x, m)| (x - m) * (x - m))
                    .sum::<f64>()
            })
            .enumerate()
            .fold(
                (0, f64::INFINITY),
                |(bi, bd), (c, d)| if d < bd { (c, d) } else { (bi, bd) },
            );
        assignments[i] = best;
        squared_distances[i] = distance;
    }
    Fitted {
        inertia: squared_distances.sum(),
        centroids,
        assignments,
        squared_distances,
        iterations: 0,
        converged: true,
    }
}

pub(crate) struct Fitted {
    centroids: Array2<f64>,
    assignments: Array1<usize>,
    squared_distances: Array1<f64>,
    inertia: f64,
    iterations: usize,
    converged: bool,
}

/// A fit from greedy k-means++ seeds drawn with `seed`.
pub(crate) fn fit_once(
    data: ArrayView2<f64>,
    settings: &KMeansSettings,
    seed: u64,
    tolerance: f64,
) -> Fitted {
    let mut rng = Xoshiro256Plus::seed_from_u64(seed);
    let seeds = kmeans::plus_plus_seeds(data, settings.k, &mut rng);
    fit_with(data, settings, seeds, tolerance)
}

/// Lloyd iterations from given centroids (a previous run's), no random choice involved.
pub(crate) fn fit_from(
    data: ArrayView2<f64>,
    settings: &KMeansSettings,
    centroids: Array2<f64>,
    tolerance: f64,
) -> Fitted {
    fit_with(data, settings, centroids, tolerance)
}

fn fit_with(
    data: ArrayView2<f64>,
    settings: &KMeansSettings,
    centroids: Array2<f64>,
    tolerance: f64,
) -> Fitted {
    let kmeans::Converged {
        centroids,
        assignments,
        squared_distances,
        iterations,
        converged,
    } = kmeans::iterate(data, centroids, 0, settings.max_iterations, tolerance);
    Fitted {
        inertia: squared_distances.sum(),
        centroids,
        assignments,
        squared_distances,
        iterations,
        converged,
    }
}

/// Orders centroid rows by size, largest first; `ids` (by the fit's rows) are carried along,
/// or the rows are numbered 0..k in their new order.
pub(crate) fn relabel_by_size(
    fitted: Fitted,
    features: Vec<String>,
    preprocess: Preprocessor,
    ids: Option<Vec<u32>>,
) -> Segmentation {
    let k = fitted.centroids.nrows();
    let mut sizes = vec![0u64; k];
    for &c in &fitted.assignments {
        sizes[c] += 1;
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| {
        sizes[b].cmp(&sizes[a]).then_with(|| {
            let (ra, rb) = (fitted.centroids.row(a), fitted.centroids.row(b));
            ra.iter()
                .zip(rb.iter())
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    let mut new_id = vec![0u32; k];
    for (new, &old) in order.iter().enumerate() {
        new_id[old] = new as u32;
    }
    let ids = match ids {
        Some(ids) => order.iter().map(|&old| ids[old]).collect(),
        None => (0..k as u32).collect(),
    };
    Segmentation {
        features,
        preprocess,
        ids,
        centroids: fitted.centroids.select(Axis(0), &order),
        assignments: fitted.assignments.iter().map(|&c| new_id[c]).collect(),
        distances: fitted.squared_distances.iter().map(|d| d.sqrt()).collect(),
        sizes: order.iter().map(|&old| sizes[old]).collect(),
        inertia: fitted.inertia,
        iterations: fitted.iterations,
        converged: fitted.converged,
    }
}

/// Rows x features, every value finite.
pub(crate) fn feature_matrix(batches: &[RecordBatch], features: &[String]) -> Result<Array2<f64>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut matrix = Array2::zeros((rows, features.len()));
    for (j, name) in features.iter().enumerate() {
        let mut row = 0;
        let mut bad = 0;
        for batch in batches {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| ClusterError::MissingColumn(name.clone()))?;
            let values =
                column
                    .as_primitive_opt::<Float64Type>()
                    .ok_or_else(|| ClusterError::NotFloat {
                        column: name.clone(),
                        found: column.data_type().clone(),
                    })?;
            for i in 0..values.len() {
                let value = values.value(i);
                if values.is_null(i) || !value.is_finite() {
                    bad += 1;
                }
                matrix[(row, j)] = value;
                row += 1;
            }
        }
        if bad > 0 {
            return Err(ClusterError::NotFinite {
                column: name.clone(),
                count: bad,
            });
        }
    }
    Ok(matrix)
}

#[cfg(test)]
mod tests;
